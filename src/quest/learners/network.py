"""The Keras 3 MLP: build it from params, train it with early stopping on a seeded validation split, predict.

Two engines train it: `fast` (quest.fast, compiled JAX loops, many networks at once) and Keras' `fit`.

Import this module only after `quest.backend.configure`, which picks the Keras backend.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from quest.data.artifacts import validation_split
from quest.files import atomic_path, normalise_keras_archive
from quest.learners.backend import data_parallel_devices, seed_everything, tensorflow_devices
from quest.params import TrainParams


@dataclass
class FitResult:
    model: keras.Model
    history: dict[str, list[float]]  # per-epoch loss/metrics, train and validation
    best_epoch: int  # 1-based epoch whose weights the model holds
    epochs_run: int


def output_size(task: str, n_classes: int) -> int:
    return 1 if task == "regression" or n_classes == 2 else n_classes


def build_mlp(
    *,
    n_features: int,
    task: str,
    n_classes: int,
    hidden_layers: Sequence[int],
    activation: str,
    dropout_rate: float,
    l2: float,
    initializer: str,
) -> keras.Sequential:
    """Dense hidden layers (+ dropout) and an output fitted to the task: sigmoid, softmax or linear."""
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    layers: list[keras.layers.Layer] = [keras.Input(shape=(n_features,), name="features")]
    for index, units in enumerate(hidden_layers, start=1):
        layers.append(
            keras.layers.Dense(
                units,
                activation=activation,
                kernel_initializer=initializer,
                kernel_regularizer=regularizer,
                name=f"hidden_{index}",
            )
        )
        if dropout_rate > 0:
            layers.append(keras.layers.Dropout(dropout_rate, name=f"dropout_{index}"))
    units = output_size(task, n_classes)
    output_activation = "linear" if task == "regression" else ("sigmoid" if units == 1 else "softmax")
    layers.append(
        keras.layers.Dense(
            units,
            activation=output_activation,
            kernel_initializer="glorot_uniform",
            kernel_regularizer=regularizer,
            name="output",
        )
    )
    return keras.Sequential(layers, name="mlp")


def compile_mlp(
    model: keras.Model, *, task: str, n_classes: int, optimizer: str, learning_rate: float, momentum: float
) -> None:
    if optimizer == "sgd":
        chosen = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, name="sgd")
    else:  # a fixed name: Keras would number a second optimizer in one process (adam_1) into the saved file
        chosen = keras.optimizers.Adam(learning_rate=learning_rate, name="adam")
    if task == "regression":
        model.compile(optimizer=chosen, loss="mse", metrics=["mae"])
    elif output_size(task, n_classes) == 1:
        model.compile(optimizer=chosen, loss="binary_crossentropy", metrics=["accuracy"])
    else:
        model.compile(optimizer=chosen, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


@dataclass(frozen=True)
class Job:
    """One network to train: the rows of x it learns from, the rows that pick its best epoch, its seed."""

    fit_rows: np.ndarray
    validation_rows: np.ndarray
    seed: int


def fresh_mlp(n_features: int, *, task: str, n_classes: int, spec: TrainParams, seed: int) -> keras.Model:
    """A built and compiled MLP whose initial weights are those `seed` draws, whichever engine trains it."""
    seed_everything(seed)
    model = build_mlp(
        n_features=n_features,
        task=task,
        n_classes=n_classes,
        hidden_layers=spec.hidden_layers,
        activation=spec.activation,
        dropout_rate=spec.dropout_rate,
        l2=spec.l2,
        initializer=spec.initializer,
    )
    compile_mlp(
        model,
        task=task,
        n_classes=n_classes,
        optimizer=spec.optimizer,
        learning_rate=spec.learning_rate,
        momentum=spec.momentum,
    )
    return model


def standardiser(values: np.ndarray) -> tuple[float, float]:
    """(mean, scale) of a regression target's fit rows; the network learns (y - mean) / scale."""
    return float(values.mean()), float(values.std()) or 1.0


def to_target_units(model: keras.Sequential, *, mean: float, scale: float) -> None:
    """Append the layer that maps the network's standardised output back to the target's units."""
    model.add(keras.layers.Rescaling(scale=scale, offset=mean, name="target_units"))


def plan_job(rows: np.ndarray, y: np.ndarray, *, task: str, validation_fraction: float, seed: int) -> Job:
    """A job over `rows` of (x, y): a seeded, stratified slice of them watches for early stopping."""
    fit, validation = validation_split(y[rows], task=task, fraction=validation_fraction, seed=seed)
    return Job(fit_rows=rows[fit], validation_rows=rows[validation], seed=seed)


def fit_mlps(
    x: np.ndarray,
    y: np.ndarray,
    jobs: Sequence[Job],
    *,
    task: str,
    n_classes: int,
    spec: TrainParams,
    callbacks: Sequence[Sequence[keras.callbacks.Callback]] = (),
    label: str = "",
) -> list[FitResult]:
    """One fresh MLP per job, trained by the engine `spec.engine` names; results in job order.

    `fast` trains every job together in compiled JAX programs (quest.fast); `fit` is Keras' own
    `model.fit`, one job after another, kept as the reference. `callbacks[j]` go to job j's training.
    """
    if spec.engine == "fast" and jobs:
        from quest.learners import engine

        return engine.fit_many(x, y, jobs, task=task, n_classes=n_classes, spec=spec, callbacks=callbacks, label=label)
    return [
        _fit_one(
            x,
            y,
            job,
            task=task,
            n_classes=n_classes,
            spec=spec,
            callbacks=callbacks[index] if index < len(callbacks) else (),
        )
        for index, job in enumerate(jobs)
    ]


def fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    n_classes: int,
    spec: TrainParams,
    seed: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> FitResult:
    """Build and fit a fresh MLP on all of (x, y); early stopping on a validation slice of it restores the best
    epoch's weights."""
    job = plan_job(
        np.arange(len(y)), y, task=task, validation_fraction=spec.early_stopping.validation_fraction, seed=seed
    )
    return fit_mlps(x, y, [job], task=task, n_classes=n_classes, spec=spec, callbacks=[callbacks])[0]


def _fit_one(
    x: np.ndarray,
    y: np.ndarray,
    job: Job,
    *,
    task: str,
    n_classes: int,
    spec: TrainParams,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> FitResult:
    """The reference engine: Keras' model.fit with an EarlyStopping callback, on `spec.data_parallel` devices."""
    fit_rows, validation_rows = job.fit_rows, job.validation_rows
    devices = data_parallel_devices(keras.backend.backend(), spec.data_parallel, spec.batch_size)
    if devices > 1 and keras.backend.backend() == "jax":
        # Keras on JAX cuts every batch, the last one of an epoch too, into equal shards: drop the few rows
        # (fewer than `devices`) that would leave it uneven. TensorFlow's MirroredStrategy needs no such cut.
        fit_rows = fit_rows[: len(fit_rows) - len(fit_rows) % devices]
        validation_rows = validation_rows[: len(validation_rows) - len(validation_rows) % devices]
    with data_parallel(devices):
        model = fresh_mlp(x.shape[1], task=task, n_classes=n_classes, spec=spec, seed=job.seed)
        stopper = keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=spec.early_stopping.patience or spec.epochs,  # patience 0 means: never stop early
            restore_best_weights=True,
        )
        target = y.astype(np.float32) if task == "regression" or n_classes == 2 else y
        if task == "regression":  # learn a standardised target; a final layer maps back to the target's units
            mean, scale = standardiser(target[fit_rows])
            target = (target - mean) / scale
        history = model.fit(
            x[fit_rows],
            target[fit_rows],
            validation_data=(x[validation_rows], target[validation_rows]),
            batch_size=spec.batch_size,
            epochs=spec.epochs,
            shuffle=True,
            verbose=0,
            callbacks=[stopper, *callbacks],
        )
    if task == "regression":
        to_target_units(model, mean=mean, scale=scale)
    curves = {name: [float(v) for v in values] for name, values in history.history.items()}
    best = int(np.argmin(curves["val_loss"])) + 1
    return FitResult(model=model, history=curves, best_epoch=best, epochs_run=len(curves["val_loss"]))


@contextlib.contextmanager
def data_parallel(devices: int) -> Iterator[None]:
    """Within it, Keras builds replicated models and splits each batch across the first `devices` devices.

    JAX: Keras' DataParallel distribution; TensorFlow: a MirroredStrategy. For one device it does nothing.
    """
    if devices == 1:
        yield
    elif keras.backend.backend() == "jax":
        with keras.distribution.DataParallel(devices=keras.distribution.list_devices()[:devices]).scope():
            yield
    else:
        import tensorflow as tf

        found = tensorflow_devices()[:devices]
        with tf.distribute.MirroredStrategy([device.name for device in found]).scope():
            yield


def save_mlp(model: keras.Model, path: Path) -> None:
    """Save in Keras' native format, atomically and byte-for-byte reproducibly."""
    with atomic_path(path) as staging, without_tensorflow():
        model.save(staging)
        normalise_keras_archive(staging)


@contextlib.contextmanager
def without_tensorflow() -> Iterator[None]:
    """Keep Keras' serializer from importing TensorFlow (4-5 s) on another backend.

    To ask whether an object is a `tf.TensorShape`, Keras imports TensorFlow whenever it is installed. A model
    built on jax or torch holds none, so within this block Keras is told TensorFlow is not available; the
    saved bytes are the same. Also wrap `mlflow.keras.log_model`, which saves the model the same way.
    """
    from keras.src.utils import module_utils

    lazy = module_utils.tensorflow
    if keras.backend.backend() == "tensorflow" or lazy.module is not None:
        yield
        return
    before = lazy._available
    lazy._available = False
    try:
        yield
    finally:
        lazy._available = before


def predict(model: keras.Model, x: np.ndarray, *, task: str) -> np.ndarray:
    """Class probabilities (n, K) for classification, predictions (n,) for regression."""
    # A direct call per chunk, not model.predict: predict re-traces a function for every new model, which
    # TensorFlow warns about when folds train one after another.
    chunks = [
        keras.ops.convert_to_numpy(model(x[start : start + 65536], training=False)) for start in range(0, len(x), 65536)
    ]
    raw = np.concatenate(chunks).astype(np.float64) if chunks else np.zeros((0, 1))
    if task == "regression":
        return raw[:, 0]
    if raw.shape[1] == 1:
        return np.column_stack([1.0 - raw[:, 0], raw[:, 0]])
    return raw
