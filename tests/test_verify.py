import math

import pytest

from quest.params import VerifyParams
from quest.verify import Row, compare_metrics, flatten, format_table, from_clean_tree, metric_name, recorded_device

COMPARISON = "model,metric,cv_mean,cv_std,test_score\nmlp,accuracy,0.9,0.05,0.85\nlogreg,accuracy,0.7,0.0,0.75\n"


def test_flatten_reads_every_number_of_json_and_csv():
    assert flatten("reports/comparison.csv", COMPARISON) == {
        "reports/comparison.csv:mlp.cv_mean": 0.9,
        "reports/comparison.csv:mlp.cv_std": 0.05,
        "reports/comparison.csv:mlp.test_score": 0.85,
        "reports/comparison.csv:logreg.cv_mean": 0.7,
        "reports/comparison.csv:logreg.cv_std": 0.0,
        "reports/comparison.csv:logreg.test_score": 0.75,
    }
    folds = '{"mlp": {"accuracy": [0.5, 1]}, "winner": "mlp", "flag": true}'
    assert flatten("reports/cv_folds.json", folds) == {
        "reports/cv_folds.json:mlp.accuracy[0]": 0.5,
        "reports/cv_folds.json:mlp.accuracy[1]": 1.0,
    }


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("reports/metrics.json:mlp.test.log_loss", "log_loss"),
        ("reports/cv_folds.json:knn5.accuracy[3]", "accuracy"),
        ("reports/comparison.csv:mlp.cv_std", "cv_std"),
        ("reports/verdict.json:margin_in_std", "margin_in_std"),
    ],
)
def test_tolerances_are_looked_up_by_metric_name(key, name):
    assert metric_name(key) == name


def test_a_tampered_metric_fails_and_tolerances_apply_per_metric():
    committed = flatten("reports/comparison.csv", COMPARISON)
    fresh = dict(committed)
    fresh["reports/comparison.csv:mlp.cv_mean"] = 0.9 + 1e-9
    fresh["reports/comparison.csv:logreg.test_score"] = 0.74
    strict = compare_metrics(committed, fresh, VerifyParams(tolerance={"default": 0.0}, other_machine=1e-6))
    assert [row.key for row in strict if not row.ok] == [
        "reports/comparison.csv:logreg.test_score",
        "reports/comparison.csv:mlp.cv_mean",
    ]
    lenient = compare_metrics(
        committed, fresh, VerifyParams(tolerance={"default": 0.0, "cv_mean": 1e-6}, other_machine=0.0)
    )
    assert [row.key for row in lenient if not row.ok] == ["reports/comparison.csv:logreg.test_score"]
    bad = next(row for row in lenient if not row.ok)
    assert bad.difference == pytest.approx(0.01)
    table = format_table([bad]).splitlines()
    assert table[0].split() == ["metric", "committed", "fresh", "difference", "tolerance"]
    assert table[1].split() == ["reports/comparison.csv:logreg.test_score", "0.75", "0.74", "0.01", "0"]
    # Committed on another CPU model or a GPU: every metric gets at least verify.other_machine.
    elsewhere = VerifyParams(tolerance={"default": 0.0}, other_machine=1e-6)
    moved = compare_metrics(committed, fresh, elsewhere, same_machine=False)
    assert [row.key for row in moved if not row.ok] == ["reports/comparison.csv:logreg.test_score"]
    assert {row.tolerance for row in moved} == {1e-6}


def test_the_device_a_fingerprint_names():
    assert recorded_device('{"device": "cpu:AMD EPYC (jax)", "seed": 1}') == "cpu:AMD EPYC (jax)"
    assert recorded_device(None) == recorded_device("not json") == ""


def test_missing_keys_and_nans():
    rows = compare_metrics(
        {"f:a.x": 1.0, "f:a.nan": math.nan},
        {"f:a.y": 1.0, "f:a.nan": math.nan},
        VerifyParams({"default": 1.0}, other_machine=0.0),
    )
    assert {row.key: row.ok for row in rows} == {"f:a.nan": True, "f:a.x": False, "f:a.y": False}
    assert not Row("f:a.z", 1.0, math.nan, 10.0).ok


def test_results_from_a_dirty_tree_are_refused_and_the_committed_ones_are_clean():
    assert from_clean_tree('{"git": {"commit": "abc", "dirty": false}}')
    assert not from_clean_tree('{"git": {"commit": "abc", "dirty": true}}')
    assert not from_clean_tree("not json") and from_clean_tree(None) is True  # nothing recorded: nothing to refuse
    from tests.conftest import REPO

    assert from_clean_tree((REPO / "models" / "environment.json").read_text()), (
        "models/environment.json records a dirty tree: run `make repro` on a clean checkout and commit the results"
    )
