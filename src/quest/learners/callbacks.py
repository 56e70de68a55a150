"""Keras callbacks for the edges of training: progress on the terminal and per-epoch curves in MLflow.

Import only after `quest.backend.configure` (this module imports keras).
"""

from __future__ import annotations

import sys
import time

import keras

from quest import timing
from quest.errors import store_failure


class Progress(keras.callbacks.Callback):
    """A line every `every` epochs and at the end: long training is never silent, CI logs stay short."""

    def __init__(self, label: str, epochs: int, lines: int = 5) -> None:
        super().__init__()
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


class MlflowEpochLogger(keras.callbacks.Callback):
    """Per-epoch metrics to an MLflow run, sent in batches: at most one request per `every_seconds` (and at the
    end), so the curve in the UI stays live on long runs while a run of a few seconds costs one request."""

    MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch request

    def __init__(self, run_id: str, every_seconds: float = 10.0) -> None:
        super().__init__()
        self.run_id, self.every_seconds = run_id, every_seconds
        self.pending: list = []
        self.sent = time.perf_counter()
        self.failing = False  # the last send failed: the epochs wait for the next one

    @timing.timed("mlflow")
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending.extend(Metric(key, float(value), now, epoch + 1) for key, value in (logs or {}).items())
        if time.perf_counter() - self.sent >= self.every_seconds:
            self.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        self.flush()

    @timing.timed("mlflow")
    def flush(self, strict: bool = False) -> None:
        """Send the pending epochs. A store failure never stops training: the epochs stay pending for the next
        send, and only `strict` (the stage, once its model is safe on disk) raises it."""
        try:
            if self.pending:
                from mlflow.tracking import MlflowClient

                client = MlflowClient()
                while self.pending:
                    client.log_batch(self.run_id, metrics=self.pending[: self.MAX_BATCH])
                    del self.pending[: self.MAX_BATCH]
        except Exception as error:
            reason = store_failure(error)
            if strict or reason is None:
                raise
            if not self.failing:
                print(f"train: notice: MLflow store failed ({reason}); epochs kept for the next send", file=sys.stderr)
            self.failing = True
        else:
            if self.failing:
                print("train: notice: MLflow store answers again; kept epochs sent", file=sys.stderr)
            self.failing = False
        self.sent = time.perf_counter()
