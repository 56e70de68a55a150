"""What prepare hands to the later stages: the schema it decided on and the processed arrays, read back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from quest import paths
from quest.files import read_json, require

ColumnKind = Literal["numeric", "boolean", "categorical"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    categories: tuple[str, ...] = ()  # categorical columns: the values seen in the training split


@dataclass(frozen=True)
class Schema:
    """What prepare decided about the table; saved beside the processed data and read by later stages."""

    dataset: str
    source: str
    task: Literal["classification", "regression"]
    target: str
    class_labels: tuple[str, ...]  # classification: label of encoded class i; empty for regression
    columns: tuple[Column, ...]
    features: tuple[str, ...]  # model input names, after one-hot encoding
    n_train: int
    n_test: int
    folds: int
    repeats: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Schema:
        columns = tuple(Column(c["name"], c["kind"], tuple(c["categories"])) for c in raw["columns"])
        fields = {**raw, "columns": columns}
        for key in ("class_labels", "features"):
            fields[key] = tuple(raw[key])
        return cls(**fields)


@dataclass(frozen=True)
class Prepared:
    """prepare's outputs as the later stages read them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    folds: np.ndarray  # (repeats, rows): the fold of each training row in each repeat
    schema: Schema

    @property
    def n_classes(self) -> int:
        return len(self.schema.class_labels)

    def splits(self) -> Iterator[tuple[int, np.ndarray]]:
        """(split number, held-out mask) for every fold of every repeat, in the same order for every model."""
        for repeat in range(self.schema.repeats):
            for fold in range(self.schema.folds):
                yield repeat * self.schema.folds + fold, self.folds[repeat] == fold

    @property
    def split_sizes(self) -> tuple[int, int]:
        """Average (training, held-out) rows of a split: the n_train and n_test of the corrected statistics."""
        held_out = len(self.y_train) / self.schema.folds
        return round(len(self.y_train) - held_out), round(held_out)


def read_prepared(directory: Path) -> Prepared:
    require(directory / paths.SCHEMA, "prepare")
    return Prepared(
        x_train=np.load(directory / paths.X_TRAIN, allow_pickle=False),
        y_train=np.load(directory / paths.Y_TRAIN, allow_pickle=False),
        x_test=np.load(directory / paths.X_TEST, allow_pickle=False),
        y_test=np.load(directory / paths.Y_TEST, allow_pickle=False),
        folds=np.load(directory / paths.FOLDS, allow_pickle=False),
        schema=Schema.from_dict(read_json(directory / paths.SCHEMA)),
    )
