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

from quest.core import timing
from quest.core.errors import QuestError

BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
JAX_CACHE_ENV = "QUEST_JAX_CACHE"


@dataclass(frozen=True)
class DeviceInfo:
    backend: str
    kind: str  # "cpu" or "gpu"
    name: str  # e.g. "NVIDIA H100 80GB HBM3" or the CPU model
    devices: int = 1  # how many of them split each mini-batch (train.data_parallel)

    def describe(self) -> str:
        # One device reads as it always has: results recorded before data parallelism keep their device string.
        count = f" x{self.devices}" if self.devices > 1 else ""
        return f"{self.kind}:{self.name}{count} ({self.backend})"


@timing.timed("imports")
def configure(backend: str, device: str, seed: int, data_parallel: int | str = 1) -> DeviceInfo:
    """Set the backend, hide GPUs for `device: cpu`, seed everything and make ops deterministic.

    `data_parallel` (train.data_parallel) only checks that enough devices exist and counts them in the result;
    the engines split the batches.
    """
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
    devices = data_parallel_devices(backend, data_parallel)
    if gpus and device != "cpu":
        return DeviceInfo(backend=backend, kind="gpu", name=gpus[0], devices=devices)
    return DeviceInfo(backend=backend, kind="cpu", name=cpu_name(), devices=devices)


def data_parallel_devices(backend: str, data_parallel: int | str, batch_size: int | None = None) -> int:
    """How many devices split each mini-batch: train.data_parallel, with `all` resolved to what the backend sees.

    Fails with a QuestError when more are asked for than exist, or when `batch_size` does not split evenly:
    every device takes the same number of rows of each batch.
    """
    if data_parallel == 1:
        return 1  # off: nothing to count, and no framework call that could change a thing
    available = device_count(backend)
    wanted = available if data_parallel == "all" else int(data_parallel)
    if wanted > available:
        raise QuestError(
            f"train.data_parallel is {data_parallel} but the {backend} backend sees {available} "
            f"device{'s' if available != 1 else ''}; set train.data_parallel to at most {available}, or all"
        )
    if batch_size is not None and batch_size % wanted:
        raise QuestError(
            f"train.batch_size must be a multiple of the {wanted} devices train.data_parallel splits it across "
            f"(got {batch_size})"
        )
    return wanted


def tensorflow_devices() -> list:
    """TensorFlow's logical devices of the kind it trains on: its GPUs when it sees any, else its CPUs."""
    import tensorflow as tf

    return tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")


def device_count(backend: str) -> int:
    """Devices of the kind the backend trains on: its GPUs when it sees any, else its CPU devices."""
    if backend == "jax":
        import jax

        return jax.device_count()
    if backend == "tensorflow":
        return len(tensorflow_devices())
    import torch

    return torch.cuda.device_count() or 1


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

    from quest.core.compat import seed_keras

    seed_keras(seed)
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
