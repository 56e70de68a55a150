"""Per-epoch curves to an MLflow run while a network trains: an epoch hook (quest.learners.callbacks)."""

from __future__ import annotations

import sys
import time

from quest.core import timing
from quest.core.errors import store_failure


class MlflowEpochLogger:
    """Per-epoch metrics to an MLflow run, sent in batches: at most one request per `every_seconds` (and at the
    end), so the curve in the UI stays live on long runs while a run of a few seconds costs one request."""

    MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch request

    def __init__(self, run_id: str, every_seconds: float = 10.0) -> None:
        self.run_id, self.every_seconds = run_id, every_seconds
        self.pending: list = []
        self.sent = time.perf_counter()
        self.failing = False  # the last send failed: the epochs wait for the next one

    def on_train_begin(self, logs: dict | None = None) -> None:
        pass

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
