"""The realmlp section of params.yaml: RealMLP's own knobs (quest.learners.registry registers it)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from quest.params import require

RealMlpActivation = Literal["auto", "selu", "mish", "relu"]


@dataclass(frozen=True)
class RealMlpParams:
    """RealMLP-TD's recipe (quest.learners.realmlp.network), its published defaults in params.yaml."""

    seeds: int
    hidden_layers: tuple[int, ...]
    activation: RealMlpActivation
    embedding_frequencies: int
    embedding_sigma: float
    embedding_dims: int
    embedding_lr_factor: float
    one_hot_max: int
    categorical_embedding: int
    scale_lr_factor: float
    dropout_rate: float
    weight_decay: float
    learning_rate: float | Literal["auto"]
    beta2: float
    label_smoothing: float
    epochs: int
    batch_size: int
    validation_fraction: float

    def __post_init__(self) -> None:
        require(1 <= self.seeds <= 100, "realmlp.seeds", "an integer from 1 to 100", self.seeds)
        require(
            len(self.hidden_layers) > 0 and all(size >= 1 for size in self.hidden_layers),
            "realmlp.hidden_layers",
            "a non-empty list of positive layer sizes",
            list(self.hidden_layers),
        )
        require(self.embedding_frequencies >= 0, "realmlp.embedding_frequencies", "0 (off) or more",
                 self.embedding_frequencies)  # fmt: skip
        activations = typing.get_args(RealMlpActivation)  # checked here too: a trial's values skip the loader
        require(self.activation in activations, "realmlp.activation", f"one of {', '.join(activations)}",
                 self.activation)  # fmt: skip
        require(self.embedding_sigma > 0, "realmlp.embedding_sigma", "positive", self.embedding_sigma)
        require(self.embedding_lr_factor > 0, "realmlp.embedding_lr_factor", "positive", self.embedding_lr_factor)
        require(self.scale_lr_factor > 0, "realmlp.scale_lr_factor", "positive", self.scale_lr_factor)
        require(self.one_hot_max >= 2, "realmlp.one_hot_max", "at least 2", self.one_hot_max)
        require(0 < self.beta2 < 1, "realmlp.beta2", "between 0 and 1 (exclusive)", self.beta2)
        require(self.embedding_dims >= 2, "realmlp.embedding_dims", "at least 2 (the column and one more)",
                 self.embedding_dims)  # fmt: skip
        require(self.categorical_embedding >= 1, "realmlp.categorical_embedding", "a positive size",
                 self.categorical_embedding)  # fmt: skip
        require(0 <= self.dropout_rate < 1, "realmlp.dropout_rate", "in [0, 1)", self.dropout_rate)
        require(self.weight_decay >= 0, "realmlp.weight_decay", "non-negative", self.weight_decay)
        require(
            self.learning_rate == "auto" or self.learning_rate > 0,
            "realmlp.learning_rate",
            "auto or a positive number",
            self.learning_rate,
        )
        require(0 <= self.label_smoothing < 1, "realmlp.label_smoothing", "in [0, 1)", self.label_smoothing)
        require(self.epochs >= 1, "realmlp.epochs", "a positive integer", self.epochs)
        require(self.batch_size >= 1, "realmlp.batch_size", "a positive integer", self.batch_size)
        require(
            0 < self.validation_fraction < 1,
            "realmlp.validation_fraction",
            "between 0 and 1 (exclusive)",
            self.validation_fraction,
        )
