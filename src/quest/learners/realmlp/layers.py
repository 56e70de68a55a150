"""RealMLP's Keras layers: what a saved RealMLP network is made of (KERAS_CLASSES, which
quest.learners.registry.keras_classes hands to Keras where a network is loaded); it needs Keras only.
quest.learners.realmlp.network builds, initialises and trains networks of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np

from quest.learners.layers import ShapePreserving

SMOOTH_CLIP = 3.0  # smooth_clip maps into (-3, 3)


def encoded(x, sources: Sequence[Sequence[int]], take):
    """RealMLP's encoding of prepare's inputs: per scaled column, the input `plus`, less the input `minus` when
    it is not -1 (a two-category column is +1 for one category, -1 for the other). `take` is the array
    library's (numpy's or keras.ops'); as a gather it costs one read per column, where a matrix product with
    the encoding cost inputs × columns (3 000 numeric columns: 9 million weights per network)."""
    plus = np.array([column[0] for column in sources], dtype=np.int32)
    minus = np.array([column[1] for column in sources], dtype=np.int32)
    z = take(x, plus, axis=1)
    if (minus >= 0).any():  # x_plus - x_minus·1 and x_plus - x_0·0: bit for bit what the matrix product gave
        z = z - take(x, np.maximum(minus, 0), axis=1) * (minus >= 0).astype(np.float32)
    return z


@keras.saving.register_keras_serializable(package="quest")
class RobustInputs(keras.layers.Layer):
    """RealMLP's preprocessing: encode (`encoded`, with `sources`), median-centre, robust-scale and smoothly
    clip; the one-hot blocks of the embedded categories pass through, after the scaled columns. Fitted per
    network, on its training rows. A network saved before `sources` (quest 2026-12) holds its encoding as a
    dense `encode` weight, inputs × scaled, and is still read so."""

    def __init__(
        self, scaled: int, passed: Sequence[int] = (), sources: Sequence[Sequence[int]] | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.scaled, self.passed = scaled, list(passed)
        self.sources = None if sources is None else [[int(plus), int(minus)] for plus, minus in sources]

    def build(self, input_shape: tuple) -> None:
        if self.sources is None:
            shape = (input_shape[-1], self.scaled)
            self.encode = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="encode")
        self.center = self.add_weight(shape=(self.scaled,), initializer="zeros", trainable=False, name="center")
        self.multiplier = self.add_weight(shape=(self.scaled,), initializer="ones", trainable=False, name="multiplier")

    def call(self, x):
        old = self.sources is None
        z = keras.ops.matmul(x, self.encode) if old else encoded(x, self.sources, keras.ops.take)
        z = (z - self.center) * self.multiplier
        z = z / keras.ops.sqrt(1.0 + keras.ops.square(z / SMOOTH_CLIP))
        if not self.passed:
            return z
        return keras.ops.concatenate([z, keras.ops.take(x, self.passed, axis=1)], axis=1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.scaled + len(self.passed))

    def get_config(self) -> dict:
        config = {**super().get_config(), "scaled": self.scaled, "passed": self.passed}
        return config if self.sources is None else {**config, "sources": self.sources}


# cos(2πr) on r in [-1/2, 1/2] as its Taylor series in (2πr)² to the 20th power: within float32's rounding of
# the argument. XLA's own cos costs about 4.6 ns a value on this CPU and was a third of RealMLP's training time;
# this polynomial vectorises (about a fifth of that, gradient included).
COS_TERMS = tuple((-1) ** k / math.factorial(2 * k) for k in range(11))


def cos_turns(turns):
    """cos(2π·turns), for any real `turns`: reduced to the nearest whole turn, then the polynomial."""
    reduced = turns - keras.ops.round(turns)
    square = keras.ops.square(2 * math.pi * reduced)
    total = COS_TERMS[-1]
    for term in COS_TERMS[-2::-1]:
        total = total * square + term
    return total


@keras.saving.register_keras_serializable(package="quest")
class PeriodicEmbedding(keras.layers.Layer):
    """PBLD on the first `numeric` inputs: per column cos(2π·w·x + b) at `frequencies` frequencies, a linear map
    to `dims` - 1 values, and the column itself; the other inputs follow unchanged."""

    def __init__(self, numeric: int, frequencies: int, dims: int, sigma: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.numeric, self.frequencies, self.dims, self.sigma = numeric, frequencies, dims, sigma

    def build(self, input_shape: tuple) -> None:
        n, f, d = self.numeric, self.frequencies, self.dims - 1
        self.frequencies_ = self.add_weight(shape=(n, f), initializer="zeros", name="frequencies")
        self.phases = self.add_weight(shape=(n, f), initializer="zeros", name="phases")
        self.mixing = self.add_weight(shape=(n, f, d), initializer="zeros", name="mixing")
        self.mixing_bias = self.add_weight(shape=(n, d), initializer="zeros", name="mixing_bias")

    def call(self, x):
        numbers, rest = x[:, : self.numeric], x[:, self.numeric :]
        periodic = cos_turns(numbers[:, :, None] * self.frequencies_ + self.phases / (2 * math.pi))
        mixed = keras.ops.einsum("bnf,nfd->bnd", periodic, self.mixing) + self.mixing_bias
        flat = keras.ops.reshape(mixed, (-1, self.numeric * (self.dims - 1)))
        return keras.ops.concatenate([flat, numbers, rest], axis=1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[-1] + self.numeric * (self.dims - 1))

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "numeric": self.numeric,
            "frequencies": self.frequencies,
            "dims": self.dims,
            "sigma": self.sigma,
        }


@keras.saving.register_keras_serializable(package="quest")
class CategoryEmbedding(keras.layers.Layer):
    """The trailing one-hot blocks (sizes `blocks`) each become a learned `dims`-dimensional embedding."""

    def __init__(self, blocks: Sequence[int], dims: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.blocks, self.dims = list(blocks), dims

    def build(self, input_shape: tuple) -> None:
        self.embeddings = self.add_weight(shape=(sum(self.blocks), self.dims), initializer="zeros", name="embeddings")

    def call(self, x):
        width = sum(self.blocks)
        head, one_hot = x[:, : x.shape[-1] - width], x[:, x.shape[-1] - width :]
        parts, start = [head], 0
        for size in self.blocks:
            parts.append(keras.ops.matmul(one_hot[:, start : start + size], self.embeddings[start : start + size]))
            start += size
        return keras.ops.concatenate(parts, axis=1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[-1] - sum(self.blocks) + self.dims * len(self.blocks))

    def get_config(self) -> dict:
        return {**super().get_config(), "blocks": self.blocks, "dims": self.dims}


@keras.saving.register_keras_serializable(package="quest")
class FrontScale(ShapePreserving):
    """A learned scale per input of the first layer, initialised to 1."""

    def build(self, input_shape: tuple) -> None:
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


@keras.saving.register_keras_serializable(package="quest")
class NtkDense(keras.layers.Dense):
    """Dense in the NTK parametrisation: weights of unit scale, the product divided by √fan_in."""

    def __init__(self, units: int, **kwargs) -> None:
        kwargs.pop("kernel_initializer", None)
        super().__init__(units, kernel_initializer="zeros", **kwargs)

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) / math.sqrt(self.kernel.shape[0]) + self.bias


def mish(x):
    """x·tanh(softplus(x)) with one exponential: tanh(log(1 + e)) = n / (n + 2) for n = e·(e + 2), e = exp(x). Past
    x = 20 the ratio is 1 in float32, so the exponential stops there. XLA's log1p, exp and tanh took a tenth of
    RealMLP's regression step on this CPU; this takes a third of that."""
    e = keras.ops.exp(keras.ops.minimum(x, 20.0))
    n = e * (e + 2.0)
    return x * (n / (n + 2.0))


@keras.saving.register_keras_serializable(package="quest")
class ParametricActivation(ShapePreserving):
    """x + α(σ(x) − x) with α per unit, initialised to 1 (σ exactly at the start); σ is SELU, Mish or ReLU."""

    def __init__(self, function: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.function = function

    def build(self, input_shape: tuple) -> None:
        self.alpha = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="alpha")

    def call(self, x):
        if self.function == "selu":
            activated = keras.ops.selu(x)
        elif self.function == "relu":
            activated = keras.ops.relu(x)
        else:
            activated = mish(x)
        return x + self.alpha * (activated - x)

    def get_config(self) -> dict:
        return {**super().get_config(), "function": self.function}


@keras.saving.register_keras_serializable(package="quest")
class ClampOutput(ShapePreserving):
    """Regression only, at prediction: the output held within the training target's range."""

    def build(self, input_shape: tuple) -> None:
        self.low = self.add_weight(shape=(), initializer="zeros", trainable=False, name="low")
        self.high = self.add_weight(shape=(), initializer="zeros", trainable=False, name="high")

    def call(self, x, training: bool = False):
        return x if training else keras.ops.minimum(keras.ops.maximum(x, self.low), self.high)


KERAS_CLASSES = (
    RobustInputs,
    PeriodicEmbedding,
    CategoryEmbedding,
    FrontScale,
    NtkDense,
    ParametricActivation,
    ClampOutput,
)
