"""The repository's well-known paths, in one place; dvc.yaml passes the same paths as arguments."""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")
RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")
MODELS_DIR = Path("models")
MODEL = MODELS_DIR / "mlp.keras"
MODEL_CONFIG = MODELS_DIR / "config.json"
HISTORY = MODELS_DIR / "history.csv"
REPORTS_DIR = Path("reports")
MLP_CV = REPORTS_DIR / "cv_mlp.json"
METRICS = REPORTS_DIR / "metrics.json"
COMPARISON = REPORTS_DIR / "comparison.csv"

# File names inside the processed-data directory written by `prepare`.
X_TRAIN, Y_TRAIN = "X_train.npy", "y_train.npy"
X_TEST, Y_TEST = "X_test.npy", "y_test.npy"
FOLDS = "folds.npy"
PREPROCESSOR = "preprocessor.joblib"
SCHEMA = "schema.json"


def repo_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` holding dvc.yaml (the current directory if none does)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    return here
