"""The suite's last stage, summary: every table's comparison (suite/tables/<name>/reports), summed up across the
tables the way the tabular benchmarks do: per table the family verdict, across tables how often each family and
each network won, Elo with intervals (forest = 1000), average rank and normalised score, the critical-difference
diagram and the networks-against-trees scatter, and a paragraph in words; written to reports/suite and logged to
MLflow as a suite run with a child per table. A table that failed (`--failed NAME=WHY`, from `make suite`) is
named with its reason instead of summed up."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from quest.core import arguments, paths, timing
from quest.core.errors import QuestError, run_cli
from quest.core.files import read_json, staged_into, write_json, write_logged, write_text
from quest.data.artifacts import Schema
from quest.evaluation import suite
from quest.evaluation.metrics import LOWER_IS_BETTER
from quest.params import Params, read_params, suite_experiment
from quest.tracking import provenance, store
from quest.tracking.tags import TAG_MODEL

TABLES_DIR = Path("suite/tables")
SUITE_REPORTS = paths.REPORTS_DIR / "suite"
SUMMARY = "summary.json"
REPORT = "report.md"
RESULTS = "results.csv"  # a row per (table, model): the long table every number across tables comes from
CD_CHART = "critical_difference.png"
SCATTER = "networks_vs_trees.png"
TREES = frozenset({"forest", "boosting", "hgb", "xgboost", "lightgbm", "catboost"})  # the tree ensembles
OUTPUTS = (SUMMARY, REPORT, RESULTS, CD_CHART, SCATTER)


@dataclass(frozen=True)
class TableRun:
    """What one table's pipeline left: its schema, its comparison (a row per model) and its verdict."""

    name: str
    schema: Schema
    comparison: pd.DataFrame
    verdict: dict[str, Any]

    @property
    def rows(self) -> int:
        return self.schema.rows

    @property
    def metric(self) -> str:
        return str(self.comparison["metric"].iloc[0])

    def describe(self) -> dict[str, Any]:
        """Its line in summary.json."""
        verdict = self.verdict
        return {
            "dataset": self.schema.dataset,
            "rows": self.rows,
            "train_rows": self.schema.n_train,
            "columns": self.schema.n_columns,
            "task": self.task,
            "metric": self.metric,
            "verdict": {
                key: verdict[key]
                for key in (
                    "outcome",
                    "best_neural",
                    "best_classic",
                    "difference",
                    "p_better",
                    "p_equivalent",
                    "p_worse",
                    "words",
                )  # fmt: skip
            },
            "entrants": {name: found["outcome"] for name, found in verdict["neural"].items()},
            "winner": verdict["winner"],
            "cv_mean": {row.model: float(row.cv_mean) for row in self.comparison.itertuples()},
        }

    @property
    def task(self) -> str:
        if self.schema.task == "regression":
            return "regression"
        return "binary" if len(self.schema.class_labels) == 2 else "multiclass"


def read_table(name: str, directory: Path) -> TableRun:
    """Table `name`'s outputs under `directory` (its data/ and reports/), one line naming what is missing."""
    reports = directory / "reports"
    needed = [directory / "data" / paths.SCHEMA, reports / paths.COMPARISON.name, reports / paths.VERDICT.name]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        raise QuestError(f"suite table {name}: {missing[0]} is missing: run `make suite` (or dvc repro suite/dvc.yaml)")
    schema = Schema.from_dict(read_json(needed[0]))
    return TableRun(name, schema, pd.read_csv(needed[1]), read_json(needed[2]))


def long_results(tables: list[TableRun]) -> pd.DataFrame:
    """(table, model, family, metric, score, lower_is_better): each model's CV mean on each table, the score every
    summary across tables starts from (the CV folds average the splits, as TabArena averages its own)."""
    frames = [
        pd.DataFrame(
            {
                "table": table.name,
                "model": table.comparison["model"],
                "family": table.comparison["family"],
                "metric": table.metric,
                "score": table.comparison["cv_mean"].astype(float),
                "lower_is_better": table.metric in LOWER_IS_BETTER,
            }
        )
        for table in tables
    ]
    return pd.concat(frames, ignore_index=True)


def summarise(params: Params, tables: list[TableRun], failed: Mapping[str, str], *, out: Path) -> dict[str, Any]:
    """summary.json's content; writes the long table (results.csv) into `out`, and the two pictures when two
    tables or more ran."""
    results = long_results(tables)
    results.to_csv(out / RESULTS, index=False, float_format="%.6g")
    families = suite.verdict_counts({table.name: table.verdict["outcome"] for table in tables})
    networks = sorted(set(results.loc[results["family"] == "neural", "model"]))
    entrants = {
        name: suite.verdict_counts(
            {t.name: t.verdict["neural"][name]["outcome"] for t in tables if name in t.verdict["neural"]}
        )  # fmt: skip
        for name in networks
    }
    found: dict[str, Any] = {
        "profile": params.suite.profile,
        "tables": {table.name: table.describe() for table in tables},
        "failed": dict(failed),
        "families": families,
        "entrants": entrants,
    }
    if len(tables) >= 2:
        elo = suite.elo(results)
        found["elo"] = {model: {k: float(row[k]) for k in ("elo", "low", "high")} for model, row in elo.iterrows()}
        found["average_rank"] = suite.average_ranks(results).to_dict()
        found["normalised_score"] = suite.normalised_scores(results).to_dict()
        suite.critical_difference(results, out / CD_CHART, alpha=params.compare.alpha)
        rows = {table.name: table.rows for table in tables}
        suite.network_against_trees(results, rows, networks=set(networks), trees=set(TREES), path=out / SCATTER)
    found["words"] = words(found, tables, params)
    return found


def _counts(counts: Mapping[str, int]) -> str:
    """better on 2 tables, equivalent on 3, worse on 5 and unclear on 6"""
    said = [f"{verdict} on {counts[verdict]}" for verdict in suite.OUTCOMES]
    said[0] += " table" if counts[suite.OUTCOMES[0]] == 1 else " tables"
    return f"{', '.join(said[:-1])} and {said[-1]}"


def words(found: Mapping[str, Any], tables: list[TableRun], params: Params) -> str:
    """The paragraph that answers the question across the tables, and says how far the answer reaches."""
    rows = sorted(table.rows for table in tables)
    kinds = pd.Series([table.task for table in tables]).value_counts()
    shape = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
    text = [
        f"Across {len(tables)} tables ({rows[0]:,} to {rows[-1]:,} rows; {shape}; the {params.suite.profile} "
        f"profile), the best network against the best classic model was {_counts(found['families'])}."
    ]
    for name, counts in found["entrants"].items():
        text.append(f"{name} against each table's best classic model: {_counts(counts)}.")
    if "elo" in found:
        ranked = list(found["elo"].items())
        top = ", ".join(f"{model} {v['elo']:.0f} [{v['low']:.0f}, {v['high']:.0f}]" for model, v in ranked[:3])
        best_net = next((model for model, _ in ranked if model in found["entrants"]), None)
        net = found["elo"][best_net] if best_net else None
        text.append(f"By Elo (forest = 1000, 95 % bootstrap intervals over tables) the leaders are {top}")
        if net is not None and best_net not in dict(ranked[:3]):
            text[-1] += f"; the best network, {best_net}, has {net['elo']:.0f} [{net['low']:.0f}, {net['high']:.0f}]"
        text[-1] += "."
    text.append(
        f"{len(tables)} tables bound how strong a claim can be: models whose intervals overlap, or that the "
        "critical-difference diagram joins, are not told apart, and the answer is for tables like these (public, "
        "small to medium, mixed numeric and categorical), not for tabular data at large."
    )
    if found["failed"]:
        text.append(f"Not summed up: {', '.join(found['failed'])} (failed; see the list below).")
    return " ".join(text)


def report(found: Mapping[str, Any], params: Params) -> str:
    """reports/suite/report.md: the words, the table of tables, the Elo table and the pictures."""
    lines = ["# quest across tables", "", found["words"], "", "## Tables", ""]
    lines += [
        "| table | rows | columns | task | metric | best network | best classic | verdict | P(better) | P(equiv.) "
        "| P(worse) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, table in found["tables"].items():
        v = table["verdict"]
        lines.append(
            f"| {name} | {table['rows']:,} | {table['columns']} | {table['task']} | {table['metric']} | "
            f"{v['best_neural']} | {v['best_classic']} | {v['outcome']} | {v['p_better']:.2f} | "
            f"{v['p_equivalent']:.2f} | {v['p_worse']:.2f} |"
        )
    for name, why in found["failed"].items():
        lines.append(f"| {name} | | | | | | | failed: {why} | | | |")
    overrides = ", ".join(f"`{key}: {value}`" for key, value in _flat(params.suite.profiles[params.suite.profile]))
    lines += ["", f"Profile `{params.suite.profile}`: {overrides or 'the single-table protocol'}; each table judged "
              "on TabArena's metric for its task unless its entry names one; every score is a model's CV mean over "
              "the table's folds."]  # fmt: skip
    if "elo" in found:
        lines += ["", "## Models", "", "| model | Elo [95 %] | average rank | normalised score |", "|---|---|---|---|"]
        unbounded = [model for model, v in found["elo"].items() if v["low"] < 0]
        for model, v in found["elo"].items():
            lines.append(
                f"| {model} | {v['elo']:.0f} [{v['low']:.0f}, {v['high']:.0f}] | "
                f"{found['average_rank'][model]:.2f} | {found['normalised_score'][model]:.3f} |"
            )
        if unbounded:
            lines += ["", f"{', '.join(unbounded)}: an interval reaching below 0 comes from bootstrap draws of "
                      "tables on which the model lost to every other, where Bradley–Terry has no finite estimate; "
                      "read its far end as 'far below', not as a number."]  # fmt: skip
        lines += [
            "",
            f"![critical-difference diagram]({CD_CHART})",
            "",
            "Average ranks; a bar joins models the pairwise Wilcoxon signed-rank tests (Holm-corrected, "
            f"alpha {params.compare.alpha}) cannot tell apart.",
            "",
            f"![best network against best tree ensemble]({SCATTER})",
            "",
            "Each table a point, sized by rows: its best network's score against its best tree ensemble's, "
            "rescaled within the table (1 the table's best model, 0 its worst). Above the diagonal the networks did "
            "better.",
        ]
    return "\n".join(lines) + "\n"


def _flat(overrides: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A profile's overrides as (dotted key, value) pairs: prepare.repeats, 1."""
    found = []
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            found += _flat(value, f"{prefix}{key}.")
        else:
            found.append((f"{prefix}{key}", value))
    return found


@timing.timed("mlflow")
def log_to_mlflow(params: Params, found: Mapping[str, Any], *, out: Path, root: Path) -> str:
    """A suite run with the summary, its metrics and files, and a child per table linked to the table's comparison
    run, so that every model-by-model comparison is a click away. Returns the suite run's id."""
    import mlflow

    experiment = suite_experiment(params.mlflow.experiment)
    origin = provenance.collect(root, TABLES_DIR)
    store.start(experiment, origin)
    experiment_id = mlflow.get_experiment_by_name(experiment).experiment_id
    tables = found["tables"]
    name = f"suite · {len(tables)} tables ({params.suite.profile})"
    with mlflow.start_run(run_name=name, tags={**origin.tags(), TAG_MODEL: "suite"}) as parent:
        mlflow.set_tag("mlflow.note.content", found["words"])
        mlflow.log_params({"profile": params.suite.profile, "tables": ", ".join(tables), "seed": params.seed})
        mlflow.log_metrics({f"tables_{key}": value for key, value in found["families"].items()})
        mlflow.log_metrics({f"elo_{model}": v["elo"] for model, v in found.get("elo", {}).items()})
        for file in OUTPUTS:
            if (out / file).is_file():
                mlflow.log_artifact(str(out / file))
        for table, summary in tables.items():
            comparison = _comparison_run(experiment_id, summary["dataset"])
            link = f"[comparison · {table}](#/experiments/{experiment_id}/runs/{comparison})" if comparison else ""
            tags = {TAG_MODEL: "table", "quest.table": table, "quest.outcome": summary["verdict"]["outcome"],
                    "mlflow.note.content": f"{summary['verdict']['words']}\n\n{link}".strip()}  # fmt: skip
            if comparison:
                tags["quest.comparison_run"] = comparison
            with mlflow.start_run(run_name=table, nested=True, tags=tags):
                mlflow.log_params({key: summary[key] for key in ("rows", "columns", "task", "metric")})
                verdict = summary["verdict"]
                mlflow.log_metrics({key: verdict[key] for key in ("difference", "p_better", "p_equivalent", "p_worse")})
                mlflow.log_metrics({f"cv_{model}": value for model, value in summary["cv_mean"].items()})
        return parent.info.run_id


def _comparison_run(experiment_id: str, dataset: str) -> str | None:
    """The newest comparison run of `dataset` in the suite's experiment (the parent run of a table's compare
    stage), if the store has one."""
    import mlflow

    found = mlflow.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_MODEL}` = 'comparison' and params.dataset = '{dataset}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return found[0].info.run_id if found else None


def parse_failed(values: list[str]) -> dict[str, str]:
    """`--failed NAME=WHY` values, by table name."""
    failed = {}
    for value in values:
        name, _, why = value.partition("=")
        failed[name] = why or "failed"
    return failed


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = arguments.stage_parser("stages.summary", __doc__, "params")
    parser.add_argument("--tables", type=Path, default=TABLES_DIR, help="the tables' outputs (default: %(default)s)")
    parser.add_argument("--reports", type=Path, default=SUITE_REPORTS, help="where to write (default: %(default)s)")
    parser.add_argument("--failed", action="append", default=[], metavar="NAME=WHY", help="a table that failed")
    args = parser.parse_args(argv)

    params = read_params(args.params, sections=None)
    failed = parse_failed(args.failed)
    tables = [read_table(name, args.tables / name) for name in params.suite.tables if name not in failed]
    if not tables:
        raise QuestError("suite: no table finished, so there is nothing to sum up: " + "; ".join(failed.values()))
    with staged_into(args.reports) as out:
        found = summarise(params, tables, failed, out=out)
        write_json(out / SUMMARY, found)
        write_text(out / REPORT, report(found, params))
        log_to_mlflow(params, found, out=out, root=paths.repo_root(args.params.parent))
        logged = [out / name for name in OUTPUTS if (out / name).is_file()]
        write_logged(out / paths.LOGGED.format(stage="summary"), experiment=suite_experiment(params.mlflow.experiment),
                     outputs=logged)  # fmt: skip
    print(f"summary: {found['words']}", file=sys.stderr)
    print(f"summary: report {args.reports / REPORT}", file=sys.stderr)


if __name__ == "__main__":
    run_cli("quest summary", main)
