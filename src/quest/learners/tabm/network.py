"""TabM (Gorishniy et al., ICLR 2025) in Keras 3, as pytabkit's `TabM_D_*` builds it with its piecewise-linear
embeddings on (`num_emb_type="pwl"`), and its recipe for the fast engine (quest.learners.engine.train_many).

The network takes prepare's inputs. Numeric columns go through a quantile transform to a normal distribution
(pytabkit's TabrQuantileTransformer: max(min(n // 30, 1000), 10) quantiles of the training rows, ties broken by
noise of 1e-3 / std), then piecewise-linear embeddings on 48 quantile bins in 16 dimensions; categories stay
prepare's one-hot columns. Then k = 32 members: every hidden layer a BatchEnsemble layer (member i computes
((x ⊙ rᵢ) W) ⊙ sᵢ + bᵢ with W shared), ReLU and dropout 0.1, two layers of 512 (three without embeddings), and
k independent linear heads. Weights start as PyTorch's Linear draws them (U(±1/√fan_in)); a BatchEnsemble bias is
one draw copied to every member; the first layer's r is random per member and input chunk (±1 signs, or normal
with embeddings), every other r and s is 1.

Each member trains on batches of its own (the engine hands them over side by side); the loss is the mean of the
members' losses. AdamW as PyTorch computes it at a constant learning rate of 2e-3, no decay on biases or on the
embeddings' linear part. The validation error of the ensemble's prediction (its members' probabilities averaged,
or their outputs) picks the best epoch; training stops after 17 epochs without a lower one.

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
from quest.learners.jobs import Job, to_target_units
from quest.learners.layers import ScheduledDropout
from quest.learners.optimisers import TorchAdam
from quest.learners.tabm.layers import (
    OPEN,
    BatchEnsembleDense,
    EnsembleHeads,
    EnsembleMean,
    EnsembleView,
    PiecewiseLinearEmbedding,
    QuantileInputs,
    piecewise_bins,
)
from quest.learners.tabm.params import TabmParams

ADAM = (0.9, 0.999, 1e-8)  # PyTorch's AdamW defaults: β₁, β₂, ε
UNDECAYED = ("bias", "linear_weight", "linear_bias")  # pytabkit's make_parameter_groups: no weight decay here
NOISE = 1e-3  # the quantile transform's tie-breaking noise, per column relative to its std (TabR's)


@dataclass(frozen=True)
class TabmLayout:
    """Which of prepare's inputs are numbers (transformed and embedded) and which pass as they are (one-hot
    and boolean columns, in order), grouped by the raw column they encode: each group is one chunk of the
    first layer's random scaling."""

    numeric: tuple[int, ...]
    passed: tuple[int, ...]
    chunks: tuple[int, ...]  # per passed group, how many inputs it spans

    @classmethod
    def of(cls, n_features: int, feature_columns: Sequence[tuple[str, str]]) -> TabmLayout:
        kinds = list(feature_columns) or [("numeric", str(i)) for i in range(n_features)]
        numeric = tuple(i for i, (kind, _) in enumerate(kinds) if kind == "numeric")
        passed = tuple(i for i, (kind, _) in enumerate(kinds) if kind != "numeric")
        chunks: list[int] = []
        previous = None
        for i in passed:
            if kinds[i][0] == "categorical" and kinds[i] == previous:
                chunks[-1] += 1
            else:
                chunks.append(1)
            previous = kinds[i]
        return cls(numeric=numeric, passed=passed, chunks=tuple(chunks))


def build_tabm(
    layout: TabmLayout, *, task: str, n_classes: int, spec: TabmParams, quantiles: int, bins: int, seed: int
) -> keras.Sequential:
    """TabM's layers for prepare's `layout`, every weight still to be set by `initialise`."""
    k = spec.members
    inputs = len(layout.numeric) + len(layout.passed)
    layers: list[keras.layers.Layer] = [keras.Input(shape=(inputs,), name="features")]
    layers.append(QuantileInputs(layout.numeric, layout.passed, quantiles, name="quantiles"))
    if spec.embedding == "piecewise" and layout.numeric:
        layers.append(PiecewiseLinearEmbedding(len(layout.numeric), bins, spec.embedding_dims, name="piecewise"))
    layers.append(EnsembleView(k, name="members"))
    if spec.arch == "tabm-mini":
        layers.append(BatchEnsembleDense(0, k, kind="adapter", name="adapter"))
    for index in range(1, spec.depth + 1):
        kind = "ensemble" if spec.arch == "tabm" else "plain"
        layers.append(BatchEnsembleDense(spec.width, k, kind=kind, name=f"hidden_{index}"))
        layers.append(keras.layers.ReLU(name=f"relu_{index}"))
        if spec.dropout_rate > 0:
            layers.append(ScheduledDropout(seed=seed + index, name=f"dropout_{index}"))
    layers.append(EnsembleHeads(1 if task == "regression" else n_classes, k, name="heads"))
    return keras.Sequential(layers, name="tabm")


def initialise(model: keras.Sequential, layout: TabmLayout, x: np.ndarray, spec: TabmParams, *, seed: int) -> None:
    """The weights pytabkit's TabM starts from, for the network's training rows `x`: the quantile transform and
    the bins fitted there, every linear weight and bias U(±1/√fan_in), the first layer's r in random chunks."""
    rng = np.random.default_rng(seed)
    h = np.asarray(x, dtype=np.float32)
    first = True
    for layer in model.layers:
        if isinstance(layer, QuantileInputs):
            numbers = h[:, list(layout.numeric)].astype(np.float64)
            if numbers.shape[1]:
                noise = NOISE / np.maximum(numbers.std(axis=0), NOISE)
                noisy = numbers + noise * rng.standard_normal(numbers.shape)
                levels = np.linspace(0.0, 100.0, layer.count)
                quantiles = np.maximum.accumulate(np.percentile(noisy, levels, axis=0), axis=0).T
                layer.set_weights([quantiles.astype(np.float32)])
        elif isinstance(layer, PiecewiseLinearEmbedding):
            layer.set_weights(_piecewise(h[:, : layer.numeric], layer.bins, layer.dims, rng))
        elif isinstance(layer, EnsembleView):
            chunks = ([spec.embedding_dims] if spec.embedding == "piecewise" else [1]) * len(layout.numeric)
            chunks += list(layout.chunks)
            distribution = "normal" if spec.embedding == "piecewise" and layout.numeric else "signs"
            width = h.shape[1]
            continue  # nothing after it depends on the data
        elif isinstance(layer, BatchEnsembleDense):
            r = _scaling(chunks, layer.members, distribution, rng) if first else np.ones((layer.members, width))
            bound = 1.0 / math.sqrt(width)
            if layer.kind == "adapter":
                layer.set_weights([r.astype(np.float32)])
            elif layer.kind == "ensemble":
                kernel = rng.uniform(-bound, bound, (width, layer.units))
                bias = np.tile(rng.uniform(-bound, bound, layer.units), (layer.members, 1))
                s = np.ones((layer.members, layer.units))
                layer.set_weights([w.astype(np.float32) for w in (r, kernel, s, bias)])
            else:
                kernel = rng.uniform(-bound, bound, (width, layer.units))
                bias = rng.uniform(-bound, bound, layer.units)
                layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
            first = False
            width = width if layer.kind == "adapter" else layer.units
            continue
        elif isinstance(layer, EnsembleHeads):
            bound = 1.0 / math.sqrt(width)
            kernel = rng.uniform(-bound, bound, (layer.members, width, layer.outputs))
            bias = rng.uniform(-bound, bound, (layer.members, layer.outputs))
            layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
            continue
        elif isinstance(layer, ScheduledDropout):
            layer.set_weights([np.float32(spec.dropout_rate)])
            continue
        else:
            continue
        h = keras.ops.convert_to_numpy(layer(h))


def _piecewise(numbers: np.ndarray, bins: int, dims: int, rng: np.random.Generator) -> list[np.ndarray]:
    """PiecewiseLinearEmbedding's weights: each column's bins (rtdl's layout: its first bins in order, its last
    bin in the last slot, zeros between), the linear part U(±1/√dims), the piecewise part zero."""
    features = numbers.shape[1]
    left, inverse, low, high = (np.zeros((features, bins)) for _ in range(4))
    for j in range(features):
        edges = piecewise_bins(numbers[:, j], bins)
        count = len(edges) - 1  # 0 for a constant column: it encodes to zeros
        for t in range(count):
            slot = bins - 1 if t == count - 1 else t
            left[j, slot], inverse[j, slot] = edges[t], 1.0 / (edges[t + 1] - edges[t])
            low[j, slot] = -OPEN if t == 0 else 0.0
            high[j, slot] = OPEN if t == count - 1 else 1.0
    bound = 1.0 / math.sqrt(dims)
    weight = rng.uniform(-bound, bound, (features, dims))
    bias = rng.uniform(-bound, bound, (features, dims))
    values = [weight, bias, np.zeros((features, bins, dims)), left, inverse, low, high]  # trainable first
    return [v.astype(np.float32) for v in values]


def _scaling(chunks: Sequence[int], members: int, distribution: str, rng: np.random.Generator) -> np.ndarray:
    """The first layer's r: one random value per member and chunk (a column's embedding, a category's one-hot
    block), repeated across the chunk: ±1 signs, or N(0, 1) with embeddings."""
    if distribution == "normal":
        draws = rng.standard_normal((members, len(chunks)))
    else:
        draws = rng.integers(0, 2, (members, len(chunks))) * 2.0 - 1.0
    return np.repeat(draws, chunks, axis=1)


class TabmUpdater(TorchAdam):
    """AdamW as PyTorch computes it, at a constant learning rate; decoupled decay p·(1 − lr·wd) first, never on
    biases or the embeddings' linear part."""

    def __init__(self, model: keras.Model, spec: TabmParams) -> None:
        super().__init__(beta1=ADAM[0], beta2=ADAM[1], epsilon=ADAM[2])
        names = [variable.path.rsplit("/", 1)[-1] for variable in model.trainable_variables]
        keep = 1.0 - spec.learning_rate * spec.weight_decay if spec.weight_decay else None
        self.constant = [(keep if name not in UNDECAYED else None, spec.learning_rate) for name in names]

    def rates(self, progress: jax.Array) -> list[tuple[float | None, float]]:
        return self.constant


class TabmRecipe(UniformJobs):
    """TabM for quest.learners.engine.train_many: its networks, optimiser and losses. `rows` is the fewest
    training rows among the jobs: it sets the quantiles and bins every job's network shares the shape of."""

    scheduled, drop_last, later_ties = False, False, False
    narrows = True  # its networks stop early, each when it will, and an epoch costs far more than a recompile
    spreads = False  # 32 members keep both cores busy in one program: wine's 10 networks, 31.0 s (32.7 side by side)

    def __init__(
        self,
        spec: TabmParams,
        layout: TabmLayout,
        *,
        task: str,
        n_classes: int,
        rows: int,
        data_parallel: int | str = 1,
    ) -> None:
        self.spec, self.layout, self.task, self.n_classes = spec, layout, task, n_classes
        self.members, self.epochs, self.data_parallel = spec.members, spec.epochs, data_parallel
        self.batch_size = spec.batch_rows(rows)
        self.patience = spec.patience + 1  # pytabkit stops once more than `patience` epochs did not improve
        self.learning_rate = spec.learning_rate
        self.quantiles = max(min(rows // 30, 1000), 10)  # TabrQuantileTransformer's count
        self.bins = max(1, min(spec.bins, rows - 1))  # pytabkit: fewer bins than training rows

    def fresh(self, x: np.ndarray, y: np.ndarray, job: Job) -> keras.Model:
        seed_everything(job.seed)
        model = build_tabm(
            self.layout,
            task=self.task,
            n_classes=self.n_classes,
            spec=self.spec,
            quantiles=self.quantiles,
            bins=self.bins,
            seed=job.seed,
        )
        initialise(model, self.layout, x[job.fit_rows], self.spec, seed=job.seed)
        return model

    def updater(self, model: keras.Model) -> TabmUpdater:
        return TabmUpdater(model, self.spec)

    def target(self, y: np.ndarray) -> np.ndarray:
        return y.astype(np.float32).reshape(-1, 1) if self.task == "regression" else y.astype(np.int32)

    def train_loss(self) -> Loss:
        """Every member's loss on its own rows: the (rows·k) losses' mean is the mean of the members' losses."""
        if self.task == "regression":

            def squared(y_true: jax.Array, y_pred: jax.Array) -> tuple[jax.Array, jax.Array]:
                error = y_true[:, 0] - jnp.reshape(y_pred, (-1,))
                return jnp.square(error), jnp.abs(error)

            return squared

        def cross_entropy(y_true: jax.Array, y_pred: jax.Array) -> tuple[jax.Array, jax.Array]:
            logits = jnp.reshape(y_pred, (-1, y_pred.shape[-1]))
            picked = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), y_true[:, None], axis=-1)[:, 0]
            return -picked, (jnp.argmax(logits, axis=-1) == y_true).astype("float32")

        return cross_entropy

    def validation_loss(self) -> Loss:
        """On the ensemble's prediction: the members' probabilities (or outputs) averaged."""
        if self.task == "regression":

            def squared(y_true: jax.Array, y_pred: jax.Array) -> tuple[jax.Array, jax.Array]:
                error = y_true[:, 0] - jnp.mean(y_pred[..., 0], axis=1)
                return jnp.square(error), jnp.abs(error)

            return squared

        def cross_entropy(y_true: jax.Array, y_pred: jax.Array) -> tuple[jax.Array, jax.Array]:
            probabilities = jnp.mean(jax.nn.softmax(y_pred, axis=-1), axis=1)
            picked = jnp.take_along_axis(probabilities, y_true[:, None], axis=-1)[:, 0]
            return -jnp.log(picked + 1e-30), (jnp.argmax(probabilities, axis=-1) == y_true).astype("float32")

        return cross_entropy

    def criterion(self, val_loss: jax.Array, val_metric: jax.Array) -> jax.Array:
        # Classification error, or the squared error (RMSE's order): what pytabkit's TabM stops on.
        return val_loss if self.task == "regression" else 1.0 - val_metric

    def schedule(self, non_trainable: list, progress: jax.Array) -> list:
        return non_trainable

    def finish(self, model: keras.Model, *, shift: float, scale: float) -> None:
        model.add(EnsembleMean(self.task != "regression", name="ensemble"))
        if self.task == "regression":
            to_target_units(model, mean=shift, scale=scale)
