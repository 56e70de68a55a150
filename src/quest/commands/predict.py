"""`quest predict`: the trained MLP's answers for the rows of a CSV file, written as CSV.

The model comes from models/ (the network, with the preprocessing prepare fitted in data/processed), or from
MLflow: `--model models:/quest-mlp@champion`, a registered version, or `models:/<model id>`. Either way the
same code answers (quest.learners.predictor), as the served model does. The file is read in chunks, with a
progress line each; the output appears only once every row is answered.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from quest.core import paths, timing
from quest.core.errors import QuestError, run_cli
from quest.core.files import atomic_path, require

if TYPE_CHECKING:
    from quest.learners.predictor import Predictor

CHUNK_ROWS = 50_000


def load_predictor(model: str, data_dir: Path) -> Predictor:
    """The Predictor of a local model (models/mlp.keras and its config, data/processed's preprocessing) or of
    an MLflow model URI, after the Keras backend it trained on is configured."""
    if model.startswith(("models:/", "runs:/")):
        return _from_mlflow(model)
    from quest.learners import backend

    network = require(Path(model), "train")
    config = json.loads(require(network.parent / paths.MODEL_CONFIG.name, "train").read_text(encoding="utf-8"))
    backend.configure(config["backend"], "cpu" if config["train"]["device"] == "cpu" else "auto", config["seed"])
    from quest.learners.predictor import Predictor

    return Predictor.from_files(
        model=network, preprocessing=data_dir / paths.PREPROCESSING, schema=data_dir / paths.SCHEMA
    )


def _from_mlflow(uri: str) -> Predictor:
    import logging

    import mlflow

    from quest.tracking.store import tracking_uri

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri(paths.repo_root()))
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except Exception as error:  # not found, not registered, a store that cannot be opened: one line
        raise QuestError(f"--model {uri}: cannot be loaded: {str(error).strip().splitlines()[0]}") from None
    return loaded.unwrap_python_model().predictor


def count_rows(path: Path) -> int:
    """Data rows of a CSV file, for the progress lines (a quoted newline makes it an estimate)."""
    with path.open("rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return max(0, lines - 1)


def predict_file(predictor: Predictor, source: Path, target: Path, *, chunk_rows: int = CHUNK_ROWS) -> int:
    """Answer every row of `source` into `target` (replaced only when all are answered); the row count."""
    import pandas as pd

    require_rows(source)
    total, done, started = count_rows(source), 0, time.perf_counter()
    with atomic_path(target) as staging:
        try:
            chunks = pd.read_csv(source, chunksize=chunk_rows, encoding="utf-8")
            for chunk in chunks:
                predictor.preprocessing.check(chunk, label=str(source), first_row=done + 1)
                answers = predictor.predict(chunk)
                answers.to_csv(staging, mode="a", header=done == 0, index=False, float_format="%.17g")
                done += len(chunk)
                rate = done / max(time.perf_counter() - started, 1e-9)
                print(f"predict: {done}/{total} rows, {rate:,.0f} rows/s", file=sys.stderr, flush=True)
        except UnicodeDecodeError:
            raise QuestError(f"{source}: not UTF-8 text (is it a CSV file?)") from None
        except pd.errors.ParserError as error:
            raise QuestError(f"{source}: malformed CSV: {str(error).strip().splitlines()[-1]}") from None
        except pd.errors.EmptyDataError:
            raise QuestError(f"{source}: the file is empty (no header row)") from None
        if done == 0:
            raise QuestError(f"{source}: the header has no data rows under it")
    return done


def require_rows(path: Path) -> None:
    if not path.is_file():
        raise QuestError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise QuestError(f"{path}: the file is empty (no header row)")


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="quest predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", type=Path, required=True, help="CSV file of raw rows (the table's columns)")
    parser.add_argument("--output", type=Path, required=True, help="CSV file to write the answers to")
    parser.add_argument(
        "--model",
        default=str(paths.MODEL),
        help="models/mlp.keras (default), or an MLflow model URI such as models:/quest-mlp@champion",
    )
    parser.add_argument(
        "--data", type=Path, default=paths.PROCESSED_DIR, help="prepared data, for a local model's preprocessing"
    )
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help="rows read at a time (default %(default)s)")
    args = parser.parse_args(argv)
    if args.chunk_rows < 1:
        raise QuestError(f"--chunk-rows must be at least 1 (got {args.chunk_rows})")
    started = time.perf_counter()
    predictor = load_predictor(args.model, args.data)
    rows = predict_file(predictor, args.input, args.output, chunk_rows=args.chunk_rows)
    shown = ", ".join(predictor.schema.outputs())
    print(f"predict: {rows} rows -> {args.output} ({shown}; {time.perf_counter() - started:.1f}s)", file=sys.stderr)


if __name__ == "__main__":
    run_cli("quest predict", main)
