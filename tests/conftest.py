"""Shared test helpers: the repo's own params.yaml as the base, tiny inline frames, a quiet Keras backend."""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

# The model tests import keras; pick its backend the way quest.backend.configure would, before any import.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def merge(base: dict, overrides: dict) -> dict:
    """Deep-merge `overrides` (nested dicts) into a copy of `base`."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def repo_params(**overrides: Any) -> dict:
    """The repository's params.yaml as a dict, with section overrides: repo_params(train={"epochs": 2})."""
    return merge(yaml.safe_load((REPO / "params.yaml").read_text()), overrides)


def blobs(n: int, classes: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` rows of three features, `classes` Gaussian blobs two apart (class i shifted along feature i)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = (rng.normal(size=(n, 3)) + 2.0 * np.eye(classes, 3)[y]).astype(np.float32)
    return x, y


@pytest.fixture
def mixed_frame() -> pd.DataFrame:
    """Six rows with numeric, boolean and categorical columns and gaps in each."""
    return pd.DataFrame(
        {
            "age": [22.0, None, 30.0, 41.0, 8.0, 35.0],
            "fare": [7.25, 71.3, 8.05, 53.1, 21.0, 8.46],
            "alone": [True, False, None, True, False, True],
            "port": ["S", "C", "S", None, "Q", "S"],
            "survived": [0, 1, 1, 1, 0, 0],
        }
    )


def stop_group(process: subprocess.Popen, seconds: float = 30) -> None:
    """SIGTERM to the process group `process` leads (started with start_new_session: a script and what it started),
    SIGKILL to it if the leader has not exited after `seconds`; returns once it has."""
    with contextlib.suppress(ProcessLookupError):  # every process of the group has ended already
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
