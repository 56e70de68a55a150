"""The MLP as MLflow logs and registers it: a pyfunc model that takes raw rows (quest.commands.serve), with a
signature naming the table's columns and their types."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quest.data.artifacts import LABEL, Column, Schema

NETWORK, PREPROCESSING, SCHEMA, CONFIG = "network", "preprocessing", "schema", "config"  # the model's artifacts
QUEST_CODE = Path(__file__).resolve().parents[1]  # travels with the model, so it loads where quest is not installed
SERVED_MODEL_CODE = QUEST_CODE / "commands" / "serve.py"  # the model's code, by path (models from code)


def signature(schema: Schema) -> Any:
    """Raw columns in (their types as the training split had them), the label and probabilities out.

    Numbers are doubles (whole numbers without a gap in training: longs), categories strings. Booleans
    are taken as they come, and quest checks them, because MLflow would turn a missing one into False.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec
    from mlflow.types.schema import Schema as ColumnsSchema

    def spec(column: Column) -> ColSpec:
        if column.kind == "boolean":
            return ColSpec(AnyType(), column.name)
        if column.kind == "categorical":
            return ColSpec("string", column.name)
        return ColSpec("long" if column.whole else "double", column.name)

    outputs = [ColSpec("string" if name == LABEL else "double", name) for name in schema.outputs()]
    return ModelSignature(inputs=ColumnsSchema([spec(c) for c in schema.columns]), outputs=ColumnsSchema(outputs))


def requirements(backend: str) -> list[str]:
    """What the served model imports, pinned as installed: Keras and its backend, and quest's own imports."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("keras", backend, "numpy", "pandas", "pyyaml")]


def log_raw_rows_model(
    artifacts: Mapping[str, Path], schema: Schema, *, requirements: list[str], name: str = "model"
) -> Any:
    """Log quest.commands.serve with the network, the preprocessing, the schema and the config as its artifacts, into
    the active run. MLflow stores the model as code (no pickle): loading it runs quest's own serve.py. Its
    MLmodel's metadata says how prepare split the rows it learned from (`quest.split`)."""
    import mlflow

    with warnings.catch_warnings():
        # MLflow asks for an input example, to infer or check a signature: this one is given, from prepare's
        # schema, and an example would copy training rows into the store and load the model once more to
        # check it. Left alone, the request printed at every train and compare.
        warnings.filterwarnings("ignore", message=r".*An input example was not provided", category=UserWarning)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(SERVED_MODEL_CODE),
            artifacts={key: str(path) for key, path in artifacts.items()},
            code_paths=[str(QUEST_CODE)],
            signature=signature(schema),
            pip_requirements=requirements,
            metadata={"quest.split": schema.split_param},  # how its training rows were divided, in MLmodel
        )
