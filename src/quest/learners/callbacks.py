"""What sees a network's epochs as it trains: the hook both engines call, and progress on the terminal.

A hook is a plain object with Keras' callback methods (`on_train_begin`, `on_epoch_end(epoch, logs)`,
`on_train_end`): the fast engine calls them after each block of epochs, the fit engine wraps them as Keras
callbacks. MLflow's per-epoch logger (quest.tracking.epochs) is one; `Progress` is another.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Protocol


class NonFiniteLoss(Exception):  # noqa: N818 (a finding the caller words as TrainingDiverged)
    """An engine's finding: job `job`'s `curve` (loss or val_loss) was `value` at epoch `epoch` (from 1)."""

    def __init__(self, *, job: int, epoch: int, curve: str, value: float) -> None:
        super().__init__(f"job {job}: {curve} {value} at epoch {epoch}")
        self.job, self.epoch, self.curve, self.value = job, epoch, curve, value


def first_non_finite(logs: dict | None) -> tuple[str, float] | None:
    """The first of an epoch's loss and val_loss that is NaN or infinite, as (name, value); None when both are
    finite (or absent)."""
    for curve in ("loss", "val_loss"):
        value = (logs or {}).get(curve)
        if value is not None and not math.isfinite(value):
            return curve, float(value)
    return None


class EpochHook(Protocol):
    def on_train_begin(self, logs: dict | None = None) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...

    def on_train_end(self, logs: dict | None = None) -> None: ...


class Progress:
    """A line every `every` epochs and at the end: long training is never silent, CI logs stay short."""

    def __init__(self, label: str, epochs: int, lines: int = 5) -> None:
        self.label, self.epochs = label, epochs
        self.every = max(1, epochs // lines)
        self.started = 0.0
        self.best = float("inf")
        self.last: tuple[int, dict] = (0, {})

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.best = min(self.best, logs.get("val_loss", float("inf")))
        self.last = (epoch + 1, logs)
        if (epoch + 1) % self.every == 0 and epoch + 1 < self.epochs:
            self._print(epoch + 1, logs, "")

    def on_train_end(self, logs: dict | None = None) -> None:
        epoch, last = self.last
        stopped = " (early stop)" if epoch < self.epochs else ""
        self._print(epoch, last, f"{stopped}, {time.perf_counter() - self.started:.1f}s")

    def _print(self, epoch: int, logs: dict, suffix: str) -> None:
        shown = " ".join(f"{key}={value:.4f}" for key, value in sorted(logs.items()))
        print(
            f"train: {self.label} epoch {epoch}/{self.epochs} {shown} best_val_loss={self.best:.4f}{suffix}",
            file=sys.stderr,
            flush=True,
        )
