import numpy as np
import pandas as pd

from quest.data.artifacts import Column, Schema
from quest.data.preprocess import MISSING_CATEGORY, fit_transform, infer_columns


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
    preprocessor, x_train, x_test = fit_transform(train, test, columns)

    assert list(preprocessor.get_feature_names_out()) == [
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
