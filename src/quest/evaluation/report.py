"""The report people read, assembled from what the earlier stages wrote: Markdown with the comparison table,
intervals and p-values, the bar chart, the MLP's training curves, the test-set diagnostics, the learning curves
and the tuning budget curves when those ran; and the same as one self-contained HTML file (pictures inlined)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from quest.core import paths
from quest.core.files import read_json, require
from quest.data.artifacts import Schema
from quest.evaluation.metrics import LOWER_IS_BETTER

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: left; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
code { background: #f3f3f3; padding: 0 3px; }
p:has(> img[alt="confusion matrix"]), p:has(> img[alt="roc"]), p:has(> img[alt="pr"]) {
  display: inline-block; width: 32%; margin: 0 0.5%; vertical-align: top; }
"""


def _image(reports: Path, relative: str, caption: str) -> list[str]:
    return [f"![{caption}]({relative})", ""] if (reports / relative).is_file() else []


def _read(path: Path, stage: str) -> str:
    return require(path, stage).read_text(encoding="utf-8")


def training_section(reports: Path, config: dict | None) -> list[str]:
    lines = ["## The MLP's training", ""]
    if config:
        layers = "-".join(map(str, config["train"]["hidden_layers"]))
        lines += [
            f"Keras {config['keras_version']} on {config['backend']} ({config['device']}): hidden layers {layers}, "
            f"{config['train']['activation']}, {config['train']['optimizer']} at learning rate "
            f"{config['train']['learning_rate']:g}, batch {config['train']['batch_size']}. Early stopping kept "
            f"epoch {config['best_epoch']} of {config['epochs_run']} run.",
            "",
        ]
    return lines + _image(reports, f"{paths.EVAL_DIR.name}/training_curves.png", "MLP training curves")


def diagnostics_section(reports: Path, task: str) -> list[str]:
    lines = ["## The MLP on the test split", ""]
    names = ["residuals.png"] if task == "regression" else ["confusion_matrix.png", "roc.png", "pr.png"]
    for name in names:
        lines += _image(reports, f"{paths.EVAL_DIR.name}/{name}", name.removesuffix(".png").replace("_", " "))
    return lines


def learning_section(reports: Path) -> list[str]:
    directory = reports / paths.LEARNING_DIR.name
    summary = read_json(directory / paths.SUMMARY) if (directory / paths.SUMMARY).is_file() else {}
    lines = ["## Data hunger: learning curves", ""]
    if not summary.get("enabled"):
        return lines + [
            "Not run. Turn it on with `dvc exp run -S 'learning.fractions=[0.1,0.25,0.5,1.0]'` to score every "
            "model at growing training-set sizes on the same folds.",
            "",
        ]
    wide = pd.read_csv(directory / "by_size.csv")
    lines += [
        f"Every model trained on {', '.join(f'{f:g}' for f in summary['fractions'])} of each fold's training rows "
        f"({summary['splits']} splits), scored on the fold's held-out rows ({summary['metric']}). "
        f"**{_sentence(summary['overtakes']['text'])}**",
        "",
        _markdown_table(wide, first="n_train"),
        "",
    ]
    return lines + _image(reports, f"{paths.LEARNING_DIR.name}/learning_curve.png", "learning curves")


def tuning_section(reports: Path) -> list[str]:
    directory = reports / paths.TUNING_DIR.name
    summary = read_json(directory / paths.SUMMARY) if (directory / paths.SUMMARY).is_file() else {}
    lines = ["## Equal tuning budget", ""]
    if not summary.get("enabled"):
        return lines + [
            "Not run. `dvc exp run -S tune.trials=30` gives the MLP and every baseline the same number of random-"
            "search trials (Optuna), scored on an inner validation split.",
            "",
        ]
    rows = [
        {
            "model": name,
            "best validation": found["validation"],
            "its test score": found["test"],
            "best params": ", ".join(f"{key}={_short(value)}" for key, value in sorted(found["best_params"].items())),
        }
        for name, found in summary["models"].items()
    ]
    sign = 1 if summary["metric"] in LOWER_IS_BETTER else -1  # the MLP first, then the best validation score
    rows.sort(key=lambda row: (row["model"] != "mlp", sign * (row["best validation"] or 0.0)))
    lines += [
        f"{summary['trials']} random-search trials per model, each scored on a {summary['validation_fraction']:g} "
        f"validation slice of the training split ({summary['metric']}); the curves show the test score of the best "
        "trial so far (chosen by validation, never by test) against the number of trials.",
        "",
        _markdown_table(pd.DataFrame(rows), first="model"),
        "",
    ]
    return lines + _image(reports, "tuning/budget.png", "budget curves")


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _sentence(text: str) -> str:
    return f"{text[:1].upper()}{text[1:]}."


def _markdown_table(frame: pd.DataFrame, *, first: str) -> str:
    def cell(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    header = [first, *(c for c in frame.columns if c != first)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for values in frame[header].itertuples(index=False):  # per-column types kept: row counts stay integers
        lines.append("| " + " | ".join(cell(value) for value in values) + " |")
    return "\n".join(lines)


def columns_section(columns: dict | None) -> list[str]:
    """Each column as prepare read it and what it became, and the target's balance (prepare's columns.json)."""
    if not columns:
        return []
    frame = pd.DataFrame(columns["columns"]).rename(columns={"read_as": "read as", "inputs": "model inputs"})
    frame["missing"] = [f"{count} ({count / columns['rows']:.1%})" if count else "" for count in frame["missing"]]
    target = columns["target"]
    if "classes" in target:
        total = sum(target["classes"].values())
        balance = ", ".join(f"`{label}` {count} ({count / total:.1%})" for label, count in target["classes"].items())
    else:
        balance = ", ".join(f"{stat} {target[stat]:.4g}" for stat in ("mean", "std", "min", "max"))
    return [
        f"Each column of the training split ({columns['rows']} rows) as quest read it and what it became; the target "
        f"`{target['name']}`: {balance}.",
        "",
        _markdown_table(frame[["column", "read as", "became", "model inputs", "missing", "distinct"]], first="column"),
        "",
    ]


def build_markdown(reports: Path, schema: Schema, config: dict | None, columns: dict | None = None) -> str:
    comparison = _read(reports / paths.COMPARISON_REPORT.name, "compare").rstrip("\n").split("\n")
    comparison[0] = comparison[0].replace("# quest:", "# quest report:", 1)
    sections = [
        comparison,
        [""],
        training_section(reports, config),
        diagnostics_section(reports, schema.task),
        learning_section(reports),
        tuning_section(reports),
        [
            "## Data",
            "",
            f"`{schema.dataset}` ({schema.source}): {schema.n_train} training and {schema.n_test} test rows, "
            f"{schema.columns_text} becoming {len(schema.features)} model inputs, target `{schema.target}`. "
            f"Cross-validation: {schema.folds_text}, the same splits for every model."
            + (f" Rows split {schema.split.describe()}." if schema.split is not None else ""),
            "",
            *columns_section(columns),
        ],
    ]
    return "\n".join(line for section in sections for line in section)


def build_html(markdown: str, reports: Path, title: str) -> str:
    """The Markdown rendered, every local picture inlined as a data URI: one file to mail or archive."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)

    def inline(match: re.Match) -> str:
        source = reports / html.unescape(match[1])
        if not source.is_file():
            return match[0]
        encoded = base64.b64encode(source.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{encoded}"'

    body = re.sub(r'src="([^":]+\.png)"', inline, body)
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
