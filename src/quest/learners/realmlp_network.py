"""RealMLP-TD (Holzmüller et al., NeurIPS 2024) in Keras 3, as pytabkit's `RealMLP_TD_*` defaults build it, and
its recipe for the fast engine (quest.learners.engine.train_many).

The network takes prepare's inputs (numeric columns standardised, categories one-hot) and rebuilds RealMLP's
own: numeric columns median-centred, robust-scaled and smoothly clipped, then embedded (PBLD: 16 periodic
features per column mapped to 3, beside the column itself); a categorical column with at most 8 categories as
RealMLP encodes it (one ±1 column for two, 0/1 columns for more) and scaled like a number, a larger one
embedded in 8 dimensions. Robust scaling is affine-invariant, so prepare's standardisation changes nothing.
Then a learnable scale per input, three NTK-parametrised layers of 256 with a parametric activation and
dropout, and the output. Weights are initialised from the data (each pre-activation unit variance on the
network's training rows, each bias placing a random convex combination of five rows at zero).

It learns with Adam (β₂ 0.95, PyTorch's ε) at per-parameter learning-rate factors, decoupled weight decay as
pytabkit applies it (factors squared), the `coslog4` learning-rate schedule and the `flat_cos` schedule for
weight decay and dropout, all per step; 256 epochs of batches of 256 (the last partial batch dropped), label
smoothing 0.1, and the epoch with the lowest validation error kept (ties to the later one).

Import only after `quest.learners.backend.configure` picked the jax backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import keras
import numpy as np

from quest.learners.backend import seed_everything
from quest.learners.engine import Loss
from quest.learners.network import Job, to_target_units
from quest.params import RealMlpParams

SMOOTH_CLIP = 3.0  # smooth_clip maps into (-3, 3)
HE_POINTS = 5  # he+5: a bias puts the unit's zero at a random convex combination of this many training rows
ADAM = (0.9, 1e-8)  # β₁, ε (PyTorch's form: ε added to √v̂); β₂ is realmlp.beta2
# Per weight name: (learning-rate factor, weight-decay factor), pytabkit's hyper_factors; the embedding's and
# the scale's learning-rate factors are params (realmlp.embedding_lr_factor, scale_lr_factor).
FACTORS = {
    "kernel": (1.0, 1.0),
    "bias": (0.1, 0.0),
    "alpha": (0.1, 1.0),
    "scale": (6.0, 1.0),
    "frequencies": (0.1, 1.0),
    "phases": (0.1, 1.0),
    "mixing": (0.1, 1.0),
    "mixing_bias": (0.1, 1.0),
    "embeddings": (1.0, 1.0),
}
PERIODIC = ("frequencies", "phases", "mixing", "mixing_bias")


@dataclass(frozen=True)
class Layout:
    """How prepare's inputs become RealMLP's: `encode` maps them to the scaled columns (numeric first), and
    `large` lists the one-hot blocks of the categorical columns embedded instead."""

    encode: np.ndarray  # (inputs, numeric + small): identity for numbers, RealMLP's encoding of small categories
    numeric: int  # how many of the scaled columns are numbers (they get the periodic embedding)
    large: tuple[tuple[int, ...], ...]  # per embedded categorical column, the indices of its one-hot inputs

    @classmethod
    def of(
        cls,
        n_features: int,
        feature_columns: Sequence[tuple[str, str]],
        feature_names: Sequence[str],
        *,
        one_hot_max: int = 9,
    ) -> Layout:
        kinds = list(feature_columns) or [("numeric", str(i)) for i in range(n_features)]
        numeric = [i for i, (kind, _) in enumerate(kinds) if kind == "numeric"]
        small: list[np.ndarray] = []
        for i, (kind, _) in enumerate(kinds):
            if kind == "boolean":  # pytabkit reads a boolean as a two-category column: one ±1 column
                small.append(np.eye(n_features)[i])
        groups: dict[str, list[int]] = {}
        for i, (kind, column) in enumerate(kinds):
            if kind == "categorical":
                groups.setdefault(column, []).append(i)
        large = []
        for members in groups.values():
            missing = [i for i in members if i < len(feature_names) and feature_names[i].endswith("___missing__")]
            seen = [i for i in members if i not in missing]
            if len(seen) + 1 > one_hot_max:
                large.append(tuple(members))
                continue
            if len(seen) == 1:  # one category: +1, missing -1 (0/1 here: the same after robust scaling)
                small.append(np.eye(n_features)[seen[0]])
            elif len(seen) == 2:  # two: +1 and -1, missing 0
                small.append(np.eye(n_features)[seen[0]] - np.eye(n_features)[seen[1]])
            else:  # 0/1 per category, missing all zeros
                small.extend(np.eye(n_features)[i] for i in seen)
        columns = [np.eye(n_features)[i] for i in numeric] + small
        encode = np.stack(columns, axis=1) if columns else np.zeros((n_features, 0))
        return cls(encode=encode.astype(np.float32), numeric=len(numeric), large=tuple(large))


@keras.saving.register_keras_serializable(package="quest")
class RobustInputs(keras.layers.Layer):
    """RealMLP's preprocessing: encode, median-centre, robust-scale and smoothly clip; the one-hot blocks of the
    embedded categories pass through, after the scaled columns. Fitted per network, on its training rows."""

    def __init__(self, scaled: int, passed: Sequence[int] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.scaled, self.passed = scaled, list(passed)

    def build(self, input_shape: tuple) -> None:
        inputs = input_shape[-1]
        self.encode = self.add_weight(shape=(inputs, self.scaled), initializer="zeros", trainable=False, name="encode")
        self.center = self.add_weight(shape=(self.scaled,), initializer="zeros", trainable=False, name="center")
        self.multiplier = self.add_weight(shape=(self.scaled,), initializer="ones", trainable=False, name="multiplier")

    def call(self, x):
        z = (keras.ops.matmul(x, self.encode) - self.center) * self.multiplier
        z = z / keras.ops.sqrt(1.0 + keras.ops.square(z / SMOOTH_CLIP))
        if not self.passed:
            return z
        return keras.ops.concatenate([z, keras.ops.take(x, self.passed, axis=1)], axis=1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.scaled + len(self.passed))

    def get_config(self) -> dict:
        return {**super().get_config(), "scaled": self.scaled, "passed": self.passed}


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


def mix32(values):
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 whose outputs look independent of its inputs."""
    values = values ^ (values >> 16)
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> 13)
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> 16)


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
class FrontScale(keras.layers.Layer):
    """A learned scale per input of the first layer, initialised to 1."""

    def build(self, input_shape: tuple) -> None:
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape


@keras.saving.register_keras_serializable(package="quest")
class NtkDense(keras.layers.Dense):
    """Dense in the NTK parametrisation: weights of unit scale, the product divided by √fan_in."""

    def __init__(self, units: int, **kwargs) -> None:
        kwargs.pop("kernel_initializer", None)
        super().__init__(units, kernel_initializer="zeros", **kwargs)

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) / math.sqrt(self.kernel.shape[0]) + self.bias


@keras.saving.register_keras_serializable(package="quest")
class ParametricActivation(keras.layers.Layer):
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
            activated = x * keras.ops.tanh(keras.ops.softplus(x))  # mish
        return x + self.alpha * (activated - x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "function": self.function}


@keras.saving.register_keras_serializable(package="quest")
class ScheduledDropout(keras.layers.Layer):
    """Inverted dropout whose rate the engine sets every step (the `rate` state: flat, then cosine to 0).

    Its mask hashes each unit's position with a seed that Keras' SeedGenerator advances every call (mix32, a
    counter-based generator): JAX's threefry cost 25 ms a step for 15 networks of RealMLP's size on this CPU,
    more than their matrix products; the hash costs under 1 ms.
    """

    def __init__(self, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: tuple) -> None:
        self.rate = self.add_weight(shape=(), initializer="zeros", trainable=False, name="rate")

    def call(self, x, training: bool = False):
        if not training:
            return x
        keep = 1.0 - self.rate
        seed = keras.ops.cast(self.seed_generator.next(), "uint32")
        key = mix32(seed[0] ^ mix32(seed[1] + np.uint32(0x632BE5AB)))
        count = math.prod(x.shape[1:])
        position = keras.ops.reshape(keras.ops.arange(count, dtype="uint32"), x.shape[1:])
        batch = keras.ops.arange(keras.ops.shape(x)[0], dtype="uint32")[:, None] * np.uint32(count)
        bits = mix32((batch + position) * np.uint32(0x9E3779B9) + key)
        uniform = keras.ops.cast(bits >> 8, "float32") * (1.0 / (1 << 24))
        return keras.ops.where(uniform < keep, x / keras.ops.maximum(keep, 1e-6), 0.0)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="quest")
class ClampOutput(keras.layers.Layer):
    """Regression only, at prediction: the output held within the training target's range."""

    def build(self, input_shape: tuple) -> None:
        self.low = self.add_weight(shape=(), initializer="zeros", trainable=False, name="low")
        self.high = self.add_weight(shape=(), initializer="zeros", trainable=False, name="high")

    def call(self, x, training: bool = False):
        return x if training else keras.ops.minimum(keras.ops.maximum(x, self.low), self.high)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape


def build_realmlp(layout: Layout, *, task: str, n_classes: int, spec: RealMlpParams, seed: int) -> keras.Sequential:
    """RealMLP's layers for prepare's `layout`, every weight still to be set by `initialise`."""
    regression = task == "regression"
    layers: list[keras.layers.Layer] = [keras.Input(shape=(layout.encode.shape[0],), name="features")]
    passed = [i for block in layout.large for i in block]
    layers.append(RobustInputs(layout.encode.shape[1], passed, name="robust_inputs"))
    if layout.numeric and spec.embedding_frequencies:
        layers.append(
            PeriodicEmbedding(
                layout.numeric, spec.embedding_frequencies, spec.embedding_dims, spec.embedding_sigma, name="periodic"
            )
        )
    if layout.large:
        layers.append(CategoryEmbedding([len(b) for b in layout.large], spec.categorical_embedding, name="categories"))
    layers.append(FrontScale(name="front_scale"))
    activation = spec.activation if spec.activation != "auto" else ("mish" if regression else "selu")
    for index, units in enumerate(spec.hidden_layers, start=1):
        layers.append(NtkDense(units, name=f"hidden_{index}"))
        layers.append(ParametricActivation(activation, name=f"activation_{index}"))
        layers.append(ScheduledDropout(seed=seed + index, name=f"dropout_{index}"))
    layers.append(NtkDense(1 if regression else n_classes, name="output"))
    if regression:
        layers.append(ClampOutput(name="clamp"))
    return keras.Sequential(layers, name="realmlp")


def initialise(model: keras.Sequential, layout: Layout, x: np.ndarray, target: np.ndarray, *, seed: int) -> None:
    """pytabkit's initialisation on the network's training rows `x`: robust scaling fitted there, PBLD and
    embeddings drawn, then layer by layer each weight column rescaled so its pre-activation has unit std on
    those rows and each bias placing the unit's zero at a random convex combination of five of them."""
    rng = np.random.default_rng(seed)
    h = np.asarray(x, dtype=np.float32)
    for layer in model.layers:
        if isinstance(layer, RobustInputs):
            encoded = h @ layout.encode
            center = np.quantile(encoded, 0.5, axis=0) if len(encoded) else np.zeros(encoded.shape[1])
            spread = np.quantile(encoded, 0.75, axis=0) - np.quantile(encoded, 0.25, axis=0) if len(encoded) else 0
            spread = np.where(spread == 0, 0.5 * (encoded.max(axis=0) - encoded.min(axis=0)), spread)
            multiplier = np.where(spread == 0, 0.0, 1.0 / (spread + 1e-30))
            layer.set_weights([layout.encode, center.astype(np.float32), multiplier.astype(np.float32)])
        elif isinstance(layer, PeriodicEmbedding):
            n, f, d = layer.numeric, layer.frequencies, layer.dims - 1
            bound = 1.0 / math.sqrt(f)
            layer.set_weights(
                [
                    (layer.sigma * rng.standard_normal((n, f))).astype(np.float32),
                    rng.uniform(-math.pi, math.pi, (n, f)).astype(np.float32),
                    rng.uniform(-bound, bound, (n, f, d)).astype(np.float32),
                    rng.uniform(-bound, bound, (n, d)).astype(np.float32),
                ]
            )
        elif isinstance(layer, CategoryEmbedding):
            layer.set_weights([rng.standard_normal((sum(layer.blocks), layer.dims)).astype(np.float32)])
        elif isinstance(layer, NtkDense):
            fan_in, units = layer.kernel.shape
            kernel = rng.standard_normal((fan_in, units))
            pre = h.astype(np.float64) @ kernel / math.sqrt(fan_in)
            std = pre.std(axis=0)
            std = np.where(std > 0, std, 1.0)  # a unit whose inputs are all constant keeps its draw
            kernel, pre = kernel / std, pre / std
            rows = rng.integers(0, len(pre), size=(units, HE_POINTS)) if len(pre) else np.zeros((units, 0), int)
            weights = rng.exponential(size=rows.shape)
            weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-30)
            bias = -np.sum(weights * pre[rows, np.arange(units)[:, None]], axis=1) if len(pre) else np.zeros(units)
            layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        elif isinstance(layer, ClampOutput):
            layer.set_weights([np.float32(target.min()), np.float32(target.max())])
            continue
        h = keras.ops.convert_to_numpy(layer(h, training=False))


def coslog4(progress: jax.Array) -> jax.Array:
    """The learning-rate schedule: 0.5·(1 − cos(2π·log₂(1 + 15t))), four cycles of growing length."""
    return 0.5 * (1.0 - jnp.cos(2 * jnp.pi * jnp.log2(1.0 + 15.0 * progress)))


def flat_cos(progress: jax.Array) -> jax.Array:
    """Weight decay's and dropout's schedule: 1 for the first half, then a cosine down to 0."""
    return jnp.where(progress < 0.5, 1.0, 0.5 * (1.0 + jnp.cos(jnp.pi * (progress - 0.5) / 0.5)))


class RealMlpUpdater:
    """Adam as PyTorch computes it, with pytabkit's per-parameter factors and decoupled weight decay applied
    first, as p·(1 − wd·lr·f_wd²·f_lr²): pytabkit multiplies by the factors twice, and the reference is what
    quest matches."""

    def __init__(self, model: keras.Model, spec: RealMlpParams, *, learning_rate: float) -> None:
        self.learning_rate, self.weight_decay, self.beta2 = learning_rate, spec.weight_decay, spec.beta2
        own = {"scale": spec.scale_lr_factor, **dict.fromkeys(PERIODIC, spec.embedding_lr_factor)}
        names = [variable.path.rsplit("/", 1)[-1] for variable in model.trainable_variables]
        self.factors = [(own.get(name, FACTORS[name][0]), FACTORS[name][1]) for name in names]

    def variables(self, model: keras.Model) -> list[jax.Array]:
        moments = [jnp.zeros(v.shape, dtype="float32") for v in model.trainable_variables]
        return [jnp.zeros((), dtype="float32"), *moments, *moments]

    def apply(self, state: list, grads: list, trainable: list, progress: jax.Array) -> tuple[list, list]:
        (beta1, epsilon), beta2 = ADAM, self.beta2
        count, first, second = state[0] + 1.0, state[1 : 1 + len(trainable)], state[1 + len(trainable) :]
        rate = self.learning_rate * coslog4(progress)
        decay = self.weight_decay * flat_cos(progress)
        new_trainable, new_first, new_second = [], [], []
        for value, grad, m, v, (lr_factor, wd_factor) in zip(
            trainable, grads, first, second, self.factors, strict=True
        ):
            value = value * (1.0 - decay * rate * (wd_factor * lr_factor) ** 2)
            m = beta1 * m + (1.0 - beta1) * grad
            v = beta2 * v + (1.0 - beta2) * jnp.square(grad)
            m_hat, v_hat = m / (1.0 - beta1**count), v / (1.0 - beta2**count)
            new_trainable.append(value - rate * lr_factor * m_hat / (jnp.sqrt(v_hat) + epsilon))
            new_first.append(m)
            new_second.append(v)
        return new_trainable, [count, *new_first, *new_second]


class RealMlpRecipe:
    """RealMLP-TD for quest.learners.engine.train_many: its networks, optimiser, schedules and losses."""

    scheduled, drop_last, later_ties = True, True, True
    patience = 0  # every epoch runs; the best one is kept

    def __init__(self, spec: RealMlpParams, layout: Layout, *, task: str, n_classes: int, data_parallel: int | str = 1):
        self.spec, self.layout, self.task, self.n_classes = spec, layout, task, n_classes
        self.epochs, self.batch_size, self.data_parallel = spec.epochs, spec.batch_size, data_parallel
        self._rates: list[int] = []  # where the dropout rates sit among the network's non-trainable weights

    @property
    def learning_rate(self) -> float:
        if self.spec.learning_rate != "auto":
            return float(self.spec.learning_rate)
        return 0.2 if self.task == "regression" else 0.04

    def fresh(self, x: np.ndarray, y: np.ndarray, job: Job) -> keras.Model:
        seed_everything(job.seed)
        model = build_realmlp(self.layout, task=self.task, n_classes=self.n_classes, spec=self.spec, seed=job.seed)
        target = self.target(y)[job.fit_rows]
        if self.task == "regression":  # the clamp's bounds, in the standardised units the network learns
            mean, scale = float(np.mean(target, dtype=np.float64)), float(np.std(target, dtype=np.float64)) or 1.0
            target = (target - mean) / scale
        initialise(model, self.layout, x[job.fit_rows], target, seed=job.seed)
        return model

    def updater(self, model: keras.Model) -> RealMlpUpdater:
        self._rates = [i for i, v in enumerate(model.non_trainable_variables) if v.path.endswith("/rate")]
        return RealMlpUpdater(model, self.spec, learning_rate=self.learning_rate)

    def target(self, y: np.ndarray) -> np.ndarray:
        return y.astype(np.float32).reshape(-1, 1) if self.task == "regression" else y.astype(np.int32)

    def train_loss(self) -> Loss:
        return self._loss(smoothing=self.spec.label_smoothing)

    def validation_loss(self) -> Loss:
        return self._loss(smoothing=0.0)

    def _loss(self, *, smoothing: float) -> Loss:
        if self.task == "regression":

            def squared(y_true: jax.Array, y_pred: jax.Array) -> tuple[jax.Array, jax.Array]:
                return jnp.mean(jnp.square(y_true - y_pred), axis=-1), jnp.abs(y_true - y_pred)[:, 0]

            return squared
        classes = self.n_classes

        def cross_entropy(y_true: jax.Array, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
            wanted = jax.nn.one_hot(y_true, classes) * (1.0 - smoothing) + smoothing / classes
            loss = -jnp.sum(wanted * jax.nn.log_softmax(logits, axis=-1), axis=-1)
            return loss, (jnp.argmax(logits, axis=-1) == y_true).astype("float32")

        return cross_entropy

    def criterion(self, val_loss: jax.Array, val_metric: jax.Array) -> jax.Array:
        # Classification error, or the (clamped) squared error: the epoch pytabkit keeps.
        return val_loss if self.task == "regression" else 1.0 - val_metric

    def schedule(self, non_trainable: list, progress: jax.Array) -> list:
        rate = self.spec.dropout_rate * flat_cos(progress)
        return [rate.astype(v.dtype) if i in self._rates else v for i, v in enumerate(non_trainable)]

    def finish(self, model: keras.Model, *, shift: float, scale: float) -> None:
        if self.task == "regression":
            to_target_units(model, mean=shift, scale=scale)
        else:
            model.add(keras.layers.Softmax(name="probabilities"))
