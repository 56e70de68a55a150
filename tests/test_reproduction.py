"""The reproduction rule on the repository's own committed results: exact on the same numerical fingerprint, the
conclusions and each number's own uncertainty on another one; and what it must catch there."""

from __future__ import annotations

import copy
import csv
import io
import json
import math

import numpy as np
import pytest

from quest.commands.verify import Side, judge, standing_line
from quest.evaluation.reproduction import (
    COMPARISON,
    CV_FOLDS,
    METRIC_FILES,
    METRICS,
    VERDICT,
    Row,
    changed_conclusions,
    compare_exactly,
    conclusions,
    flatten,
    metric_name,
)
from quest.params import OtherMachineParams, VerifyParams
from tests.conftest import REPO

PARAMS = VerifyParams({"default": 0.0}, OtherMachineParams(mean=0.75, split=1.0, probability=0.2, splits=0.2))
AVX2 = {
    "device": "cpu:AMD EPYC (jax)",
    "cpu": {"vendor": "AuthenticAMD", "family": "25", "model": "1", "stepping": "1", "name": "AMD EPYC"},
    "blas": [{"library": "openblas", "kernel": "Haswell", "threads": 2}],
}
AVX512 = copy.deepcopy(AVX2) | {"cpu": AVX2["cpu"] | {"model": "17"}}
AVX512["blas"] = [{"library": "openblas", "kernel": "SkylakeX", "threads": 2}]
# A GPU's fingerprint, as train records it on an H100 (device, GPU, driver, CUDA libraries).
H100 = {
    "device": "gpu:NVIDIA H100 80GB HBM3 (jax)",
    "cpu": {"vendor": "GenuineIntel", "family": "6", "model": "143", "stepping": "8", "name": "Intel Xeon"},
    "gpus": [{"name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15"}],
    "versions": {"jax": "0.10.2", "jax-cuda12-plugin": "0.10.2", "nvidia-cudnn-cu12": "9.8.0.87"},
}
COMPARISON_COLUMNS = "model,metric,cv_mean,cv_std,test_score\n"


def committed_files() -> dict[str, str]:
    return {name: (REPO / name).read_text() for name in METRIC_FILES}


def side(files: dict[str, str], numerics: dict) -> Side:
    environment = {"device": numerics["device"], "numerics": {k: v for k, v in numerics.items() if k != "device"}}
    return Side(files=files, environment=environment, hashes={"reports": "same"}, sizes=(91.0, 114.0))


def edited(files: dict[str, str], *, folds=None, table=None, verdict=None) -> dict[str, str]:
    """A copy of the metric files with edits applied to cv_folds.json, comparison.csv rows and verdict.json."""
    out = dict(files)
    if folds:
        data = json.loads(out[CV_FOLDS])
        folds(data)
        out[CV_FOLDS] = json.dumps(data)
    if table:
        rows = list(csv.DictReader(io.StringIO(out[COMPARISON])))
        table(rows)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
        out[COMPARISON] = buffer.getvalue()
    if verdict:
        data = json.loads(out[VERDICT])
        verdict(data)
        out[VERDICT] = json.dumps(data)
    return out


def row_of(rows: list[dict], model: str) -> dict:
    return next(row for row in rows if row["model"] == model)


def standard_error(files: dict[str, str], model: str, metric: str = "accuracy") -> float:
    scores = json.loads(files[CV_FOLDS])[model][metric]
    return float(np.std(scores, ddof=1) / math.sqrt(len(scores)))


def one_row_flipped(files: dict[str, str], model: str = "realmlp") -> dict[str, str]:
    """What another vector width did to RealMLP: one split answering one of its 91 held-out rows the other way."""
    step = 1 / 91

    def folds(data):
        data[model]["accuracy"][3] += step

    def table(rows):
        row = row_of(rows, model)
        row["cv_mean"] = str(float(row["cv_mean"]) + step / 15)

    return edited(files, folds=folds, table=table)


def test_flatten_reads_every_number_of_json_and_csv():
    assert flatten("reports/comparison.csv", COMPARISON_COLUMNS + "mlp,accuracy,0.9,0.05,0.85\n") == {
        "reports/comparison.csv:mlp.cv_mean": 0.9,
        "reports/comparison.csv:mlp.cv_std": 0.05,
        "reports/comparison.csv:mlp.test_score": 0.85,
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


def test_on_the_same_machine_every_number_must_match_within_verify_tolerance():
    committed = flatten(COMPARISON, COMPARISON_COLUMNS + "mlp,accuracy,0.9,0.05,0.85\nlogreg,accuracy,0.7,0.0,0.75\n")
    fresh = dict(committed)
    fresh[f"{COMPARISON}:mlp.cv_mean"] = 0.9 + 1e-9
    fresh[f"{COMPARISON}:logreg.test_score"] = 0.74
    strict = compare_exactly(committed, fresh, PARAMS)
    assert [row.key for row in strict if not row.ok] == [f"{COMPARISON}:logreg.test_score", f"{COMPARISON}:mlp.cv_mean"]
    lenient = VerifyParams({"default": 0.0, "cv_mean": 1e-6}, PARAMS.other_machine)
    bad = [row for row in compare_exactly(committed, fresh, lenient) if not row.ok]
    assert [row.key for row in bad] == [f"{COMPARISON}:logreg.test_score"]
    assert bad[0].difference == pytest.approx(0.01)


def test_missing_keys_and_nans():
    rows = compare_exactly({"f:a.x": 1.0, "f:a.nan": math.nan}, {"f:a.y": 1.0, "f:a.nan": math.nan}, PARAMS)
    assert {row.key: row.ok for row in rows} == {"f:a.nan": True, "f:a.x": False, "f:a.y": False}
    assert not Row("f:a.z", 1.0, math.nan, 10.0).ok and Row("f:a.z", 1.0, math.nan, 10.0).moved


def test_a_row_answered_otherwise_on_another_machine_reproduces_and_on_the_same_one_does_not():
    files = committed_files()
    moved = one_row_flipped(files)
    elsewhere = judge(side(files, AVX2), side(moved, AVX512), PARAMS)
    assert not elsewhere.same_fingerprint and elsewhere.ok, elsewhere.bad
    assert elsewhere.machine == ["blas[0].kernel Haswell -> SkylakeX", "cpu.model 1 -> 17"]
    assert {row.key for row in elsewhere.moved} == {f"{CV_FOLDS}:realmlp.accuracy[3]", f"{COMPARISON}:realmlp.cv_mean"}
    here = judge(side(files, AVX2), side(moved, AVX2), PARAMS)
    assert here.same_fingerprint and not here.ok
    assert {row.key for row in here.bad} == {row.key for row in elsewhere.moved}


def test_each_bound_is_a_fraction_of_the_numbers_own_standard_error():
    files = committed_files()
    se = standard_error(files, "realmlp")
    scores = json.loads(files[CV_FOLDS])["realmlp"]["accuracy"]
    rows = {row.key: row for row in judge(side(files, AVX2), side(files, AVX512), PARAMS).rows}
    assert rows[f"{COMPARISON}:realmlp.cv_mean"].tolerance == pytest.approx(0.75 * se)
    assert rows[f"{CV_FOLDS}:realmlp.accuracy[0]"].tolerance == pytest.approx(np.std(scores, ddof=1))
    test_sd = np.std(scores, ddof=1) * math.sqrt(91 / 114)
    assert rows[f"{COMPARISON}:realmlp.test_score"].tolerance == pytest.approx(test_sd)
    assert rows[f"{COMPARISON}:realmlp.p_value"].tolerance == 0.2
    assert rows[f"{COMPARISON}:realmlp.wins"].tolerance == 3  # 0.2 of 15 splits
    assert rows[f"{VERDICT}:rope"].tolerance == 0.0  # a setting: exact everywhere
    assert rows[f"{METRICS}:mlp.test.accuracy"].basis.startswith("1 sd of a split")


def test_a_cv_mean_moved_by_a_few_standard_errors_fails_on_another_machine_and_is_named():
    files = committed_files()
    se = standard_error(files, "catboost")

    def table(rows):
        row_of(rows, "catboost")["cv_mean"] = str(float(row_of(rows, "catboost")["cv_mean"]) - 3 * se)

    judged = judge(side(files, AVX2), side(edited(files, table=table), AVX512), PARAMS)
    assert not judged.ok and not judged.changed
    [bad] = judged.bad
    assert bad.key == f"{COMPARISON}:catboost.cv_mean" and bad.difference / bad.tolerance == pytest.approx(4.0)


def test_a_flipped_verdict_or_a_missing_model_is_a_changed_conclusion():
    files = committed_files()
    verdict = json.loads(files[VERDICT])
    flipped_to = "better" if verdict["outcome"] != "better" else "worse"

    def flip(data):
        data["outcome"] = flipped_to
        data["neural"][data["best_neural"]]["outcome"] = flipped_to

    judged = judge(side(files, AVX2), side(edited(files, verdict=flip), AVX512), PARAMS)
    assert not judged.ok and judged.changed == [
        f"headline verdict: {verdict['outcome']} -> {flipped_to}",
        f"verdict of {verdict['best_neural']} against {verdict['best_classic']}: {verdict['outcome']} -> {flipped_to}",
    ]

    def drop(rows):
        rows.remove(row_of(rows, "knn15"))

    judged = judge(side(files, AVX2), side(edited(files, table=drop), AVX512), PARAMS)
    assert judged.changed == ["model knn15: missing from the fresh results"] and not judged.ok
    assert any(row.key == f"{COMPARISON}:knn15.cv_mean" and math.isnan(row.fresh) for row in judged.bad)


def test_results_made_on_a_gpu_verify_on_a_cpu_through_the_conclusions():
    files = committed_files()
    judged = judge(side(files, H100), side(one_row_flipped(files), AVX512), PARAMS)
    assert not judged.same_fingerprint and judged.ok
    assert "device gpu:NVIDIA H100 80GB HBM3 (jax) -> cpu:AMD EPYC (jax)" in judged.machine
    assert any(line.startswith("gpus ") for line in judged.machine)


def test_conclusions_name_models_families_best_verdicts_and_winner():
    found = conclusions(committed_files())
    assert found["model mlp"] == "neural" and found["model logreg"] == "classic"
    assert {"metric", "headline pair", "headline verdict", "winner"} <= set(found)
    assert changed_conclusions({"winner": "a", "model x": "classic"}, {"winner": "b"}) == [
        "winner: a -> b",
        "model x: missing from the fresh results",
    ]


def test_make_repros_last_line_says_which_of_three():
    files = committed_files()
    same = judge(side(files, AVX2), side(files, AVX2), PARAMS)
    assert standing_line(same, "HEAD", dirty=[]).startswith("repro: identical to the committed results of HEAD")
    elsewhere = judge(side(files, AVX2), side(one_row_flipped(files), AVX512), PARAMS)
    line = standing_line(elsewhere, "HEAD", dirty=[])
    assert line.startswith(
        "repro: recomputed on another machine (blas[0].kernel Haswell -> SkylakeX; cpu.model 1 -> 17)"
    )
    assert line.endswith("with the same conclusions: 2 numbers moved within their tolerance; `make verify` shows them")

    def drop(rows):
        rows.remove(row_of(rows, "knn15"))

    changed = judge(side(files, AVX2), side(edited(files, table=drop), AVX2), PARAMS)
    assert standing_line(changed, "HEAD", dirty=["params.yaml"]) == (
        "repro: different from the committed results (uncommitted changes: params.yaml): "
        "model knn15: missing from the fresh results"
    )
