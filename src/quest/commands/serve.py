"""The MLP as MLflow serves it: raw rows in, the label and every class's probability (or the value) out.

MLflow logs this file as the model's code ("models from code", quest.tracking.models): loading the model runs
it, reads the network in Keras' safe mode and the preprocessing, schema and config as JSON. Nothing is
unpickled, so loading a model from the registry runs no code but quest's own. The answers are those of
quest.learners.predictor, which `quest predict` runs too, and of evaluate on the test split, bit for bit on
the same CPU and backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from quest.tracking.models import CONFIG, NETWORK, PREPROCESSING, SCHEMA


class RawRowsModel(mlflow.pyfunc.PythonModel):
    # predict's input is hinted as a DataFrame, a hint MLflow reads no schema from: the signature quest logs
    # (quest.tracking.models.signature) is the schema, and the preprocessing checks the rows against it.
    # Without a hint MLflow printed advice to add one at every logging of the model.
    def load_context(self, context) -> None:
        from quest.learners import backend

        config = json.loads(Path(context.artifacts[CONFIG]).read_text(encoding="utf-8"))
        # The backend the network trained on, on the CPU unless a GPU is there to use: a GPU it trained on
        # need not be where it serves.
        device = "cpu" if config["train"]["device"] == "cpu" else "auto"
        backend.configure(config["backend"], device, config["seed"])
        from quest.learners.predictor import Predictor

        self.predictor = Predictor.from_files(
            model=Path(context.artifacts[NETWORK]),
            preprocessing=Path(context.artifacts[PREPROCESSING]),
            schema=Path(context.artifacts[SCHEMA]),
        )

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from quest.core.errors import QuestError

        rows = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            self.predictor.preprocessing.check(rows, label="input")
        except QuestError as error:  # a 400 with quest's one line, not a 500 with a traceback
            raise MlflowException.invalid_parameter_value(str(error)) from None
        return self.predictor.predict(rows)


mlflow.models.set_model(RawRowsModel())
