"""TabM in Keras: the quantile transform as scikit-learn computes it, rtdl's piecewise-linear encoding, the
BatchEnsemble layer and TabM's initialisation by hand; AdamW's step; each member its own batches; networks
trained together equal networks trained alone; it learns, saves and loads as a learner."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import QuantileTransformer

from quest.core.errors import QuestError
from quest.evaluation.scoring import Scored, results_of
from quest.learners import registry
from quest.learners.base import Problem
from quest.learners.engine import train_many
from quest.learners.jobs import plan_job
from quest.learners.networks import load_mlp, predict, save_mlp
from quest.learners.registry import keras_classes, params_from_dict
from quest.learners.tabm.layers import (
    BatchEnsembleDense,
    EnsembleHeads,
    EnsembleView,
    PiecewiseLinearEmbedding,
    QuantileInputs,
)
from quest.learners.tabm.network import TabmLayout, TabmRecipe, TabmUpdater, _piecewise, build_tabm, initialise
from tests.conftest import blobs, repo_params

TINY = {"members": 4, "width": 8, "bins": 4, "embedding_dims": 3, "batch_size": 16, "epochs": 8, "patience": 2}


def spec(**tabm):
    return params_from_dict(repo_params(tabm=tabm)).section("tabm")


def test_layout_groups_each_categorys_one_hot_block():
    columns = (
        ("numeric", "age"),
        ("categorical", "port"), ("categorical", "port"), ("categorical", "port"),
        ("boolean", "alone"),
        ("numeric", "fare"),
        ("categorical", "deck"), ("categorical", "deck"),
    )  # fmt: skip
    layout = TabmLayout.of(8, columns)
    assert layout.numeric == (0, 5) and layout.passed == (1, 2, 3, 4, 6, 7) and layout.chunks == (3, 1, 2)
    assert TabmLayout.of(3, ()) == TabmLayout(numeric=(0, 1, 2), passed=(), chunks=())


def test_the_quantile_transform_is_scikit_learns():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=200), rng.integers(0, 4, 200), rng.exponential(size=200)])
    fitted = QuantileTransformer(n_quantiles=12, output_distribution="normal").fit(x)
    layer = QuantileInputs([0, 1, 2], [], 12)
    layer.build((None, 3))
    layer.set_weights([fitted.quantiles_.T.astype(np.float32)])
    # Inside, on the quantiles, between tied quantiles (the integer column) and beyond both ends.
    probe = np.vstack([x[:50], fitted.quantiles_, [[-9.0, -1.0, -1.0], [9.0, 7.0, 30.0]]]).astype(np.float32)
    np.testing.assert_allclose(np.asarray(layer(probe)), fitted.transform(probe), atol=2e-4)


def test_piecewise_linear_encoding_by_hand():
    """rtdl's version B: the first bin open below, the last open above, a column's single bin not clamped."""
    numbers = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 2.0]])  # quantile edges (0, 1, 3) and (0, 2)
    layer = PiecewiseLinearEmbedding(2, 2, 2)
    layer.build((None, 2))
    weights = _piecewise(numbers, 2, 2, np.random.default_rng(0))
    weights[:3] = [np.zeros((2, 2)), np.zeros((2, 2)), np.tile(np.eye(2), (2, 1, 1))]  # embedding = the encoding
    layer.set_weights([w.astype(np.float32) for w in weights])
    x = np.array([[-1, -1], [0.5, 1], [2, 3], [5, 4]], dtype=np.float32)
    out = np.asarray(layer(x)).reshape(4, 2, 2)
    np.testing.assert_allclose(out[:, 0], [[-1, 0], [0.5, 0], [1, 0.5], [1, 2]], atol=1e-6)
    np.testing.assert_allclose(out[:, 1], [[0, -0.5], [0, 0.5], [0, 1.5], [0, 2.0]], atol=1e-6)  # in the last slot


def test_batch_ensemble_layer_and_the_members_view_by_hand():
    rng = np.random.default_rng(1)
    layer = BatchEnsembleDense(5, 3)
    layer.build((None, 3, 4))
    r, kernel, s, bias = (rng.normal(size=shape).astype(np.float32) for shape in ((3, 4), (4, 5), (3, 5), (3, 5)))
    layer.set_weights([r, kernel, s, bias])
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    expected = np.stack([((x[:, i] * r[i]) @ kernel) * s[i] + bias[i] for i in range(3)], axis=1)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-6)
    rows = np.arange(12, dtype=np.float32).reshape(6, 2)
    view = EnsembleView(3)
    trained = np.asarray(view(rows, training=True))  # member i takes rows i, 3 + i
    np.testing.assert_array_equal(trained[1, 2], rows[5])
    np.testing.assert_array_equal(np.asarray(view(rows))[4], np.stack([rows[4]] * 3))  # every member the same row


@pytest.mark.parametrize("embedding", ["none", "piecewise"])
def test_initialisation_as_tabm_draws_it(embedding):
    x, _ = blobs(60)
    settings = spec(**TINY, embedding=embedding)
    layout = TabmLayout.of(3, ())
    model = build_tabm(layout, task="classification", n_classes=2, spec=settings, quantiles=10, bins=4, seed=0)
    initialise(model, layout, x, settings, seed=0)
    first, second, *_ = (layer for layer in model.layers if isinstance(layer, BatchEnsembleDense))
    r, kernel, s, bias = first.get_weights()
    chunk = 3 if embedding == "piecewise" else 1  # one draw per member and column, across its embedding
    for column in range(3):
        block = r[:, column * chunk : (column + 1) * chunk]
        assert np.all(block == block[:, :1])
    if embedding == "none":
        assert set(np.unique(r)) == {-1.0, 1.0}
    bound = 1 / np.sqrt(r.shape[1])
    assert np.all(np.abs(kernel) <= bound) and np.all(s == 1) and np.all(bias == bias[0])  # one bias, copied
    r2, _, s2, _ = second.get_weights()
    assert np.all(r2 == 1) and np.all(s2 == 1)
    heads = next(layer for layer in model.layers if isinstance(layer, EnsembleHeads)).get_weights()[0]
    assert not np.allclose(heads[0], heads[1])  # independent heads


def test_one_adamw_step_by_hand():
    """PyTorch's AdamW: p·(1 − lr·wd) then Adam; no decay on biases or the embeddings' linear part."""
    settings = spec(**TINY, learning_rate=0.01, weight_decay=0.1)
    layout = TabmLayout.of(3, ())
    model = build_tabm(layout, task="classification", n_classes=2, spec=settings, quantiles=10, bins=4, seed=0)
    updater = TabmUpdater(model, settings)
    names = [v.path.rsplit("/", 1)[-1] for v in model.trainable_variables]
    assert {"linear_weight", "linear_bias", "piecewise", "r", "s", "kernel", "bias"} == set(names)
    values = [np.full(v.shape, 2.0, dtype=np.float32) for v in model.trainable_variables]
    grads = [np.full(v.shape, 0.5, dtype=np.float32) for v in model.trainable_variables]
    new, state = updater.apply(updater.variables(model), grads, values, np.float32(0))
    for name, value in zip(names, new, strict=True):
        decayed = 2.0 if name in ("bias", "linear_weight", "linear_bias") else 2.0 * (1 - 0.01 * 0.1)
        np.testing.assert_allclose(np.asarray(value), decayed - 0.01 * 0.5 / (0.5 + 1e-8), rtol=1e-6)
    assert float(state[0]) == 1.0


def test_each_member_draws_its_own_batches():
    """With every member's r and head equal but batches apart, the members end up apart."""
    x, y = blobs(80)
    settings = spec(**{**TINY, "embedding": "none", "dropout_rate": 0.0, "epochs": 2})
    recipe = TabmRecipe(settings, TabmLayout.of(3, ()), task="classification", n_classes=2, rows=64)
    job = plan_job(np.arange(80), y, task="classification", validation_fraction=0.2, seed=0)
    model = recipe.fresh(x, y, job)
    for layer in model.layers:  # every member identical at the start
        if isinstance(layer, BatchEnsembleDense | EnsembleHeads):
            layer.set_weights([np.repeat(w[:1], len(w), axis=0) if w.shape[0] == 4 else w for w in layer.get_weights()])
    recipe.fresh = lambda x, y, job: model
    (result,) = train_many(x, y, [job], recipe)
    heads = next(layer for layer in result.model.layers if isinstance(layer, EnsembleHeads)).get_weights()[0]
    assert not np.allclose(heads[0], heads[1])


@pytest.mark.parametrize(("task", "classes"), [("classification", 3), ("regression", 0)])
def test_networks_trained_together_equal_networks_trained_alone(task, classes):
    """40 fit rows alone take the narrow last step (32 + 8), 60 alone and both together a padded one."""
    x, labels = blobs(100, classes=max(classes, 2))
    y = labels if task == "classification" else (x[:, 0] * 3.0 + 10.0).astype(np.float32)
    recipe = TabmRecipe(spec(**{**TINY, "batch_size": 32}), TabmLayout.of(3, ()), task=task, n_classes=classes, rows=40)
    jobs = [
        plan_job(np.arange(size), y, task=task, validation_fraction=0.2, seed=seed) for size, seed in ((50, 1), (75, 2))
    ]
    assert [len(job.fit_rows) for job in jobs] == [40, 60]
    together = train_many(x, y, jobs, recipe)
    for job, joint in zip(jobs, together, strict=True):
        (alone,) = train_many(x, y, [job], recipe)
        assert (alone.best_epoch, alone.epochs_run) == (joint.best_epoch, joint.epochs_run)
        np.testing.assert_allclose(alone.history["val_loss"], joint.history["val_loss"], rtol=1e-4, atol=1e-6)
        for a, b in zip(alone.model.get_weights(), joint.model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_it_learns_saves_and_loads_as_a_learner(tmp_path):
    x, y = blobs(240, seed=2)
    params = params_from_dict(repo_params(tabm={**TINY, "width": 32, "epochs": 40, "patience": 16}))
    learner = registry.learner("tabm", params)
    problem = Problem("classification", 2, 3)
    cell = Scored(rows=np.arange(160), targets=(y[160:],), inputs=(x[160:],), index=0, keep=True)
    (found,) = results_of(learner, x, y, [cell], problem, seed=0)
    assert found.scores[0]["accuracy"] > 0.8  # logistic regression: 0.89
    kept = found.model
    answers = predict(kept, x[160:], task="classification")
    np.testing.assert_allclose(answers.sum(axis=1), 1.0, rtol=1e-5)  # the members' probabilities, averaged
    save_mlp(kept, tmp_path / "tabm.keras")
    loaded = load_mlp(tmp_path / "tabm.keras", keras_classes())
    np.testing.assert_allclose(predict(loaded, x[160:], task="classification"), answers, rtol=1e-6)


def test_bad_tabm_params_are_one_line():
    with pytest.raises(QuestError, match=r"tabm.arch must be one of tabm, tabm-mini"):
        spec(arch="tabm-packed")
    with pytest.raises(QuestError, match=r"tabm.blocks must be auto or a positive count"):
        spec(blocks=0)
    params = params_from_dict(repo_params(train={"backend": "tensorflow", "engine": "fit"}))
    with pytest.raises(QuestError, match="tabm trains on the fast engine, which compiles with JAX"):
        registry.learner("tabm", params).configure()
    learner = registry.learner("tabm", params_from_dict(repo_params()))
    with pytest.raises(QuestError, match=r"tabm.width must be a positive layer size \(got 0\) in tune.spaces"):
        learner.check_space({"width": {"low": 0, "high": 8}}, Problem("classification", 2, 3))
    learner.check_space(params_from_dict(repo_params()).tune.spaces["tabm"], Problem("classification", 2, 3))
    assert spec(blocks="auto").depth == 2 and spec(blocks="auto", embedding="none").depth == 3
    assert [spec(batch_size="auto").batch_rows(n) for n in (100, 3000, 50000, 200000)] == [32, 64, 512, 1024]


class Epochs:
    """An epoch hook that keeps the epochs it was told of."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_begin(self) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.seen.append(epoch)

    def on_train_end(self) -> None: ...


def test_going_on_with_the_networks_still_training_changes_no_network():
    """Once at most half the networks still train, the engine carries on with those alone."""
    x, _ = blobs(160)
    y = (np.sin(3 * x[:, 0]) + x[:, 1] ** 2).astype(np.float32)
    settings = spec(**{**TINY, "patience": 0, "epochs": 30, "batch_size": 32, "learning_rate": 0.05})
    recipe = TabmRecipe(settings, TabmLayout.of(3, ()), task="regression", n_classes=0, rows=48)
    jobs = [plan_job(np.arange(60 + 20 * i), y, task="regression", validation_fraction=0.2, seed=i) for i in range(5)]
    hooks = [[Epochs()] for _ in jobs]
    narrowed = train_many(x, y, jobs, recipe, hooks=hooks)
    stops = sorted(result.epochs_run for result in narrowed)
    assert stops[2] < stops[-1]  # three of the five stopped while the rest went on: those went on alone
    recipe.narrows = False
    whole = train_many(x, y, jobs, recipe)
    for hook, a, b in zip(hooks, narrowed, whole, strict=True):
        assert (a.best_epoch, a.epochs_run) == (b.best_epoch, b.epochs_run)
        assert hook[0].seen == list(range(a.epochs_run))  # every job's every epoch reported, once
        np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"], rtol=1e-4, atol=1e-6)
        for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
            np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
