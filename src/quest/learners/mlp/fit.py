"""The reference engine: Keras' own `model.fit`, one network after another, with EarlyStopping restoring the
best epoch's weights, on `train.data_parallel` devices. The only engine on the TensorFlow and PyTorch backends.

Import only after `quest.learners.backend.configure` (this module imports keras).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import keras
import numpy as np

from quest.learners.backend import data_parallel_devices, tensorflow_devices
from quest.learners.callbacks import EpochHook, NonFiniteLoss, first_non_finite
from quest.learners.jobs import FitResult, Job, standardiser, to_target_units
from quest.learners.mlp.network import fresh_mlp
from quest.params import TrainParams


def fit_one(
    x: np.ndarray,
    y: np.ndarray,
    job: Job,
    *,
    task: str,
    n_classes: int,
    spec: TrainParams,
    hooks: Sequence[EpochHook] = (),
) -> FitResult:
    """A fresh MLP trained on the job's rows by model.fit; `hooks` see every epoch."""
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
            callbacks=[StopOnNonFinite(), stopper, *(as_keras_callback(hook) for hook in hooks)],
        )
    if task == "regression":
        to_target_units(model, mean=mean, scale=scale)
    curves = {name: [float(v) for v in values] for name, values in history.history.items()}
    best = int(np.argmin(curves["val_loss"])) + 1
    return FitResult(model=model, history=curves, best_epoch=best, epochs_run=len(curves["val_loss"]))


class StopOnNonFinite(keras.callbacks.Callback):
    """Ends model.fit at the first epoch whose loss or val_loss is NaN or infinite (Keras' TerminateOnNaN
    only stops quietly, on the training loss, and leaves the caller a broken model)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        found = first_non_finite(logs)
        if found is not None:
            raise NonFiniteLoss(job=0, epoch=epoch + 1, curve=found[0], value=found[1])


def as_keras_callback(hook: EpochHook) -> keras.callbacks.Callback:
    """An epoch hook as the Keras callback model.fit takes (a Keras callback stays itself)."""
    if isinstance(hook, keras.callbacks.Callback):
        return hook

    class Forward(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict | None = None) -> None:
            hook.on_train_begin(logs)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            hook.on_epoch_end(epoch, logs)

        def on_train_end(self, logs: dict | None = None) -> None:
            hook.on_train_end(logs)

    return Forward()


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
