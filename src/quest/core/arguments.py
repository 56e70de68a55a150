"""The commands' arguments: the path options every stage (and `quest sweep`) takes, with the defaults
quest.core.paths names, so a default never disagrees between two commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from quest.core import paths

# The stages' path options: one definition, so a default never disagrees between stages.
_OPTIONS = {
    "params": (paths.PARAMS, "params file"),
    "data": (paths.PROCESSED_DIR, "prepared data directory"),
    "out": (paths.PROCESSED_DIR, "output directory"),
    "model": (paths.MODEL, "the MLP model file"),
    "cv_out": (paths.MLP_CV, "per-fold CV scores of the MLP"),
    "reports": (paths.REPORTS_DIR, "reports directory"),
}


def stage_parser(module: str, description: str | None, *options: str) -> argparse.ArgumentParser:
    """An argument parser for `python -m quest.<module>` (e.g. `stages.train`) with the named path options and their
    defaults."""
    parser = argparse.ArgumentParser(prog=f"python -m quest.{module}", description=description)
    for name in options:
        default, text = _OPTIONS[name]
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=Path, default=default, help=f"{text} (default: %(default)s)"
        )
    if "params" in options:
        parser.add_argument(
            "--table", metavar="NAME", help="run as this table of params.yaml's suite.tables runs (suite/dvc.yaml)"
        )
    return parser
