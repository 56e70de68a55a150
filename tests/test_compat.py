"""Every framework internal quest.core.compat relies on is still where it was checked: when an upgrade moves one,
the failing test names it, and quest.core.compat is the one place to mend."""

from __future__ import annotations

import importlib
import logging
import random
import re
from importlib.metadata import version

import optuna
import pytest

from quest.core import compat
from tests.imports import sources


def test_keras_lazy_tensorflow_module_has_the_switch_keras_without_tensorflow_turns():
    from keras.src.utils import module_utils

    lazy = module_utils.tensorflow
    assert hasattr(lazy, "_available") and hasattr(lazy, "module"), "keras.src.utils.module_utils.tensorflow moved"
    before = lazy._available
    with compat.keras_without_tensorflow():
        import keras

        assert keras.backend.backend() == "tensorflow" or lazy.module is not None or lazy._available is False
    assert lazy._available == before


def test_keras_global_seed_state_is_where_seed_keras_sets_it():
    import keras
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    compat.seed_keras(1234)
    assert global_state.get_global_attribute(rng_utils.GLOBAL_RANDOM_SEED) == 1234
    assert global_state.get_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR) is None
    draws = []
    for _ in range(2):  # the global generator is drawn anew from Python's seed, as set_random_seed leaves it
        random.seed(1234)
        compat.seed_keras(1234)
        draws.append(keras.ops.convert_to_numpy(keras.random.uniform((3,))))
    assert (draws[0] == draws[1]).all()


def test_optuna_study_storage_and_trial_ids_are_where_quest_reads_them():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    trial = study.ask()
    storage = compat.study_storage(study)
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert storage.get_trial(compat.trial_id(trial)).number == trial.number
    frozen = study.get_trials(deepcopy=False)[0]
    assert compat.trial_id(frozen) == compat.trial_id(trial)


def test_mlflow_database_errors_are_logged_by_the_logger_quest_silences():
    module = importlib.import_module(compat.MLFLOW_DB_ERROR_LOGGER)
    assert getattr(module, "_logger", None) is logging.getLogger(compat.MLFLOW_DB_ERROR_LOGGER)


def test_keras_layers_say_whether_their_call_takes_training_where_training_flag_reads_it():
    import keras

    assert compat.training_flag(keras.layers.Dropout(0.5)) == {"training": False}
    assert compat.training_flag(keras.layers.Activation("relu")) == {}


@pytest.mark.parametrize(
    ("package", "checked"),
    [("keras", compat.KERAS_CHECKED), ("optuna", compat.OPTUNA_CHECKED), ("mlflow", compat.MLFLOW_CHECKED)],
)
def test_the_checked_versions_are_the_locked_ones(package: str, checked: str):
    # Not a guard against upgrades: a reminder, when the lock moves, to re-read the internals above.
    from tests.conftest import REPO

    locked = re.search(rf"^{package}==(\S+)$", (REPO / "requirements.lock").read_text(), flags=re.MULTILINE)
    assert locked and locked[1] == checked == version(package)


def test_no_private_internal_is_reached_outside_compat():
    private = re.compile(r"keras\.src\b|\._storage\b|\._trial_id\b|\._available\b|\._call_has_training_arg\b")
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sources()
        if path.name != "compat.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if private.search(line)
    ]
    assert found == []
