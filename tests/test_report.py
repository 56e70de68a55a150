import json
import re

import mlflow
import numpy as np
import pandas as pd
import yaml

from quest.evaluation import plots
from quest.evaluation.comparison import report_markdown
from quest.stages.report import main as report_main
from tests.conftest import repo_params


def fake_outputs(root):
    """What the earlier stages leave behind, small but real: a table, its report, pictures, a schema."""
    reports, data = root / "reports", root / "processed"
    (reports / "eval").mkdir(parents=True)
    (reports / "learning").mkdir()
    (reports / "tuning").mkdir()
    data.mkdir()
    table = pd.DataFrame(
        {
            "model": ["mlp", "logreg"],
            "metric": "accuracy",
            "cv_mean": [0.9, 0.8],
            "cv_std": [0.01, 0.02],
            "ci_low": [0.88, 0.77],
            "ci_high": [0.92, 0.83],
            "test_score": [0.91, 0.79],
            "p_value": [np.nan, 0.01],
            "wins": [pd.NA, 5],
            "ties": [pd.NA, 0],
            "losses": [pd.NA, 1],
        }
    )
    table.to_csv(reports / "comparison.csv", index=False)
    outcome = {
        "winner": "mlp",
        "best_baseline": "logreg",
        "mlp_minus_best_baseline": 0.1,
        "p_value_vs_best_baseline": 0.01,
        "alpha": 0.05,
        "mlp_is": "better than",
    }
    descriptions = {"mlp": "Keras MLP", "logreg": "logistic regression"}
    report = report_markdown(table, "accuracy", "toy", "classification", outcome, "6", descriptions=descriptions)
    (reports / "comparison.md").write_text(report)
    plots.comparison_bars(
        table["model"],
        table["cv_mean"],
        table["ci_low"],
        table["ci_high"],
        table["test_score"],
        metric="accuracy",
        path=reports / "comparison.png",
    )
    plots.training_curves({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, 2, reports / "eval" / "training_curves.png")
    plots.confusion_matrix(np.array([[5, 1], [0, 4]]), ["a", "b"], reports / "eval" / "confusion_matrix.png", "t")
    (reports / "learning" / "summary.json").write_text(json.dumps({"enabled": False}))
    (reports / "tuning" / "summary.json").write_text(json.dumps({"enabled": False}))
    schema = {
        "dataset": "toy",
        "source": "csv",
        "task": "classification",
        "target": "y",
        "class_labels": ["a", "b"],
        "columns": [{"name": "x", "kind": "numeric", "categories": []}],
        "features": ["x"],
        "n_train": 40,
        "n_test": 10,
        "folds": 3,
        "repeats": 2,
    }
    (data / "schema.json").write_text(json.dumps(schema))
    (root / "params.yaml").write_text(yaml.safe_dump(repo_params()))
    (root / "dvc.yaml").write_text("stages: {}\n")
    return reports, data


def test_report_has_every_section_and_the_html_carries_its_pictures(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    reports, data = fake_outputs(tmp_path)
    argv = [
        "--params",
        str(tmp_path / "params.yaml"),
        "--data",
        str(data),
        "--reports",
        str(reports),
        "--model",
        str(tmp_path / "models" / "mlp.keras"),
    ]
    report_main(argv)

    markdown = (reports / "report.md").read_text()
    assert markdown.startswith("# quest report: does an MLP beat the classic models on `toy`?")
    for heading in (
        "## The MLP's training",
        "## The MLP on the test split",
        "## Data hunger: learning curves",
        "## Equal tuning budget",
        "## Data",
    ):
        assert heading in markdown
    assert "the MLP is **better than** logreg" in markdown
    assert markdown.count("Not run.") == 2  # learning curves and tuning are off
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert images == ["comparison.png", "eval/training_curves.png", "eval/confusion_matrix.png"]

    page = (reports / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(images)
    assert not re.search(r'src="(?!data:)', page)  # nothing to fetch: the file stands alone
    assert "<table>" in page and "<td>0.9000 ± 0.0100</td>" in page

    runs = mlflow.search_runs(experiment_names=["quest"], output_format="list")
    assert [r.info.run_name for r in runs] == ["report"]  # no comparison run in this store: a run of its own
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id)}
    assert logged == {"report.md", "report.html"}


def test_an_enabled_learning_curve_lands_in_the_report_with_its_verdict(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    reports, data = fake_outputs(tmp_path)
    summary = {
        "enabled": True,
        "metric": "accuracy",
        "fractions": [0.5, 1.0],
        "splits": 3,
        "overtakes": {"text": "the MLP leads every baseline from 40 training rows on"},
    }
    (reports / "learning" / "summary.json").write_text(json.dumps(summary))
    pd.DataFrame({"n_train": [20, 40], "mlp": [0.7, 0.9], "logreg": [0.75, 0.8]}).to_csv(
        reports / "learning" / "by_size.csv", index=False
    )
    report_main(["--params", str(tmp_path / "params.yaml"), "--data", str(data), "--reports", str(reports)])
    markdown = (reports / "report.md").read_text()
    assert "**The MLP leads every baseline from 40 training rows on.**" in markdown
    assert "| 20 | 0.7000 | 0.7500 |" in markdown and markdown.count("Not run.") == 1
