"""`quest STAGE [options]`: the pipeline's stages as one command (dvc.yaml runs the same modules)."""

from __future__ import annotations

import argparse
import importlib

from quest import __version__
from quest.core.errors import run_cli

# Where each command's main() lives: the pipeline's stages, then the two commands beside it.
PIPELINE = ("prepare", "train", "evaluate", "compare", "learning", "tune", "report")
MODULES = {name: f"quest.stages.{name}" for name in PIPELINE}
MODULES |= {"sweep": "quest.commands.sweep", "predict": "quest.commands.predict", "verify": "quest.commands.verify"}
MODULES |= {
    "suite": "quest.commands.suite",
    "summary": "quest.stages.summary",
    "ui": "quest.commands.ui",
    "team": "quest.commands.team",
}

STAGES = {
    "prepare": "load, validate and split the data; fit preprocessing on the training split",
    "train": "cross-validate the Keras MLP on the shared folds and fit the final model",
    "evaluate": "score the MLP on the test split; confusion matrix, ROC/PR or residual plots",
    "compare": "run the baselines on the same folds and write the comparison report",
    "learning": "learning curves: every model at growing training-set sizes (off while learning.fractions is [])",
    "tune": "equal-budget random search for the MLP and every baseline (off while tune.trials is 0)",
    "sweep": "workers share the tune stage's studies through tune.storage (make sweep WORKERS=N)",
    "report": "assemble reports/report.md and the self-contained reports/report.html",
    "predict": "the trained MLP's answers for the raw rows of a CSV file (quest predict --input a.csv --output b.csv)",
    "verify": "recompute a commit from scratch and check its committed metrics (make verify)",
    "suite": "every table of params.yaml's suite.tables through the pipeline, then the summary (make suite)",
    "summary": "the suite's last stage: verdicts, Elo, tests and pictures across its tables, in reports/suite",
    "ui": "the MLflow UI for the repository's store, opened on quest's runs (make ui)",
    "team": "the secured team server's users and rights: provision, add-user, rotate-admin (make server AUTH=1)",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="quest",
        description="Does a neural network beat the classic models on this tabular dataset? "
        "`dvc repro` runs every stage in order; `quest STAGE` runs one.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="stages:\n"
        + "\n".join(f"  {name:<9} {text}" for name, text in STAGES.items())
        + "\n\n`quest STAGE --help` lists a stage's options.",
    )
    parser.add_argument("--version", action="version", version=f"quest {__version__}")
    parser.add_argument("stage", choices=STAGES, metavar="STAGE", help=", ".join(STAGES))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="passed to the stage")
    args = parser.parse_args(argv)
    stage = importlib.import_module(MODULES[args.stage])
    run_cli(f"quest {args.stage}", stage.main, args.options)


if __name__ == "__main__":
    main()
