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
from quest.learners.engine import Loss, UniformJobs
from quest.learners.jobs import Job, standardiser, to_target_units
from quest.learners.layers import ScheduledDropout
from quest.learners.optimisers import TorchAdam
from quest.learners.realmlp.layers import (
    SMOOTH_CLIP,
    CategoryEmbedding,
    ClampOutput,
    FrontScale,
    NtkDense,
    ParametricActivation,
    PeriodicEmbedding,
    RobustInputs,
    encoded,
)
from quest.learners.realmlp.params import RealMlpParams

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
    """How prepare's inputs become RealMLP's: `sources` maps them to the scaled columns (numeric first), and
    `large` lists the one-hot blocks of the categorical columns embedded instead."""

    inputs: int  # prepare's columns
    # Per scaled column (numbers, then small categories as RealMLP encodes them): (plus, minus), the input it is
    # less the input it subtracts, -1 for none (quest.learners.realmlp.layers.encoded).
    sources: tuple[tuple[int, int], ...]
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
        # Each scaled column as (plus, minus): numbers and booleans (pytabkit reads a boolean as a
        # two-category column: one ±1 column) are their input; small categories are encoded as RealMLP does.
        columns = [(i, -1) for i in numeric]
        columns += [(i, -1) for i, (kind, _) in enumerate(kinds) if kind == "boolean"]
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
                columns.append((seen[0], -1))
            elif len(seen) == 2:  # two: +1 and -1, missing 0
                columns.append((seen[0], seen[1]))
            else:  # 0/1 per category, missing all zeros
                columns += [(i, -1) for i in seen]
        return cls(inputs=n_features, sources=tuple(columns), numeric=len(numeric), large=tuple(large))


def build_realmlp(layout: Layout, *, task: str, n_classes: int, spec: RealMlpParams, seed: int) -> keras.Sequential:
    """RealMLP's layers for prepare's `layout`, every weight still to be set by `initialise`."""
    regression = task == "regression"
    layers: list[keras.layers.Layer] = [keras.Input(shape=(layout.inputs,), name="features")]
    passed = [i for block in layout.large for i in block]
    layers.append(RobustInputs(len(layout.sources), passed, layout.sources, name="robust_inputs"))
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
            z = encoded(h, layout.sources, np.take)
            center = np.quantile(z, 0.5, axis=0) if len(z) else np.zeros(z.shape[1])
            spread = np.quantile(z, 0.75, axis=0) - np.quantile(z, 0.25, axis=0) if len(z) else 0
            spread = np.where(spread == 0, 0.5 * (z.max(axis=0) - z.min(axis=0)), spread)
            multiplier = np.where(spread == 0, 0.0, 1.0 / (spread + 1e-30))
            layer.set_weights([center.astype(np.float32), multiplier.astype(np.float32)])
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
        h = host_output(layer, h)


SELU = (1.6732632423543772, 1.0507009873554805)  # SELU's α and scale, as Keras' selu


def host_output(layer: keras.layers.Layer, h: np.ndarray) -> np.ndarray:
    """What `layer(h, training=False)` computes, in float64 numpy on the host: the initialisation reads only its
    statistics, and an eager call would compile a small program per operation and shape (about 1.5 s of every
    new table's 10 networks, more than their preprocessing and initialisation otherwise cost)."""
    weights = [np.asarray(w, dtype=np.float64) for w in layer.get_weights()]
    if isinstance(layer, RobustInputs):
        *encode, center, multiplier = weights  # `encode` only in a network saved before `sources`
        z = ((h @ encode[0]) if encode else encoded(h, layer.sources, np.take)) - center
        z = z * multiplier
        z = z / np.sqrt(1.0 + np.square(z / SMOOTH_CLIP))
        return np.concatenate([z, h[:, layer.passed]], axis=1)
    if isinstance(layer, PeriodicEmbedding):
        frequencies, phases, mixing, mixing_bias = weights
        numbers, rest = h[:, : layer.numeric], h[:, layer.numeric :]
        periodic = np.cos(2 * math.pi * numbers[:, :, None] * frequencies + phases)
        mixed = np.einsum("bnf,nfd->bnd", periodic, mixing) + mixing_bias
        return np.concatenate([mixed.reshape(len(h), -1), numbers, rest], axis=1)
    if isinstance(layer, CategoryEmbedding):
        (embeddings,) = weights
        width = sum(layer.blocks)
        head, one_hot = h[:, : h.shape[1] - width], h[:, h.shape[1] - width :]
        bounds = np.cumsum([0, *layer.blocks])
        parts = [one_hot[:, a:b] @ embeddings[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return np.concatenate([head, *parts], axis=1)
    if isinstance(layer, FrontScale):
        return h * weights[0]
    if isinstance(layer, NtkDense):
        kernel, bias = weights
        return h @ kernel / math.sqrt(kernel.shape[0]) + bias
    if isinstance(layer, ParametricActivation):
        (alpha,) = weights
        if layer.function == "selu":
            activated = SELU[1] * np.where(h > 0, h, SELU[0] * np.expm1(np.minimum(h, 0.0)))
        elif layer.function == "relu":
            activated = np.maximum(h, 0.0)
        else:  # mish
            activated = h * np.tanh(np.logaddexp(0.0, h))
        return h + alpha * (activated - h)
    if isinstance(layer, ScheduledDropout):  # the identity outside training
        return h
    raise TypeError(f"host_output: no host version of {type(layer).__name__}")


def coslog4(progress: jax.Array) -> jax.Array:
    """The learning-rate schedule: 0.5·(1 − cos(2π·log₂(1 + 15t))), four cycles of growing length."""
    return 0.5 * (1.0 - jnp.cos(2 * jnp.pi * jnp.log2(1.0 + 15.0 * progress)))


def flat_cos(progress: jax.Array) -> jax.Array:
    """Weight decay's and dropout's schedule: 1 for the first half, then a cosine down to 0."""
    return jnp.where(progress < 0.5, 1.0, 0.5 * (1.0 + jnp.cos(jnp.pi * (progress - 0.5) / 0.5)))


class RealMlpUpdater(TorchAdam):
    """Adam as PyTorch computes it, with pytabkit's per-parameter factors and decoupled weight decay applied
    first, as p·(1 − wd·lr·f_wd²·f_lr²): pytabkit multiplies by the factors twice, and the reference is what
    quest matches."""

    def __init__(self, model: keras.Model, spec: RealMlpParams, *, learning_rate: float) -> None:
        super().__init__(beta1=ADAM[0], beta2=spec.beta2, epsilon=ADAM[1])
        self.learning_rate, self.weight_decay = learning_rate, spec.weight_decay
        own = {"scale": spec.scale_lr_factor, **dict.fromkeys(PERIODIC, spec.embedding_lr_factor)}
        names = [variable.path.rsplit("/", 1)[-1] for variable in model.trainable_variables]
        self.factors = [(own.get(name, FACTORS[name][0]), FACTORS[name][1]) for name in names]

    def rates(self, progress: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
        rate = self.learning_rate * coslog4(progress)
        decay = self.weight_decay * flat_cos(progress)
        return [
            (1.0 - decay * rate * (wd_factor * lr_factor) ** 2, rate * lr_factor)
            for lr_factor, wd_factor in self.factors
        ]


class RealMlpRecipe(UniformJobs):
    """RealMLP-TD for quest.learners.engine.train_many: its networks, optimiser, schedules and losses."""

    scheduled, drop_last, later_ties, members, narrows = True, True, True, 1, False
    # One program per core, side by side: many of its steps' operations (activations, dropout, Adam) run on one thread
    # each, so one program leaves a core idle; side by side, 10 networks on diamonds train in 35 s instead of 47 s.
    spreads = True
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
            mean, scale = standardiser(target)
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
