import json
import re

import mlflow
import numpy as np
import pandas as pd
import yaml

from quest.evaluation import plots
from quest.evaluation.comparison import comparison_table, report_markdown, verdict
from quest.evaluation.scoring import ModelResult
from quest.stages.report import main as report_main
from tests.conftest import repo_params


def fake_outputs(root):
    """What the earlier stages leave behind, small but real: a table, its report, pictures, a schema."""
    reports, data = root / "reports", root / "processed"
    (reports / "eval").mkdir(parents=True)
    (reports / "learning").mkdir()
    (reports / "tuning").mkdir()
    data.mkdir()
    found = [
        ModelResult("mlp", {"accuracy": [0.9, 0.91, 0.89, 0.9, 0.92, 0.9]}, {"accuracy": 0.91}),
        ModelResult("logreg", {"accuracy": [0.8, 0.79, 0.81, 0.8, 0.8, 0.82]}, {"accuracy": 0.79}),
    ]
    sizes = {"kinds": {"mlp": "neural", "logreg": "classic"}, "n_train": 27, "n_test": 13, "rope": 0.01}
    table = comparison_table(found, "accuracy", **sizes)
    table.to_csv(reports / "comparison.csv", index=False)
    outcome = verdict(found, "accuracy", **sizes, probability=0.95, alpha=0.05)
    descriptions = {"mlp": "Keras MLP", "logreg": "logistic regression"}
    report = report_markdown(table, "toy", "classification", outcome, "6", descriptions=descriptions)
    (reports / "comparison.md").write_text(report)
    plots.comparison_bars(
        table["model"],
        table["cv_mean"],
        table["ci_low"],
        table["ci_high"],
        table["test_score"],
        families=table["family"],
        metric="accuracy",
        path=reports / "comparison.png",
    )
    posterior, headline = outcome.posterior, outcome.headline
    plots.posterior(
        mean=posterior["mean"],
        scale=posterior["scale"],
        df=posterior["df"],
        rope=0.01,
        probabilities=(headline.p_better, headline.p_equivalent, headline.p_worse),
        names=("mlp", "logreg"),
        metric="accuracy",
        path=reports / "posterior.png",
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
    assert markdown.startswith("# quest report: does a neural network beat the classic models on `toy`?")
    for heading in (
        "## The MLP's training",
        "## The MLP on the test split",
        "## Data hunger: learning curves",
        "## Equal tuning budget",
        "## Data",
    ):
        assert heading in markdown
    assert "**The answer: mlp is better than logreg with P > 0.99; corrected t-test p = " in markdown
    assert markdown.count("Not run.") == 2  # learning curves and tuning are off
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert images == ["posterior.png", "comparison.png", "eval/training_curves.png", "eval/confusion_matrix.png"]

    page = (reports / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(images)
    assert not re.search(r'src="(?!data:)', page)  # nothing to fetch: the file stands alone
    assert "<table>" in page and "<td>0.9033 ± 0.0094</td>" in page

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
