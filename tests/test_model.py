"""The Keras MLP builder and both training engines (JAX backend, tiny data)."""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from quest.data.splits import validation_split
from quest.learners.layers import CounterDropout
from quest.learners.mlp.learner import fit_mlp
from quest.learners.mlp.network import build_mlp
from quest.learners.networks import predict
from quest.learners.registry import params_from_dict
from tests.conftest import repo_params


def spec(**train):
    return params_from_dict(repo_params(train=train)).train


def test_mlp_follows_the_params():
    model = build_mlp(
        n_features=4,
        task="classification",
        n_classes=3,
        hidden_layers=(8, 5),
        activation="tanh",
        dropout_rate=0.2,
        l2=0.01,
        initializer="glorot_normal",
    )
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [8, 5, 3]
    assert [layer.activation.__name__ for layer in dense] == ["tanh", "tanh", "softmax"]
    assert [layer.rate for layer in model.layers if isinstance(layer, CounterDropout)] == [0.2, 0.2]
    assert dense[0].kernel_regularizer.l2 == pytest.approx(0.01)
    assert isinstance(dense[0].kernel_initializer, keras.initializers.GlorotNormal)


@pytest.mark.parametrize(
    ("task", "n_classes", "units", "activation"),
    [("classification", 2, 1, "sigmoid"), ("classification", 4, 4, "softmax"), ("regression", 0, 1, "linear")],
)
def test_output_head_matches_the_task(task, n_classes, units, activation):
    model = build_mlp(
        n_features=3,
        task=task,
        n_classes=n_classes,
        hidden_layers=(4,),
        activation="relu",
        dropout_rate=0.0,
        l2=0.0,
        initializer="he_normal",
    )
    assert model.layers[-1].units == units
    assert model.layers[-1].activation.__name__ == activation
    assert not any(isinstance(layer, CounterDropout) for layer in model.layers)


def test_validation_split_is_seeded_and_stratified():
    y = np.array([0] * 30 + [1] * 10)
    fit_rows, validation_rows = validation_split(y, task="classification", fraction=0.25, seed=5)
    assert np.bincount(y[validation_rows]).tolist() == [7, 3]  # 10 rows: 7.5 / 2.5, rounded by scikit-learn
    np.testing.assert_array_equal(fit_rows, validation_split(y, task="classification", fraction=0.25, seed=5)[0])


def blobs(n=80, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = (rng.normal(size=(n, 3)) + 2.0 * y[:, None]).astype(np.float32)
    return x, y


ENGINES = pytest.mark.parametrize("engine", ["fast", "fit"])


@ENGINES
def test_same_seed_same_weights_and_it_learns(engine):
    x, y = blobs()
    settings = spec(
        engine=engine,
        hidden_layers=[8],
        epochs=30,
        batch_size=16,
        learning_rate=0.01,
        early_stopping={"patience": 5, "validation_fraction": 0.2},
    )
    first = fit_mlp(x, y, task="classification", n_classes=2, spec=settings, seed=11)
    second = fit_mlp(x, y, task="classification", n_classes=2, spec=settings, seed=11)
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.history == second.history
    proba = predict(first.model, x, task="classification")
    assert proba.shape == (80, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert (proba.argmax(axis=1) == y).mean() > 0.9  # well-separated blobs


@ENGINES
def test_early_stopping_restores_the_best_epoch(engine):
    x, y = blobs()
    settings = spec(
        engine=engine,
        hidden_layers=[8],
        epochs=60,
        learning_rate=0.05,
        early_stopping={"patience": 3, "validation_fraction": 0.25},
    )
    result = fit_mlp(x, y, task="classification", n_classes=2, spec=settings, seed=0)
    assert result.epochs_run < 60
    assert result.best_epoch == result.epochs_run - 3
    assert result.best_epoch == int(np.argmin(result.history["val_loss"])) + 1


@ENGINES
def test_sgd_optimizer_and_regression_in_target_units(engine):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 2)).astype(np.float32)
    y = (5000.0 + 800.0 * x[:, 0] - 300.0 * x[:, 1]).astype(np.float32)  # large units, like prices
    settings = spec(
        engine=engine, hidden_layers=[16], epochs=40, optimizer="sgd", learning_rate=0.05, dropout_rate=0.0, l2=0.0
    )
    result = fit_mlp(x, y, task="regression", n_classes=0, spec=settings, seed=0)
    predicted = predict(result.model, x, task="regression")
    assert predicted.shape == (120,)
    assert np.abs(predicted - y).mean() < 0.1 * y.std()


@ENGINES
def test_saved_model_is_byte_identical_and_loads_safely(tmp_path, engine):
    import time

    from quest.core.files import FIXED_DATE_SAVED, file_md5
    from quest.learners.networks import save_mlp

    x, y = blobs(n=40)
    # A shared regularizer: Keras writes its id() otherwise.
    settings = spec(engine=engine, hidden_layers=[4], epochs=2, l2=0.01)
    result = fit_mlp(x, y, task="classification", n_classes=2, spec=settings, seed=0)
    again = fit_mlp(x, y, task="classification", n_classes=2, spec=settings, seed=0)  # same seed, new objects
    save_mlp(result.model, tmp_path / "a.keras")
    time.sleep(1.1)  # Keras stamps the time of saving; it must not reach the file
    save_mlp(again.model, tmp_path / "b.keras")
    assert file_md5(tmp_path / "a.keras") == file_md5(tmp_path / "b.keras")
    loaded = keras.saving.load_model(tmp_path / "b.keras", safe_mode=True)
    np.testing.assert_array_equal(
        predict(loaded, x, task="classification"), predict(result.model, x, task="classification")
    )
    import zipfile

    assert FIXED_DATE_SAVED in zipfile.ZipFile(tmp_path / "a.keras").read("metadata.json").decode()


def test_seeding_without_tensorflow_draws_what_keras_draws():
    from quest.learners.backend import seed_everything

    def initial_weights(seed_with):
        seed_with(3)
        model = build_mlp(n_features=4, task="classification", n_classes=2, hidden_layers=(5,), activation="relu",
                          dropout_rate=0.5, l2=0.0, initializer="he_normal")  # fmt: skip
        return model.get_weights(), np.random.random(), keras.random.uniform((2,)).tolist()

    ours, theirs = initial_weights(seed_everything), initial_weights(keras.utils.set_random_seed)
    for a, b in zip(ours[0], theirs[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert ours[1:] == theirs[1:]


def test_saving_on_jax_never_imports_tensorflow_and_writes_the_same_bytes(tmp_path: Path):
    """Keras' serializer imports TensorFlow (4-5 s) just to ask about tf.TensorShape; save_mlp keeps it out."""
    script = f"""
import hashlib, os, sys
os.environ["KERAS_BACKEND"] = "jax"
from quest.learners.backend import configure
configure("jax", "cpu", 0)
import keras
from quest.core.files import normalise_keras_archive
from quest.learners.networks import save_mlp
from quest.learners.layers import CounterDropout
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
save_mlp(model, __import__("pathlib").Path(r"{tmp_path}/guarded.keras"))
print("tensorflow imported:", "tensorflow" in sys.modules)
model.save(r"{tmp_path}/plain.keras")  # Keras' own path, which imports TensorFlow
normalise_keras_archive(__import__("pathlib").Path(r"{tmp_path}/plain.keras"))
print("then:", "tensorflow" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "tensorflow imported: False" in done.stdout and "then: True" in done.stdout, done.stdout
    assert (tmp_path / "guarded.keras").read_bytes() == (tmp_path / "plain.keras").read_bytes()


def test_counter_dropout_drops_the_rate_and_keeps_the_mean():
    """The MLP's dropout: about `rate` of the values zeroed, the rest scaled up, a new mask each call, none at
    prediction."""
    layer = CounterDropout(0.25, seed=3)
    x = np.ones((400, 50), dtype=np.float32)
    first, second = (np.asarray(layer(x, training=True)) for _ in range(2))
    assert abs(np.mean(first == 0) - 0.25) < 0.01 and np.allclose(first[first > 0], 1 / 0.75)
    assert abs(first.mean() - 1.0) < 0.02 and not np.array_equal(first, second)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
