"""The repository's well-known paths, in one place; dvc.yaml passes the same paths as arguments."""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")
PROCESSED_DIR = Path("data/processed")
MODELS_DIR = Path("models")
MODEL = MODELS_DIR / "mlp.keras"
MODEL_CONFIG = MODELS_DIR / "config.json"
HISTORY = MODELS_DIR / "history.csv"
ENVIRONMENT = MODELS_DIR / "environment.json"
REPORTS_DIR = Path("reports")
MLP_CV = REPORTS_DIR / "cv_mlp.json"
METRICS = REPORTS_DIR / "metrics.json"
COMPARISON = REPORTS_DIR / "comparison.csv"
COMPARISON_REPORT = REPORTS_DIR / "comparison.md"
COMPARISON_CHART = REPORTS_DIR / "comparison.png"
POSTERIOR_CHART = REPORTS_DIR / "posterior.png"  # the best neural minus the best classic model, with the ROPE
CV_FOLDS = REPORTS_DIR / "cv_folds.json"
VERDICT = REPORTS_DIR / "verdict.json"
EVAL_DIR = REPORTS_DIR / "eval"  # the MLP's test-set plots and their data
LEARNING_DIR = REPORTS_DIR / "learning"  # learning curves
TUNING_DIR = REPORTS_DIR / "tuning"  # the equal-budget search: trials, budget curves, best params
SUMMARY = "summary.json"  # in LEARNING_DIR and TUNING_DIR: what the optional stage found, or {"enabled": false}
LOGGED = "logged-{stage}.json"  # in REPORTS_DIR: a stage's record of what it logged (DVC-cached, not in git)
REPORT_MD = REPORTS_DIR / "report.md"
REPORT_HTML = REPORTS_DIR / "report.html"

# File names inside the processed-data directory written by `prepare`.
X_TRAIN, Y_TRAIN = "X_train.npy", "y_train.npy"
X_TEST, Y_TEST = "X_test.npy", "y_test.npy"
FOLDS = "folds.npy"
TEST_ROWS = "test_rows.npy"  # which rows of the loaded table the test split holds
SPLIT_KEYS = "split_keys.npy"  # prepare.split group or time: each training row's group code or rank in time
PREPROCESSING = "preprocessing.json"  # the fitted preprocessing, as numbers
SCHEMA = "schema.json"
COLUMNS = "columns.json"  # each column: its type as read, what it became, its gaps; the target's balance


def repo_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` holding dvc.yaml (the current directory if none does)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    return here
