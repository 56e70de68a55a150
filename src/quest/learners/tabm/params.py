"""The tabm section of params.yaml: TabM's own knobs (quest.learners.registry registers it)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from quest.params import require

TabmArch = Literal["tabm", "tabm-mini"]
TabmEmbedding = Literal["piecewise", "none"]


@dataclass(frozen=True)
class TabmParams:
    """TabM's recipe (quest.learners.tabm.network), pytabkit's TabM_D defaults with its piecewise-linear embeddings
    on, in params.yaml."""

    seeds: int
    arch: TabmArch
    members: int
    embedding: TabmEmbedding
    bins: int
    embedding_dims: int
    blocks: int | Literal["auto"]
    width: int
    dropout_rate: float
    learning_rate: float
    weight_decay: float
    batch_size: int | Literal["auto"]
    patience: int
    epochs: int
    validation_fraction: float

    def __post_init__(self) -> None:
        require(1 <= self.seeds <= 100, "tabm.seeds", "an integer from 1 to 100", self.seeds)
        for key, allowed in (("arch", TabmArch), ("embedding", TabmEmbedding)):  # a trial's values skip the loader
            choices = typing.get_args(allowed)
            require(getattr(self, key) in choices, f"tabm.{key}", f"one of {', '.join(choices)}", getattr(self, key))
        require(1 <= self.members <= 256, "tabm.members", "an integer from 1 to 256", self.members)
        require(self.bins >= 2, "tabm.bins", "at least 2", self.bins)
        require(self.embedding_dims >= 1, "tabm.embedding_dims", "a positive size", self.embedding_dims)
        require(self.blocks == "auto" or self.blocks >= 1, "tabm.blocks", "auto or a positive count", self.blocks)
        require(self.width >= 1, "tabm.width", "a positive layer size", self.width)
        require(0 <= self.dropout_rate < 1, "tabm.dropout_rate", "in [0, 1)", self.dropout_rate)
        require(self.learning_rate > 0, "tabm.learning_rate", "a positive number", self.learning_rate)
        require(self.weight_decay >= 0, "tabm.weight_decay", "non-negative", self.weight_decay)
        require(self.batch_size == "auto" or self.batch_size >= 1, "tabm.batch_size", "auto or a positive integer",
                 self.batch_size)  # fmt: skip
        require(self.patience >= 0, "tabm.patience", "a non-negative integer", self.patience)
        require(self.epochs >= 1, "tabm.epochs", "a positive integer", self.epochs)
        require(
            0 < self.validation_fraction < 1,
            "tabm.validation_fraction",
            "between 0 and 1 (exclusive)",
            self.validation_fraction,
        )

    @property
    def depth(self) -> int:
        """The blocks: `auto` is 3 without embeddings and 2 with them, as pytabkit resolves it."""
        if self.blocks != "auto":
            return self.blocks
        return 2 if self.embedding == "piecewise" else 3

    def batch_rows(self, n_train: int) -> int:
        """The batch size: `auto` is pytabkit's size for `n_train` rows, from the TabM paper's choices."""
        if self.batch_size != "auto":
            return self.batch_size
        for limit, size in ((2800, 32), (4500, 64), (6400, 128), (32000, 256), (108000, 512)):
            if n_train < limit:
                return size
        return 1024
