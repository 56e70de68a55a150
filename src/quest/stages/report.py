"""The report people read: reports/report.md and a self-contained reports/report.html (pictures inlined), built
from what the earlier stages wrote — the comparison table with intervals and p-values, its bar chart, the MLP's
training curves, the test-set diagnostics, the learning curves and the tuning budget curves when those ran."""

from __future__ import annotations

import sys
from pathlib import Path

from quest.core import arguments, paths, timing
from quest.core.errors import run_cli
from quest.core.files import file_md5, read_json, require, staged_into, write_logged, write_text
from quest.data.artifacts import Schema
from quest.evaluation.report import build_html, build_markdown
from quest.params import read_params
from quest.tracking import provenance, runs, store
from quest.tracking.tags import TAG_COMPARISON_MD5, TAG_MODEL


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = arguments.stage_parser("stages.report", __doc__, "params", "data", "model", "reports")
    args = parser.parse_args(argv)
    params = read_params(args.params, sections=None, table=args.table)  # it makes no learner: see quest.params
    schema = Schema.from_dict(read_json(require(args.data / paths.SCHEMA, "prepare")))
    config_path = args.model.parent / paths.MODEL_CONFIG.name
    config = read_json(config_path) if config_path.is_file() else None
    columns_path = args.data / paths.COLUMNS
    markdown = build_markdown(args.reports, schema, config, read_json(columns_path) if columns_path.is_file() else None)
    title = markdown.split("\n", 1)[0].lstrip("# ").replace("`", "")
    origin = provenance.collect(paths.repo_root(args.params.parent), args.data)
    with staged_into(args.reports) as out:  # published only once MLflow has them
        md_path, html_path = out / paths.REPORT_MD.name, out / paths.REPORT_HTML.name
        write_text(md_path, markdown)
        write_text(html_path, build_html(markdown, args.reports, title))
        size = html_path.stat().st_size // 1024
        log_to_mlflow(params.mlflow.experiment, args.reports, [md_path, html_path], origin)
        logged = [md_path, html_path]
        write_logged(out / paths.LOGGED.format(stage="report"), experiment=params.mlflow.experiment, outputs=logged)
    shown = [args.reports / paths.REPORT_MD.name, args.reports / paths.REPORT_HTML.name]
    print(f"report: {shown[0]} and {shown[1]} (self-contained, {size} KiB)", file=sys.stderr)


@timing.timed("mlflow")
def log_to_mlflow(experiment: str, reports: Path, files: list[Path], origin: provenance.Provenance) -> None:
    """Onto the comparison's parent run (found by the comparison table it wrote), so the report sits beside it."""
    import mlflow

    store.start(experiment, origin)
    identity = {TAG_MODEL: "comparison", TAG_COMPARISON_MD5: file_md5(reports / paths.COMPARISON.name)}
    run_id = runs.find_run(experiment, identity)
    if run_id is None:  # the comparison came from a DVC remote: a run of its own keeps the report findable
        with mlflow.start_run(run_name="report", tags={**origin.tags(), **identity}) as run:
            run_id = run.info.run_id
    for path in files:
        mlflow.MlflowClient().log_artifact(run_id, str(path))


if __name__ == "__main__":
    run_cli("quest report", main)
