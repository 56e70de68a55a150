import pandas as pd
import pytest

from quest.compare import ModelResult, comparison_table, report_markdown, verdict


def results():
    return [
        ModelResult("mlp", {"accuracy": [0.9, 0.8]}, {"accuracy": 0.85}),
        ModelResult("logreg", {"accuracy": [0.7, 0.7]}, {"accuracy": 0.75}),
        ModelResult("forest", {"accuracy": [0.8, 0.6]}, {"accuracy": 0.70}),
    ]


def test_table_has_one_row_per_model_with_mean_std_and_test():
    table = comparison_table(results(), "accuracy")
    assert list(table.columns) == ["model", "metric", "cv_mean", "cv_std", "test_score"]
    expected = pd.DataFrame(
        {
            "model": ["mlp", "logreg", "forest"],
            "metric": ["accuracy"] * 3,
            "cv_mean": [0.85, 0.7, 0.7],
            "cv_std": [0.05, 0.0, 0.1],
            "test_score": [0.85, 0.75, 0.70],
        }
    )
    pd.testing.assert_frame_equal(table, expected, atol=1e-12)


def test_verdict_and_report_name_the_winner_and_margin():
    table = comparison_table(results(), "accuracy")
    outcome = verdict(table, "accuracy")
    assert outcome["winner"] == "mlp"
    assert outcome["best_baseline"] == "logreg"  # ties on the mean keep table order
    assert outcome["mlp_minus_best_baseline"] == pytest.approx(0.15)
    assert outcome["margin_in_std"] == pytest.approx(3.0)
    report = report_markdown(table, "accuracy", "toy", "classification", outcome)
    assert "**Winner (CV mean): mlp.** The MLP is 0.1500 ahead of the best baseline, logreg" in report
    assert "| **mlp** | Keras MLP | 0.8500 ± 0.0500 | 0.8500 |" in report


def test_lower_is_better_metrics_rank_the_other_way():
    rows = [
        ModelResult("mlp", {"rmse": [2.0, 2.0]}, {"rmse": 2.0}),
        ModelResult("tree", {"rmse": [1.0, 1.0]}, {"rmse": 1.0}),
    ]
    outcome = verdict(comparison_table(rows, "rmse"), "rmse")
    assert outcome["winner"] == "tree"
    assert outcome["mlp_minus_best_baseline"] == pytest.approx(-1.0)
