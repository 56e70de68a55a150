"""A trained network of any family: save it, load it, and answer rows with it (one compiled forward pass per
architecture on JAX).

Import this module only after `quest.learners.backend.configure`, which picks the Keras backend.
"""

from __future__ import annotations

import functools
import json
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from quest.core.compat import keras_without_tensorflow, training_flag
from quest.core.errors import QuestError
from quest.core.files import atomic_path, normalise_keras_archive, require


def save_mlp(model: keras.Model, path: Path) -> None:
    """Save in Keras' native format, atomically and byte-for-byte reproducibly."""
    with atomic_path(path) as staging, keras_without_tensorflow():
        model.save(staging)
        normalise_keras_archive(staging)


def network_archive(model: keras.Model) -> bytes:
    """The file save_mlp writes, as bytes: how a network trained on a cluster's worker travels to the stage."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "network.keras"
        save_mlp(model, path)
        return path.read_bytes()


def load_mlp(path: Path, classes: Mapping[str, type]) -> keras.Model:
    """Load a saved network with Keras' safe mode, given quest's Keras `classes` it may hold
    (quest.learners.registry.keras_classes); a missing or damaged file is a clear error."""
    require(path, "train")
    try:
        return keras.saving.load_model(path, safe_mode=True, custom_objects=dict(classes))
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise QuestError(f"{path}: cannot load the model ({type(error).__name__}); re-run `dvc repro train`") from None


CHUNK = 65536  # rows a forward pass takes at once


def predict(model: keras.Model, x: np.ndarray, *, task: str) -> np.ndarray:
    """Class probabilities (n, K) for classification, predictions (n,) for regression."""
    # Not model.predict: that re-traces a function for every new model, which TensorFlow warns about when folds
    # train one after another. On JAX, one compiled program per architecture; elsewhere a direct call per chunk.
    if keras.backend.backend() == "jax":
        run = _inference(model)
    else:

        def run(rows: np.ndarray) -> np.ndarray:
            return keras.ops.convert_to_numpy(model(rows, training=False))

    chunks = [run(x[start : start + CHUNK]) for start in range(0, len(x), CHUNK)]
    raw = np.concatenate(chunks).astype(np.float64) if chunks else np.zeros((0, 1))
    if task == "regression":
        return raw[:, 0]
    if raw.shape[1] == 1:
        return np.column_stack([1.0 - raw[:, 0], raw[:, 0]])
    return raw


_PROGRAMS: OrderedDict[str, Callable] = OrderedDict()  # compiled forward passes by architecture, the latest few


PROGRAMS_KEPT = 16


_PROGRAMS_LOCK = threading.Lock()


def _inference(model: keras.Sequential) -> Callable[[np.ndarray], np.ndarray]:
    """The network's forward pass as one compiled program, shared by every network of its architecture: an eager
    call compiles a small program per operation and row count, which costs more than the pass on a small table.
    The rows are padded to a power of two (at least 128), so a handful of programs serve every row count; a
    trailing target_units rescaling, whose values differ per network, enters the program as values."""
    layers = list(model.layers)
    units = layers.pop() if layers and layers[-1].name == "target_units" else None
    program = _program(_layer_key(layers), layers)
    weights = [_weights(layer) for layer in layers]
    scale, offset = (np.float32(units.scale), np.float32(units.offset)) if units else (np.float32(1), np.float32(0))
    return functools.partial(_padded_call, program, weights, scale=scale, offset=offset)


def _layer_key(layers: Sequence[keras.layers.Layer]) -> str:
    """What the computation of `layers` turns on: their classes, their configurations less names and seeds (which
    draw initial weights and dropout masks, neither of which inference runs) and their weights' shapes."""
    with keras_without_tensorflow():  # a layer's get_config would import TensorFlow (seconds) on JAX
        described = [
            [type(layer).__module__, type(layer).__qualname__, _computed(layer.get_config()),
             [list(v.shape) for v in layer.weights]]
            for layer in layers
        ]  # fmt: skip
    return json.dumps(described, sort_keys=True, default=str)


def _program(key: str, layers: Sequence[keras.layers.Layer]) -> Callable:
    """The compiled pass through `layers` (any layers of `key`'s computation: only their weights differ)."""
    import jax

    with _PROGRAMS_LOCK:
        program = _PROGRAMS.get(key)
        if program is None:

            def forward(weights: list, x: jax.Array, scale: jax.Array, offset: jax.Array) -> jax.Array:
                for layer, (trainable, non_trainable) in zip(layers, weights, strict=True):
                    x, _ = layer.stateless_call(trainable, non_trainable, x, **training_flag(layer))
                return x * scale + offset  # Keras' Rescaling, in float32

            program = _PROGRAMS[key] = jax.jit(forward)
            while len(_PROGRAMS) > PROGRAMS_KEPT:
                _PROGRAMS.popitem(last=False)
        _PROGRAMS.move_to_end(key)
    return program


def _weights(layer: keras.layers.Layer) -> tuple[list, list]:
    return [v.value for v in layer.trainable_variables], [v.value for v in layer.non_trainable_variables]


def _padded_call(program: Callable, weights: list, x: np.ndarray, scale: np.float32, offset: np.float32) -> np.ndarray:
    """`program` on the rows `x`, padded with zeros to a power of two (at least 128), its answer for them alone."""
    rows = len(x)
    padded = np.zeros((max(128, 1 << (rows - 1).bit_length()), *x.shape[1:]), dtype=np.float32)
    padded[:rows] = x
    return np.asarray(program(weights, padded, scale, offset))[:rows]


def _computed(config: Any) -> Any:
    """A layer's config less what plays no part in inference: names and seeds."""
    if isinstance(config, dict):
        return {k: _computed(v) for k, v in config.items() if k not in ("name", "seed")}
    if isinstance(config, list):
        return [_computed(v) for v in config]
    return config
