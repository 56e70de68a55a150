"""Choose the Keras backend and device before Keras is imported, and report the device actually used.

Keras reads KERAS_BACKEND once, at import, and the frameworks read their device visibility at start-up, so
`configure` must run before anything imports keras: stage modules import it lazily, after this.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from quest import timing
from quest.errors import QuestError

BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
JAX_CACHE_ENV = "QUEST_JAX_CACHE"


@dataclass(frozen=True)
class DeviceInfo:
    backend: str
    kind: str  # "cpu" or "gpu"
    name: str  # e.g. "NVIDIA H100 80GB HBM3" or the CPU model

    def describe(self) -> str:
        return f"{self.kind}:{self.name} ({self.backend})"


@timing.timed("imports")
def configure(backend: str, device: str, seed: int) -> DeviceInfo:
    """Set the backend, hide GPUs for `device: cpu`, seed everything and make ops deterministic."""
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != backend:
        raise RuntimeError(f"keras was imported with another backend before configure({backend!r})")
    if importlib.util.find_spec(BACKEND_MODULES[backend]) is None:
        raise QuestError(
            f"train.backend is {backend} but the {BACKEND_MODULES[backend]} package is not installed; "
            "install it or set train.backend: tensorflow"
        )
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for users
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN may reorder float sums between runs
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        os.environ["JAX_PLATFORMS"] = "cpu"

    gpus = _gpu_names(backend)
    if device == "gpu" and not gpus:
        raise QuestError(f"train.device is gpu but the {backend} backend sees no GPU; set train.device: auto or cpu")

    if backend == "jax":
        _cache_compilations()
    seed_everything(seed)
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    if gpus and device != "cpu":
        return DeviceInfo(backend=backend, kind="gpu", name=gpus[0])
    return DeviceInfo(backend=backend, kind="cpu", name=cpu_name())


def _cache_compilations() -> None:
    """Keep JAX's compiled programs on disk, so a rerun (another fold count aside) skips XLA compilation.

    The training loop and every small eager op compile once per shape: seconds on a run that trains for
    less. QUEST_JAX_CACHE moves the cache; set it empty to turn it off.
    """
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "quest" / "jax"
    directory = os.environ.get(JAX_CACHE_ENV, str(default))
    if not directory:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def seed_everything(seed: int) -> None:
    """`keras.utils.set_random_seed`, without importing TensorFlow when it is not the backend.

    Keras' own function seeds TensorFlow whenever it is installed, and importing it costs seconds in every
    JAX process. The rest is the same: Python's and NumPy's generators and Keras' global seed.
    """
    import keras

    if keras.backend.backend() != "jax":
        keras.utils.set_random_seed(seed)
        return
    import random

    import numpy as np
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def _gpu_names(backend: str) -> list[str]:
    if backend == "tensorflow":
        import tensorflow as tf

        found = tf.config.list_physical_devices("GPU")
        return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in found]
    if backend == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
