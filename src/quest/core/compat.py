"""Every use of a framework's private internals, in one place, each with the version it was checked against.

quest reaches past three public APIs, each for a reason given beside it. tests/test_compat.py fails, naming
the internal, the day one of them moves; the fix is then here and nowhere else. Each framework is imported
inside the function that needs it: importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

# Checked against the versions requirements.lock pins.
KERAS_CHECKED = "3.15.1"
OPTUNA_CHECKED = "5.0.0"
MLFLOW_CHECKED = "3.17.2"

# mlflow.store.db.utils logs every database error with its traceback, then raises it; quest reports it once.
MLFLOW_DB_ERROR_LOGGER = "mlflow.store.db.utils"


@contextlib.contextmanager
def keras_without_tensorflow() -> Iterator[None]:
    """Keep Keras' serializer from importing TensorFlow (4-5 s) on another backend.

    To ask whether an object is a `tf.TensorShape`, Keras imports TensorFlow whenever it is installed
    (keras.src.utils.module_utils.tensorflow, a LazyModule). A model built on jax or torch holds none, so
    within this block the LazyModule says TensorFlow is not available; the saved bytes are the same. Wrap
    `model.save` and `mlflow.keras.log_model`, which saves the model the same way.
    """
    import keras
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


def training_flag(layer: Any) -> dict[str, bool]:
    """The keyword a layer's `stateless_call` needs for inference: `training=False` where its `call` takes a
    `training` argument, as `Layer.__call__` decides from the private `_call_has_training_arg` (no public
    equivalent; quest's compiled forward pass calls `stateless_call`, which does not fill it in)."""
    return {"training": False} if layer._call_has_training_arg else {}


def seed_keras(seed: int) -> None:
    """What `keras.utils.set_random_seed` does to Keras' own state, without the TensorFlow import it makes
    whenever TensorFlow is installed: the global seed, and a fresh global SeedGenerator drawn from it."""
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)


def study_storage(study: optuna.Study) -> Any:
    """The storage behind an Optuna study. Claiming a waiting trial under the storage's row lock, and
    heartbeats for trials quest runs itself, need it; Optuna's own `ask()` pops its queue through it."""
    return study._storage


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """A trial's id in its storage (not its number), which the storage's methods take."""
    return trial._trial_id
