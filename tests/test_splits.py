"""Splits that match how the data was collected (prepare.split): by group no group is ever on both sides of a
split, in time nothing after a validation row's time trains for it; every split quest makes follows, and the
corrected statistics use the correction that fits those folds, checked against cases worked by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from quest.core.errors import QuestError
from quest.data import leaks
from quest.data.artifacts import Schema, Split, read_prepared
from quest.data.sources import Dataset, grouped_frame, load_dataset
from quest.data.splits import (
    RANDOM,
    Division,
    assign_folds,
    division_of,
    split_indices,
    subsample,
    training_rows,
    validation_split,
)
from quest.evaluation.reproduction import changed_conclusions
from quest.evaluation.stats import corrected_ttest
from quest.learners.jobs import plan_job
from quest.params import SyntheticParams, read_params
from quest.stages.prepare import main as prepare_main
from quest.stages.prepare import prepare
from tests.conftest import REPO, repo_params
from tests.support import prepared_with


def grouped(groups: int = 40, rows: int = 5, seed: int = 0) -> tuple[np.ndarray, Division]:
    """Binary labels over `groups` groups of `rows` rows, each group holding both classes."""
    rng = np.random.default_rng(seed)
    keys = rng.permutation(np.repeat(np.arange(groups), rows))
    y = np.zeros(len(keys), dtype=np.int64)
    for group in range(groups):  # the first two rows of each group 1, so every group has both classes
        y[np.flatnonzero(keys == group)[:2]] = 1
    return y, Division("group", keys)


def in_time(n: int = 60, gap: int = 0, seed: int = 0) -> tuple[np.ndarray, Division]:
    rng = np.random.default_rng(seed)
    ranks = rng.permutation(n)  # the table's rows are not in time order
    return (np.arange(n) % 2).astype(np.int64), Division("time", ranks, gap)


def groups_of(division: Division, rows: np.ndarray) -> set[int]:
    assert division.keys is not None
    return set(division.keys[rows].tolist())


def test_a_group_split_keeps_every_group_on_one_side_of_every_split():
    y, division = grouped()
    train, test = split_indices(y, task="classification", test_size=0.2, seed=3, division=division)
    assert groups_of(division, train).isdisjoint(groups_of(division, test))
    assert len(train) + len(test) == len(y) and 0.1 < len(test) / len(y) < 0.3
    inner = division.of(train)
    folds = assign_folds(y[train], task="classification", folds=4, seed=3, repeats=2, division=inner)
    assert folds.shape == (2, len(train))
    for repeat in range(2):
        for fold in range(4):
            held = folds[repeat] == fold
            training = training_rows(folds[repeat], fold, inner)
            assert (training == ~held).all()
            assert groups_of(inner, np.flatnonzero(held)).isdisjoint(groups_of(inner, np.flatnonzero(training)))
            assert set(y[train][held].tolist()) == {0, 1}  # stratified: each fold scores both classes
    assert not np.array_equal(folds[0], folds[1])  # each repeat reshuffles the groups
    again = assign_folds(y[train], task="classification", folds=4, seed=3, repeats=2, division=inner)
    np.testing.assert_array_equal(folds, again)  # seeded


def test_a_time_split_trains_on_the_past_only_with_its_gap():
    y, division = in_time(60, gap=3)
    assert division.keys is not None
    train, test = split_indices(y, task="classification", test_size=0.2, seed=0, division=division)
    assert len(test) == 12 and len(train) == 60 - 12 - 3  # the 3 rows before the test split are in neither
    assert division.keys[train].max() == division.keys[test].min() - 4
    inner = division.of(train)
    assert inner.keys is not None
    folds = assign_folds(y[train], task="classification", folds=4, seed=0, division=inner)
    assert folds.shape == (1, len(train)) and sorted(set(folds[0].tolist())) == [-1, 0, 1, 2, 3]
    sizes = []
    for fold in range(4):
        held = folds[0] == fold
        training = training_rows(folds[0], fold, inner)
        assert inner.keys[training].max() < inner.keys[held].min() - 3  # the past only, 3 rows apart
        assert not (training & held).any()
        sizes.append(int(training.sum()))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # forward chaining: each fold trains on more


def test_validation_slices_and_subsamples_follow_the_division():
    y, division = grouped(30, 4)
    fit, validation = validation_split(y, task="classification", fraction=0.2, seed=1, division=division)
    assert groups_of(division, fit).isdisjoint(groups_of(division, validation)) and len(validation) > 0
    rows = np.arange(0, len(y), 2)  # a subset of the rows, as a CV split's training rows are
    job = plan_job(rows, y, task="classification", validation_fraction=0.25, seed=2, division=division)
    assert groups_of(division, job.fit_rows).isdisjoint(groups_of(division, job.validation_rows))
    assert set(job.fit_rows) | set(job.validation_rows) <= set(rows)
    half = subsample(np.arange(len(y)), y, 0.5, task="classification", seed=0, division=division)
    assert division.keys is not None
    chosen = groups_of(division, half)
    assert len(chosen) == 15 and set(np.flatnonzero(np.isin(division.keys, list(chosen)))) == set(half)  # whole

    y, division = in_time(50, gap=2)
    assert division.keys is not None
    fit, validation = validation_split(y, task="classification", fraction=0.2, seed=0, division=division)
    assert len(validation) == 10 and len(fit) == 38 and division.keys[fit].max() < division.keys[validation].min()
    latest = subsample(np.arange(50), y, 0.4, task="classification", seed=0, division=division)
    assert sorted(division.keys[latest].tolist()) == list(range(30, 50))  # the history nearest the validation


def test_the_random_division_is_the_split_quest_always_made():
    y = np.array([0] * 60 + [1] * 40)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            split_indices(y, task="classification", test_size=0.2, seed=5),
            split_indices(y, task="classification", test_size=0.2, seed=5, division=RANDOM),
            strict=True,
        )
    )
    folds = assign_folds(y, task="classification", folds=5, seed=5, repeats=2)
    assert (training_rows(folds[1], 3) == (folds[1] != 3)).all()


def test_forward_chaining_correction_worked_by_hand():
    # 9 training rows in time, 2 folds: 3 blocks of 3. Split 1 trains on 3 rows and validates 3 (ratio 1), split 2
    # trains on 6 and validates 3 (ratio 1/2): the correction is their mean, 3/4, given as (4.5, 4.5 * 3/4).
    division = Division("time", np.arange(9))
    prepared = prepared_with(np.array([[-1, -1, -1, 0, 0, 0, 1, 1, 1]]), division, n_folds=2)
    assert prepared.correction_sizes == (4.5, 3.375)
    assert prepared.split_sizes == (4.5, 3.0)
    # Differences 0.02 and 0.06: mean 0.04, sample variance 0.0008, corrected variance (1/2 + 3/4) * 0.0008.
    t, _ = corrected_ttest(np.array([0.02, 0.06]), n_train=4.5, n_test=3.375)
    assert t == pytest.approx(0.04 / math.sqrt(1.25 * 0.0008), rel=1e-12)
    # Random 2-fold on the same rows would have used 1/2 + 1: the correction depends on the folds, not the rows.
    five = prepared_with(np.array([np.repeat(np.arange(-1, 5), 2)]), Division("time", np.arange(12)), n_folds=5)
    n_train, n_test = five.correction_sizes
    assert n_test / n_train == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 5)  # 0.457, not 0.25


def test_grouped_correction_counts_groups_worked_by_hand():
    # 6 rows: group 0 holds 3 rows (fold 0), groups 1, 2 and 3 a row each (fold 1). Split 1 trains on 3 groups and
    # validates 1 (ratio 1/3); split 2 trains on 1 group and validates 3 (ratio 3): mean 5/3, over a mean of 2
    # training groups. Counted in rows, both splits would be 3 against 3, a ratio of 1.
    division = Division("group", np.array([0, 0, 0, 1, 2, 3]))
    prepared = prepared_with(np.array([[0, 0, 0, 1, 1, 1]]), division, n_folds=2)
    n_train, n_test = prepared.correction_sizes
    assert n_train == 2 and n_test == pytest.approx(10 / 3)
    assert prepared.split_sizes == (3.0, 3.0)


def test_a_column_gives_groups_or_times_and_refuses_what_it_cannot_read():
    groups = division_of(pd.Series(["b", "a", "b", "c"], name="customer"), "group", gap=0, label="t.csv")
    assert groups.keys is not None and groups.keys.tolist() == [1, 0, 1, 2]
    dates = pd.Series(["2024-03-01", "2023-12-31", "2024-01-15 10:00", "2024-01-15"], name="day")
    times = division_of(dates, "time", gap=1, label="t.csv")
    assert times.keys is not None and times.keys.tolist() == [3, 0, 2, 1] and times.gap == 1
    numbers = division_of(pd.Series([3.5, 1.0, 2.0], name="t"), "time", gap=0, label="t.csv")
    assert numbers.keys is not None and numbers.keys.tolist() == [2, 0, 1]
    with pytest.raises(QuestError, match=r"^t.csv: prepare.split.column 'day' holds 'soon' in row 2, which is not a"):
        division_of(pd.Series(["2024-01-01", "soon"], name="day"), "time", gap=0, label="t.csv")
    with pytest.raises(QuestError, match=r"^t.csv: prepare.split.column 'customer' is empty in row 3; every row"):
        division_of(pd.Series(["a", "b", None], name="customer"), "group", gap=0, label="t.csv")


def write_table(root, frame: pd.DataFrame, **prepare_overrides) -> str:
    frame.to_csv(root / "table.csv", index=False)
    raw = repo_params(
        data={"source": "csv", "path": "table.csv", "target": "target", "drop": []},
        prepare={"folds": 3, "repeats": 1, **prepare_overrides},
    )
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    (root / "dvc.yaml").write_text("stages: {}\n")
    return str(root / "params.yaml")


def test_prepare_splits_by_group_and_hands_the_keys_on(tmp_path, capsys):
    frame = grouped_frame(SyntheticParams("grouped", 300, 4, 2, 0.2), seed=0)
    params = write_table(tmp_path, frame, split={"kind": "group", "column": "group", "gap": 0, "feature": False})
    prepare_main(["--params", params, "--out", str(tmp_path / "data")])
    prepared = read_prepared(tmp_path / "data")
    assert prepared.division.keys is not None
    assert prepared.schema.split == Split("group", "group", groups=len(np.unique(prepared.division.keys)))
    assert "group" not in [column.name for column in prepared.schema.columns]  # not a feature unless asked
    assert prepared.division.kind == "group" and prepared.division.keys is not None
    test_rows = np.load(tmp_path / "data" / "test_rows.npy")
    keys = frame["group"].to_numpy()
    assert set(keys[test_rows]).isdisjoint(keys[np.setdiff1d(np.arange(300), test_rows)])
    for _, training, held in prepared.splits():
        assert groups_of(prepared.division, np.flatnonzero(training)).isdisjoint(
            groups_of(prepared.division, np.flatnonzero(held))
        )
    err = capsys.readouterr().err
    assert ", split by group of `group` (" in err and "notice" not in err
    assert prepared.schema.split_param == "group:group"


def test_prepare_splits_in_time(tmp_path):
    rng = np.random.default_rng(1)
    days = pd.date_range("2024-01-01", periods=120, freq="D").strftime("%Y-%m-%d").to_numpy()
    frame = pd.DataFrame({"x": rng.normal(size=120), "day": rng.permutation(days), "target": np.arange(120) % 2})
    params = write_table(tmp_path, frame, split={"kind": "time", "column": "day", "gap": 2, "feature": False})
    prepare_main(["--params", params, "--out", str(tmp_path / "data")])
    prepared = read_prepared(tmp_path / "data")
    test_rows = np.load(tmp_path / "data" / "test_rows.npy")
    train_days = sorted(set(frame["day"]) - set(frame["day"].iloc[test_rows]))
    assert min(frame["day"].iloc[test_rows]) > max(train_days[:-2])  # the latest days are the test split
    assert len(test_rows) == 24 and prepared.schema.n_train == 120 - 24 - 2
    assert prepared.schema.split_param == "time:day+gap2" and prepared.schema.repeats == 1


def test_a_random_schema_is_byte_for_byte_what_it_was():
    schema = Schema("t", "s", "regression", "y", (), (), (), 8, 2, 2, 1)
    assert "split" not in schema.to_dict() and Schema.from_dict(schema.to_dict()) == schema
    timed = Schema("t", "s", "regression", "y", (), (), (), 8, 2, 2, 1, Split("time", "day", gap=1))
    assert Schema.from_dict(json.loads(json.dumps(timed.to_dict()))) == timed  # as schema.json holds it


def test_a_different_split_is_a_changed_conclusion():
    files = {
        "reports/verdict.json": '{"metric": "accuracy", "winner": "mlp", "outcome": "better", "neural": {}}',
        "reports/comparison.csv": "model,family\nmlp,neural\n",
    }
    grouped_files = {**files, "reports/verdict.json": files["reports/verdict.json"][:-1] + ', "split": "group:g"}'}
    from quest.evaluation.reproduction import conclusions

    assert conclusions(files)["split"] == "random"
    assert changed_conclusions(conclusions(files), conclusions(grouped_files)) == ["split: random -> group:g"]


def notices_for(frame: pd.DataFrame, target: str, task: str) -> list[str]:
    features = frame.drop(columns=[target])
    rows = np.arange(len(frame))
    train, test = rows[: int(0.8 * len(rows))], rows[int(0.8 * len(rows)) :]
    return leaks.notices(features, frame[target], task=task, train_rows=train, test_rows=test)


def test_prepare_notices_a_group_identifier_a_time_stamp_and_repeated_rows():
    frame = grouped_frame(SyntheticParams("grouped", 1000, 6, 2, 0.2), seed=42)  # 92 % of a group's rows agree
    (found,) = notices_for(frame, "target", "classification")
    assert found.startswith("column 'group' looks like a group identifier (100 values, 10 rows each on average")
    assert found.endswith("set prepare.split.kind: group and prepare.split.column: group")
    rng = np.random.default_rng(0)
    dated = pd.DataFrame({"x": rng.normal(size=200), "order_date": ["2024-02-03"] * 200, "y": rng.normal(size=200)})
    (found,) = notices_for(dated, "y", "regression")
    assert found.startswith("column 'order_date' looks like a time stamp") and "prepare.split.kind: time" in found
    copies = pd.DataFrame({"x": np.tile(rng.normal(size=100), 2), "y": rng.normal(size=200)})
    (found,) = notices_for(copies, "y", "regression")  # rows 160-199 copy rows 60-99, each seen once in training
    assert found.startswith("40 of 40 test rows (100.0%) are each an exact copy of one training row")
    common = pd.DataFrame({"x": np.tile(rng.normal(size=10), 20), "y": rng.normal(size=200)})
    assert notices_for(common, "y", "regression") == []  # profiles many training rows share are not copies
    coarse = pd.DataFrame({"a": rng.integers(0, 3, 200), "b": rng.integers(0, 3, 200), "y": rng.normal(size=200)})
    assert notices_for(coarse, "y", "regression") == []  # 9 profiles: rows repeat by chance, not as copies
    students = pd.DataFrame({"id": np.repeat(rng.permutation(50), 4), "valid": np.repeat(np.arange(50), 4),
                             "y": rng.normal(size=200)})  # fmt: skip
    (found,) = notices_for(students, "y", "regression")  # a student's id over four grades: its name says so
    assert found.startswith("column 'id' looks like an identifier that repeats (50 values, 4.0 rows each")
    assert found.endswith("set prepare.split.kind: group and prepare.split.column: id")
    durations = pd.DataFrame({"Time": rng.integers(6, 72, 200), "total_day_minutes": rng.normal(180, 50, 200),
                              "year": rng.integers(2003, 2010, 200), "y": rng.normal(size=200)})  # fmt: skip
    (found,) = notices_for(durations, "y", "regression")  # years are a time stamp; durations are not
    assert found.startswith("column 'year' looks like a time stamp")


@pytest.mark.parametrize("source", ["breast_cancer", "wine", "diabetes"])
def test_no_notice_on_the_embedded_tables(source, tmp_path):
    params = read_params(REPO / "params.yaml", sections=None)
    import dataclasses

    data = dataclasses.replace(params.data, source=source)
    dataset = load_dataset(data, seed=42, root=REPO)
    result = prepare(dataset, test_size=0.2, folds=5, seed=42, repeats=3)
    assert result["notices"] == []


SHARED = REPO.parent / "shared" / "datasets"


@pytest.mark.parametrize(
    ("name", "target", "task", "expected"),
    [
        # Seaborn's Titanic has no name or ticket: 17 test rows match one training row in every column, but
        # only a few of them in a row with a value no third row holds (the Baclini sisters, both 0.75 years old):
        # the rest are common third-class profiles, which repeat by chance.
        ("titanic", "survived", "classification", []),
        ("diamonds", "price", "regression", []),  # 89 of 10 788 test rows (0.8 %) copy one training row
    ],
)
def test_the_shared_tables_notices(name, target, task, expected):
    path = SHARED / f"{name}.csv"
    if not path.is_file():
        pytest.skip(f"the shared {name} table is absent")
    frame = pd.read_csv(path)
    dataset = Dataset(frame.drop(columns=[target, "alive"], errors="ignore"), frame[target], name, str(path), task)
    result = prepare(dataset, test_size=0.2, folds=5, seed=42)
    assert [notice[: len(start)] for notice, start in zip(result["notices"], expected, strict=False)] == expected
    assert len(result["notices"]) == len(expected)


def test_the_report_and_the_verdict_say_how_the_rows_were_split():
    from quest.stages.compare import splits_text

    folds = np.zeros((2, 4), dtype=np.int64)
    assert splits_text(prepared_with(folds, RANDOM, n_folds=5, repeats=2)) == "5 folds x 2 repeats"
    by_group = prepared_with(folds, RANDOM, n_folds=5, repeats=2, split=Split("group", "customer", groups=80))
    assert splits_text(by_group) == (
        "5 folds x 2 repeats by group of `customer` (80 groups in training; no group on both sides of any split, "
        "the test split included)"
    )
    timed = prepared_with(folds[:1], RANDOM, n_folds=4, split=Split("time", "day", gap=7))
    assert splits_text(timed) == (
        "4 forward-chaining folds in time by `day` (each fold trains on the past only, 7 rows apart; the test split "
        "is the latest rows)"
    )
    assert timed.schema.split_param == "time:day+gap7" and by_group.schema.split_param == "group:customer"
