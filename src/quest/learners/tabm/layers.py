"""TabM's Keras layers: what a saved TabM network is made of (KERAS_CLASSES, which
quest.learners.registry.keras_classes hands to Keras where a network is loaded); it needs Keras only.
quest.learners.tabm.network builds, initialises and trains networks of them.

A TabM network carries its k members on an axis of its own: rows (n, inputs) become (n, k, width) at
`EnsembleView` and leave as (n, k, outputs), until `EnsembleMean` averages the members for prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np

BOUNDS = 1e-7  # scikit-learn's QuantileTransformer: values this close to the outer quantiles map to them
NORMAL_CLIP = 5.199337582605575  # its output's bound: norm.ppf(1 - (BOUNDS - spacing(1)))
OPEN = 1e30  # a piecewise-linear component's bound where it is not clamped


@keras.saving.register_keras_serializable(package="quest")
class QuantileInputs(keras.layers.Layer):
    """Numeric inputs through a quantile transform to a normal distribution, as scikit-learn's
    QuantileTransformer(output_distribution="normal") computes it from its `quantiles`; the other inputs (`passed`,
    prepare's one-hot and boolean columns) follow unchanged. Fitted per network, on its training rows."""

    def __init__(self, numeric: Sequence[int], passed: Sequence[int], quantiles: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.numeric, self.passed, self.count = list(numeric), list(passed), quantiles

    def build(self, input_shape: tuple) -> None:
        shape = (len(self.numeric), self.count)
        self.quantiles = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="quantiles")

    def call(self, x):
        ops = keras.ops
        parts = []
        if self.numeric:
            parts.append(self._normal(ops.take(x, self.numeric, axis=1)))
        if self.passed:
            parts.append(ops.take(x, self.passed, axis=1))
        return ops.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def _normal(self, x):
        """numpy.interp forwards and backwards, averaged (ties get the middle of their range), then the normal
        quantile function, as scikit-learn's _transform_col."""
        ops = keras.ops
        q = self.quantiles  # (features, count), non-decreasing along count
        steps = self.count - 1
        below_or_at = ops.sum(ops.cast(q[None] <= x[..., None], "int32"), axis=-1)  # per value: how many q <= x
        below = ops.sum(ops.cast(q[None] < x[..., None], "int32"), axis=-1)
        forward = self._interpolate(x, ops.clip(below_or_at - 1, 0, steps - 1))
        backward = self._interpolate(x, ops.clip(below - 1, 0, steps - 1))
        p = 0.5 * (forward + backward)
        p = ops.where(x + BOUNDS > q[None, :, -1], 1.0, p)
        p = ops.where(x - BOUNDS < q[None, :, 0], 0.0, p)
        normal = math.sqrt(2.0) * ops.erfinv(2.0 * p - 1.0)
        return ops.clip(normal, -NORMAL_CLIP, NORMAL_CLIP)

    def _interpolate(self, x, left):
        """The reference level of x on the segment [q[left], q[left + 1]] (levels evenly spaced in [0, 1])."""
        ops = keras.ops
        table = ops.broadcast_to(self.quantiles[None], (ops.shape(x)[0], *self.quantiles.shape))
        low = ops.take_along_axis(table, left[..., None], axis=-1)[..., 0]
        high = ops.take_along_axis(table, left[..., None] + 1, axis=-1)[..., 0]
        width = high - low
        fraction = ops.where(width > 0, (x - low) / ops.where(width > 0, width, 1.0), 1.0)
        fraction = ops.clip(fraction, 0.0, 1.0)
        return (ops.cast(left, "float32") + fraction) / (self.count - 1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], len(self.numeric) + len(self.passed))

    def get_config(self) -> dict:
        return {**super().get_config(), "numeric": self.numeric, "passed": self.passed, "quantiles": self.count}


@keras.saving.register_keras_serializable(package="quest")
class PiecewiseLinearEmbedding(keras.layers.Layer):
    """rtdl_num_embeddings' PiecewiseLinearEmbeddings, version B, without activation: per numeric column j,
    w0_j·x + b0_j + PLE_j(x)·W_j in `dims` dimensions, where PLE_j encodes x on the column's quantile bins
    (`left`, `inverse` widths, and the clamp `low`/`high` per bin: the first bin open below, the last open above,
    a single bin not clamped). The first `numeric` inputs are embedded; the rest pass after them."""

    def __init__(self, numeric: int, bins: int, dims: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.numeric, self.bins, self.dims = numeric, bins, dims

    def build(self, input_shape: tuple) -> None:
        f, t, d = self.numeric, self.bins, self.dims
        fixed = {"initializer": "zeros", "trainable": False}
        self.left = self.add_weight(shape=(f, t), name="left", **fixed)
        self.inverse = self.add_weight(shape=(f, t), name="inverse", **fixed)
        self.low = self.add_weight(shape=(f, t), name="low", **fixed)
        self.high = self.add_weight(shape=(f, t), name="high", **fixed)
        self.linear_weight = self.add_weight(shape=(f, d), initializer="zeros", name="linear_weight")
        self.linear_bias = self.add_weight(shape=(f, d), initializer="zeros", name="linear_bias")
        self.piecewise = self.add_weight(shape=(f, t, d), initializer="zeros", name="piecewise")

    def call(self, x):
        ops = keras.ops
        # Column-major, (columns, rows, bins): XLA's CPU transposes of the (rows, columns, bins) encoding cost more
        # than the rest of a TabM step.
        numbers, rest = ops.transpose(x[:, : self.numeric])[..., None], x[:, self.numeric :]
        left, inverse, low, high = (w[:, None, :] for w in (self.left, self.inverse, self.low, self.high))
        encoded = ops.minimum(ops.maximum((numbers - left) * inverse, low), high)
        embedded = numbers * self.linear_weight[:, None, :] + self.linear_bias[:, None, :]
        embedded = embedded + ops.matmul(encoded, self.piecewise)  # (columns, rows, dims)
        flat = ops.reshape(ops.transpose(embedded, (1, 0, 2)), (-1, self.numeric * self.dims))
        return ops.concatenate([flat, rest], axis=1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[1] + self.numeric * (self.dims - 1))

    def get_config(self) -> dict:
        return {**super().get_config(), "numeric": self.numeric, "bins": self.bins, "dims": self.dims}


@keras.saving.register_keras_serializable(package="quest")
class EnsembleView(keras.layers.Layer):
    """(n, d) rows to (n/k, k, d) in training, where the engine hands member i rows i, k + i, 2k + i, ... (each
    member its own batches); (n, k, d), the same rows for every member, at prediction."""

    def __init__(self, members: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.members = members

    def call(self, x, training: bool = False):
        ops = keras.ops
        if training:
            return ops.reshape(x, (-1, self.members, x.shape[-1]))
        return ops.broadcast_to(x[:, None, :], (ops.shape(x)[0], self.members, x.shape[-1]))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.members, input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "members": self.members}


@keras.saving.register_keras_serializable(package="quest")
class BatchEnsembleDense(keras.layers.Layer):
    """A BatchEnsemble linear layer: member i computes ((x_i ⊙ r_i) W) ⊙ s_i + b_i, W shared. `scaled: False` is
    TabM-mini's plain shared layer (W and one bias); `adapter` is TabM-mini's first layer, x_i ⊙ r_i alone."""

    def __init__(self, units: int, members: int, kind: str = "ensemble", **kwargs) -> None:
        super().__init__(**kwargs)
        self.units, self.members, self.kind = units, members, kind

    def build(self, input_shape: tuple) -> None:
        k, d_in = self.members, input_shape[-1]
        if self.kind in ("ensemble", "adapter"):
            self.r = self.add_weight(shape=(k, d_in), initializer="ones", name="r")
        if self.kind == "adapter":
            return
        self.kernel = self.add_weight(shape=(d_in, self.units), initializer="zeros", name="kernel")
        if self.kind == "ensemble":
            self.s = self.add_weight(shape=(k, self.units), initializer="ones", name="s")
            self.bias = self.add_weight(shape=(k, self.units), initializer="zeros", name="bias")
        else:
            self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, x):
        ops = keras.ops
        if self.kind == "adapter":
            return x * self.r
        if self.kind == "ensemble":
            x = x * self.r
        # The shared W as one product over every (row, member) pair, flattened to two dimensions: XLA's CPU then
        # reads the input of the weights' gradient in place; as a product over (rows, members, d) it transposed
        # it first. Two 512-wide layers forward and back, 5 networks vectorised: 15 % less time a step.
        flat = ops.matmul(ops.reshape(x, (-1, x.shape[-1])), self.kernel)
        y = ops.reshape(flat, (*ops.shape(x)[:-1], self.units))
        return y * self.s + self.bias if self.kind == "ensemble" else y + self.bias

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape if self.kind == "adapter" else (*input_shape[:-1], self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "members": self.members, "kind": self.kind}


@keras.saving.register_keras_serializable(package="quest")
class EnsembleHeads(keras.layers.Layer):
    """k independent linear output heads: (n, k, d) to (n, k, outputs)."""

    def __init__(self, outputs: int, members: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.outputs, self.members = outputs, members

    def build(self, input_shape: tuple) -> None:
        k, d = self.members, input_shape[-1]
        self.kernel = self.add_weight(shape=(k, d, self.outputs), initializer="zeros", name="kernel")
        self.bias = self.add_weight(shape=(k, self.outputs), initializer="zeros", name="bias")

    def call(self, x):
        return keras.ops.einsum("nkd,kdo->nko", x, self.kernel) + self.bias

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], self.outputs)

    def get_config(self) -> dict:
        return {**super().get_config(), "outputs": self.outputs, "members": self.members}


@keras.saving.register_keras_serializable(package="quest")
class EnsembleMean(keras.layers.Layer):
    """The ensemble's prediction, (n, k, outputs) to (n, outputs): the mean of the members' class probabilities
    (`probabilities`), or of their outputs (regression)."""

    def __init__(self, probabilities: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.probabilities = probabilities

    def call(self, x):
        if self.probabilities:
            x = keras.ops.softmax(x, axis=-1)
        return keras.ops.mean(x, axis=1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "probabilities": self.probabilities}


def piecewise_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """compute_bins of rtdl_num_embeddings for one column: the unique quantile edges of `bins` equal-count bins."""
    return np.unique(np.quantile(values.astype(np.float64), np.linspace(0.0, 1.0, bins + 1)))


KERAS_CLASSES = (
    QuantileInputs,
    PiecewiseLinearEmbedding,
    EnsembleView,
    BatchEnsembleDense,
    EnsembleHeads,
    EnsembleMean,
)
