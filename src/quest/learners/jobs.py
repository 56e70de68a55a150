"""What every family's network training is given and gives back: a job (the rows it learns from, those that
pick its epoch, its seed) and its result, and a regression target's standardisation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from quest.data.splits import RANDOM, Division, validation_split


@dataclass
class FitResult:
    model: keras.Model
    history: dict[str, list[float]]  # per-epoch loss/metrics, train and validation
    best_epoch: int  # 1-based epoch whose weights the model holds
    epochs_run: int


def output_size(task: str, n_classes: int) -> int:
    return 1 if task == "regression" or n_classes == 2 else n_classes


@dataclass(frozen=True)
class Job:
    """One network to train: the rows of x it learns from, the rows that pick its best epoch, its seed."""

    fit_rows: np.ndarray
    validation_rows: np.ndarray
    seed: int
    # Values over the recipe's own for this job alone (tuning trials trained together: learning rate, dropout,
    # L2), as sorted (key, value) pairs.
    hyper: tuple[tuple[str, Any], ...] = ()


def standardiser(values: np.ndarray) -> tuple[float, float]:
    """(mean, scale) of a regression target's fit rows; the network learns (y - mean) / scale."""
    values = np.asarray(values, dtype=np.float64)  # float32 squares overflow near 1e19
    return float(values.mean()), float(values.std()) or 1.0


def to_target_units(model: keras.Sequential, *, mean: float, scale: float) -> None:
    """Append the layer that maps the network's standardised output back to the target's units."""
    model.add(keras.layers.Rescaling(scale=scale, offset=mean, name="target_units"))


def plan_job(
    rows: np.ndarray, y: np.ndarray, *, task: str, validation_fraction: float, seed: int, division: Division = RANDOM
) -> Job:
    """A job over `rows` of (x, y): a seeded, stratified slice of them watches for early stopping, drawn as the
    table's `division` (over the rows of y) allows: whole groups, or the latest rows."""
    fit, validation = validation_split(
        y[rows], task=task, fraction=validation_fraction, seed=seed, division=division.of(rows)
    )
    return Job(fit_rows=rows[fit], validation_rows=rows[validation], seed=seed)
