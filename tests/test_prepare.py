import numpy as np
import pandas as pd
import pytest

from quest.core.errors import QuestError
from quest.data.artifacts import read_prepared
from quest.data.sources import Dataset
from quest.data.splits import assign_folds, split_indices
from quest.stages.prepare import encode_target, prepare, write_prepared


def test_labels_are_encoded_in_sorted_order():
    codes, labels = encode_target(pd.Series(["no", "yes", "no", "maybe"]), "classification")
    assert labels == ("maybe", "no", "yes")
    assert codes.tolist() == [1, 2, 1, 0]


def test_split_is_stratified_and_seeded():
    y = np.array([0] * 80 + [1] * 20)
    train, test = split_indices(y, task="classification", test_size=0.2, seed=3)
    again, _ = split_indices(y, task="classification", test_size=0.2, seed=3)
    assert len(test) == 20 and np.bincount(y[test]).tolist() == [16, 4]
    np.testing.assert_array_equal(train, again)
    assert set(train).isdisjoint(test)


def test_folds_are_balanced_shared_seeded_and_reshuffled_per_repeat():
    y = np.array([0] * 40 + [1] * 20)
    folds = assign_folds(y, task="classification", folds=4, seed=1, repeats=3)
    assert folds.shape == (3, 60)
    np.testing.assert_array_equal(folds, assign_folds(y, task="classification", folds=4, seed=1, repeats=3))
    for repeat in range(3):
        for fold in range(4):
            assert np.bincount(y[folds[repeat] == fold]).tolist() == [10, 5]
    assert not np.array_equal(folds[0], folds[1])  # each repeat is a new shuffle
    regression = assign_folds(np.arange(10.0), task="regression", folds=5, seed=0, repeats=2)
    assert [np.bincount(row).tolist() for row in regression] == [[2] * 5, [2] * 5]


@pytest.mark.parametrize(
    ("y", "call", "message"),
    [
        (np.array([0, 0, 0, 1]), "split", "class 'b' has a single row"),
        (np.array([0, 0, 0, 1, 1, 1]), "folds", "prepare.folds=4 but class 'a' has only 3 training rows"),
        (np.array([0.5, 1.5]), "folds_regression", "prepare.folds=4 but the training split has only 2 rows"),
    ],
)
def test_split_and_fold_errors_name_the_class(y, call, message):
    with pytest.raises(QuestError, match=message):
        if call == "split":
            split_indices(y, task="classification", test_size=0.5, seed=0, labels=("a", "b"))
        elif call == "folds":
            assign_folds(y, task="classification", folds=4, seed=0, labels=("a", "b"))
        else:
            assign_folds(y, task="regression", folds=4, seed=0)


def test_prepare_writes_what_later_stages_read(tmp_path):
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"x": rng.normal(size=40), "kind": rng.choice(["p", "q"], size=40)})
    target = pd.Series(["yes", "no"] * 20, name="label")
    dataset = Dataset(features=features, target=target, name="toy", source="inline", task="classification")
    result = prepare(dataset, test_size=0.25, folds=3, seed=0, repeats=2)
    write_prepared(result, tmp_path / "processed")
    prepared = read_prepared(tmp_path / "processed")

    assert prepared.x_train.shape == (30, 3) and prepared.x_test.shape == (10, 3)
    assert prepared.schema.class_labels == ("no", "yes")
    assert prepared.schema.features == ("numeric__x", "categorical__kind_p", "categorical__kind_q")
    assert prepared.folds.shape == (2, 30) and sorted(set(prepared.folds.ravel().tolist())) == [0, 1, 2]
    splits = list(prepared.splits())
    assert [number for number, _, _ in splits] == list(range(6))
    assert all(held.sum() == 10 and (training == ~held).all() for _, training, held in splits)
    assert prepared.split_sizes == (20, 10)
    assert not list((tmp_path).glob(".*tmp*"))  # nothing half-written left behind


def test_reading_before_prepare_is_a_clear_error(tmp_path):
    with pytest.raises(QuestError, match=r"schema.json: not found; run `dvc repro prepare` first"):
        read_prepared(tmp_path)


def test_max_train_rows_samples_the_training_split_stratified_and_leaves_the_test_split_whole():
    rng = np.random.default_rng(1)
    features = pd.DataFrame({"x": rng.normal(size=400)})
    target = pd.Series(["rare"] * 40 + ["common"] * 360, name="label")
    dataset = Dataset(features=features, target=target, name="toy", source="inline", task="classification")
    whole = prepare(dataset, test_size=0.25, folds=3, seed=0)
    capped = prepare(dataset, test_size=0.25, folds=3, seed=0, max_train_rows=100)
    assert (capped["test_rows.npy"] == whole["test_rows.npy"]).all()  # the same test split, whole
    assert len(capped["y_train.npy"]) == 100 and np.bincount(capped["y_train.npy"]).tolist() == [90, 10]
    assert capped["schema"].sampled_from == 300 and capped["schema"].rows == 400
    assert "sampled_from" not in whole["schema"].to_dict()  # an unsampled schema.json is what it was before
    again = prepare(dataset, test_size=0.25, folds=3, seed=0, max_train_rows=100)
    assert (again["X_train.npy"] == capped["X_train.npy"]).all()  # seeded


def test_past_the_scale_threshold_the_folds_are_drawn_large_repeats_times_and_a_notice_says_so():
    rng = np.random.default_rng(2)
    features = pd.DataFrame({"x": rng.normal(size=200)})
    target = pd.Series(["a", "b"] * 100, name="label")
    dataset = Dataset(features=features, target=target, name="toy", source="inline", task="classification")
    below = prepare(dataset, test_size=0.25, folds=3, seed=0, repeats=3, large=(150, 1))  # 150 training rows
    assert below["schema"].repeats == 3 and below["folds.npy"].shape == (3, 150)
    assert not any("scale_threshold" in notice for notice in below["notices"])
    past = prepare(dataset, test_size=0.25, folds=3, seed=0, repeats=3, large=(149, 1))
    assert past["schema"].repeats == 1 and past["folds.npy"].shape == (1, 150)
    assert (past["folds.npy"][0] == below["folds.npy"][0]).all()  # the first repeat's folds, as before
    assert past["notices"][0] == (
        "150 training rows > compare.scale_threshold (149): the 3 folds are drawn once, not 3 times "
        "(prepare.large_repeats: 1), as every model's fit on this many rows is costly and a fold's 50 held-out rows "
        "score it closely"
    )
    twice = prepare(dataset, test_size=0.25, folds=3, seed=0, repeats=3, large=(149, 2))
    assert twice["schema"].repeats == 2 and "drawn 2 times, not 3 times" in twice["notices"][0]
    more = prepare(dataset, test_size=0.25, folds=3, seed=0, repeats=2, large=(149, 3))  # never more than repeats
    assert more["schema"].repeats == 2 and not any("scale_threshold" in notice for notice in more["notices"])
