import json

import numpy as np
import pandas as pd
import pytest

from quest.data.artifacts import MISSING_CATEGORY, Column, Preprocessing, Schema, to_model_frame
from quest.data.columns import LeftOut, type_columns
from quest.data.preprocess import build_preprocessor, fit_preprocessing
from tests.conftest import SHARED_DATASETS


def infer_columns(train: pd.DataFrame) -> tuple[Column, ...]:
    return type_columns(train, rows=len(train))[0]


def fit_transform(train: pd.DataFrame, test: pd.DataFrame, columns: tuple[Column, ...]):
    preprocessing = fit_preprocessing(train, columns)
    return preprocessing, preprocessing.apply(train), preprocessing.apply(test)


def test_column_kinds_from_dtypes(mixed_frame):
    columns = infer_columns(mixed_frame.drop(columns="survived"))
    assert [(c.name, c.kind) for c in columns] == [
        ("age", "numeric"),
        ("fare", "numeric"),
        ("alone", "boolean"),
        ("port", "categorical"),
    ]
    assert columns[3].categories == ("C", "Q", "S", MISSING_CATEGORY)


def test_preprocessing_is_fit_on_the_training_split_only():
    train = pd.DataFrame({"x": [0.0, 2.0, None, 4.0], "colour": ["red", "blue", "red", None]})
    test = pd.DataFrame({"x": [100.0, None], "colour": ["green", "blue"]})  # green: never seen in training
    columns = infer_columns(train)
    preprocessing, x_train, x_test = fit_transform(train, test, columns)

    assert [feature.name for feature in preprocessing.features] == [
        "numeric__x",
        "categorical__colour___missing__",
        "categorical__colour_blue",
        "categorical__colour_red",
    ]
    # The median (2.0) and the scale come from the training rows; the test row's 100 does not move them.
    train_x = np.array([0.0, 2.0, 2.0, 4.0])
    np.testing.assert_allclose(x_train[:, 0], (train_x - train_x.mean()) / train_x.std(), rtol=1e-6)
    np.testing.assert_allclose(x_test[:, 0], [(100.0 - 2.0) / train_x.std(), 0.0], rtol=1e-6)
    # An unseen category encodes to all zeros rather than failing; a seen one to its column.
    np.testing.assert_array_equal(x_test[:, 1:], [[0, 0, 0], [0, 1, 0]])
    assert x_train.dtype == np.float32


def test_boolean_gaps_are_imputed_with_the_training_mode(mixed_frame):
    features = mixed_frame[["alone"]]
    columns = infer_columns(features)
    _, x_train, _ = fit_transform(features, features.iloc[:1], columns)
    np.testing.assert_array_equal(x_train[:, 0], [1, 0, 1, 1, 0, 1])


def test_schema_round_trips_through_a_dict():
    schema = Schema(
        dataset="d",
        source="s",
        task="classification",
        target="y",
        class_labels=("a", "b"),
        columns=(Column("c", "categorical", ("x", "y")), Column("n", "numeric")),
        features=("f1", "f2"),
        n_train=4,
        n_test=2,
        folds=2,
        repeats=1,
    )
    assert Schema.from_dict(schema.to_dict()) == schema


def sklearn_inputs(train: pd.DataFrame, rows: pd.DataFrame, columns: tuple[Column, ...]) -> np.ndarray:
    transformer = build_preprocessor(columns, []).fit(to_model_frame(train, columns))
    return np.asarray(transformer.transform(to_model_frame(rows, columns)), dtype=np.float32)


def titanic_like() -> pd.DataFrame:
    path = SHARED_DATASETS / "titanic.csv"
    if path.is_file():
        return pd.read_csv(path).drop(columns=["survived", "alive"])
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": np.where(rng.random(300) < 0.2, np.nan, rng.uniform(1, 80, 300)),
            "fare": rng.exponential(30, 300),
            "alone": rng.choice([True, False, None], 300),
            "embarked": rng.choice(["S", "C", "Q", None], 300),
            "sibsp": rng.integers(0, 5, 300),
        }
    )


def test_the_stored_preprocessing_gives_scikit_learns_inputs_bit_for_bit():
    table = titanic_like()
    train, rows = table.iloc[: len(table) // 2], table.iloc[len(table) // 2 :]
    columns = infer_columns(train)
    stored = Preprocessing.from_dict(json.loads(json.dumps(fit_preprocessing(train, columns).to_dict())))
    for part in (train, rows):
        np.testing.assert_array_equal(stored.apply(part), sklearn_inputs(train, part, columns))


def test_the_stored_preprocessing_is_numbers_and_names_only():
    train = pd.DataFrame({"x": [0.0, 2.0, None, 4.0], "ok": [True, None, False, True], "c": ["a", "b", None, "a"]})
    text = json.dumps(fit_preprocessing(train, infer_columns(train)).to_dict(), allow_nan=False)
    assert [f["kind"] for f in json.loads(text)["features"]] == ["numeric", "boolean", *["categorical"] * 3]


@pytest.mark.parametrize("dropped", ["x", "ok"])
def test_a_column_without_a_value_in_training_is_left_out(dropped):
    train = pd.DataFrame({"x": [0.0, 2.0, 3.0, 4.0], "ok": [True, False, False, True], "y": [1.0, 2.0, 3.0, 5.0]})
    train[dropped] = None
    columns, left_out = type_columns(train.astype({dropped: float}), rows=4)
    assert left_out == (LeftOut(dropped, "has no value in the training split", "numeric"),)
    preprocessing = fit_preprocessing(train, columns)
    assert dropped not in {feature.column for feature in preprocessing.features}
    np.testing.assert_array_equal(preprocessing.apply(train), sklearn_inputs(train, train, columns))
