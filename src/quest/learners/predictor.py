"""The trained MLP on raw rows: the preprocessing prepare fitted, then the network. `quest predict` and the
served model (quest.commands.serve) both run this, so they answer exactly what evaluate computed for the test split.

Import only after `quest.learners.backend.configure`: it loads the Keras model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from quest.core.files import read_json, require
from quest.data.artifacts import LABEL, PREDICTION, Preprocessing, Schema

if TYPE_CHECKING:
    import keras
    import pandas as pd


@dataclass(frozen=True)
class Predictor:
    network: keras.Model
    preprocessing: Preprocessing
    schema: Schema

    @classmethod
    def from_files(cls, *, model: Path, preprocessing: Path, schema: Path) -> Predictor:
        """Keras' safe mode for the network, plain JSON for the rest: loading runs none of their contents."""
        from quest.learners.networks import load_mlp
        from quest.learners.registry import keras_classes

        return cls(
            network=load_mlp(model, keras_classes()),
            preprocessing=Preprocessing.from_dict(read_json(require(preprocessing, "prepare"))),
            schema=Schema.from_dict(read_json(require(schema, "prepare"))),
        )

    @property
    def columns(self) -> list[str]:
        """The raw columns a row must have (the table's, less the target and data.drop)."""
        return [column.name for column in self.preprocessing.columns]

    def predict(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Per raw row, the label and every class's probability (or the value), indexed as `raw`."""
        import pandas as pd

        from quest.learners.networks import predict

        output = predict(self.network, self.preprocessing.apply(raw), task=self.schema.task)
        if self.schema.task == "regression":
            return pd.DataFrame({PREDICTION: output}, index=raw.index)
        labels = np.asarray(self.schema.class_labels, dtype=object)[output.argmax(axis=1)]
        return pd.DataFrame(
            {LABEL: labels, **{name: output[:, k] for k, name in enumerate(self.schema.outputs()[1:])}},
            index=raw.index,
        )
