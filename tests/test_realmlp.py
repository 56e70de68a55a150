"""RealMLP in Keras: pytabkit's preprocessing, initialisation, schedules and optimiser step by hand-computed
numbers; its networks trained together equal networks trained alone; it learns, saves and loads as a learner."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quest.core.errors import QuestError
from quest.evaluation.metrics import scores
from quest.evaluation.scoring import Scored, results_of, scores_of
from quest.learners import registry
from quest.learners.base import Problem
from quest.learners.engine import train_many
from quest.learners.jobs import plan_job
from quest.learners.networks import load_mlp, predict, save_mlp
from quest.learners.realmlp.layers import ClampOutput, NtkDense, RobustInputs, cos_turns, encoded
from quest.learners.realmlp.network import (
    Layout,
    RealMlpRecipe,
    RealMlpUpdater,
    build_realmlp,
    coslog4,
    flat_cos,
    host_output,
    initialise,
)
from quest.learners.registry import keras_classes, params_from_dict
from tests.conftest import blobs, repo_params


def spec(**realmlp):
    return params_from_dict(repo_params(realmlp=realmlp)).section("realmlp")


TINY = {"hidden_layers": [8, 8], "embedding_frequencies": 4, "epochs": 6, "batch_size": 16}


def test_layout_encodes_categories_as_realmlp_does():
    columns = (
        ("numeric", "age"),
        ("boolean", "alone"),
        ("categorical", "port"), ("categorical", "port"), ("categorical", "port"),  # two seen, one missing
        ("categorical", "deck"),  # one seen
        ("categorical", "grade"), ("categorical", "grade"), ("categorical", "grade"),  # three seen
    )  # fmt: skip
    names = ("numeric__age", "boolean__alone", "categorical__port_C", "categorical__port_S",
             "categorical__port___missing__", "categorical__deck_A", "categorical__grade_a", "categorical__grade_b",
             "categorical__grade_c")  # fmt: skip
    layout = Layout.of(9, columns, names)
    assert layout.numeric == 1 and layout.large == ()
    assert layout.sources == (
        (0, -1),  # age
        (1, -1),  # alone: one column
        (2, 3),  # port: +1 for C, -1 for S, 0 when missing
        (5, -1),  # deck
        (6, -1), (7, -1), (8, -1),  # grade: 0/1 per category
    )  # fmt: skip
    x = np.arange(18, dtype=np.float32).reshape(2, 9) ** 2
    np.testing.assert_array_equal(encoded(x, layout.sources, np.take)[:, 2], x[:, 2] - x[:, 3])
    # With at most 3 categories one-hot (the missing slot counts), grade's three are embedded instead.
    assert Layout.of(9, columns, names, one_hot_max=3).large == ((6, 7, 8),)


def _pytabkit_scaled(values: np.ndarray) -> np.ndarray:
    """pytabkit's median_center, robust_scale and smooth_clip of one encoded column, written out."""
    centred = values - np.quantile(values, 0.5)
    spread = np.quantile(values, 0.75) - np.quantile(values, 0.25)
    spread = spread if spread != 0 else 0.5 * (values.max() - values.min())
    z = centred / spread if spread != 0 else 0.0 * centred
    return z / np.sqrt(1 + z**2 / 9)


def test_a_categorical_tables_inputs_are_pytabkits_from_the_raw_rows():
    # From a raw table through prepare's preprocessing to RealMLP's scaled inputs, against pytabkit's recipe by
    # hand: its ordinal codes put missing at 0 and the sorted categories after it; two categories become one
    # column (the first +1, the second -1, missing 0), three or more 0/1 columns, all scaled as numbers are; a
    # column of 9 categories (10 with the missing slot) goes to the embedding. benchmarks/peers_inputs.py holds
    # the same against pytabkit itself on penguins, credit_data and ames.
    import pandas as pd

    from quest.data.artifacts import Schema
    from quest.data.columns import type_columns
    from quest.data.preprocess import fit_preprocessing

    rows = 12
    frame = pd.DataFrame({
        "size": [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 80.0],
        "port": ["S", "C", "S", None, "C", "S", "S", "C", None, "S", "C", "S"],
        "grade": ["b", "a", "c", "a", "a", "b", "c", "a", "b", "a", "a", "a"],
        "city": [f"k{i % 9}" for i in range(rows)],
    })  # fmt: skip
    preprocessing = fit_preprocessing(frame, type_columns(frame, rows=rows)[0])
    features = tuple(feature.name for feature in preprocessing.features)
    schema = Schema("t", "csv", "classification", "y", ("0", "1"), preprocessing.columns, features, rows, 0, 5, 1)
    x = preprocessing.apply(frame)
    layout = Layout.of(x.shape[1], schema.feature_columns(), features)
    city = tuple(i for i, name in enumerate(features) if name.startswith("categorical__city_"))
    assert len(city) == 9 and layout.large == (city,)  # pytabkit's table has a 10th row: missing or unknown
    model = build_realmlp(layout, task="classification", n_classes=2, spec=spec(**TINY), seed=0)
    initialise(model, layout, x, np.zeros(rows), seed=0)
    robust = next(layer for layer in model.layers if isinstance(layer, RobustInputs))
    scaled = host_output(robust, x.astype(np.float64))[:, : len(layout.sources)]
    port = frame["port"].map({"C": 1.0, "S": -1.0}).fillna(0.0).to_numpy()
    grades = [(frame["grade"] == grade).to_numpy(float) for grade in ("a", "b", "c")]
    by_hand = [frame["size"].to_numpy(), port, *grades]  # numbers first, then the small categories in order
    expected = np.column_stack([_pytabkit_scaled(column) for column in by_hand])
    np.testing.assert_allclose(scaled, expected, rtol=1e-5, atol=1e-6)


def test_a_network_saved_with_the_dense_encoding_still_reads_it():
    # Before `sources`, RobustInputs held its encoding as an inputs x columns weight; such a saved config loads.
    x = np.array([[1, 5, 0], [2, 7, 1], [3, 5, 1]], dtype=np.float32)
    old = RobustInputs.from_config({"name": "robust_inputs", "scaled": 2, "passed": []})
    new = RobustInputs(2, [], [(0, -1), (1, 2)])
    old.build(x.shape)
    new.build(x.shape)
    dense = np.array([[1, 0], [0, 1], [0, -1]], dtype=np.float32)
    center, multiplier = np.array([2, 5], np.float32), np.array([0.5, 0.25], np.float32)
    old.set_weights([dense, center, multiplier])
    new.set_weights([center, multiplier])
    np.testing.assert_array_equal(np.asarray(old(x)), np.asarray(new(x)))
    assert "sources" not in old.get_config() and new.get_config()["sources"] == [[0, -1], [1, 2]]


def test_robust_scaling_and_smooth_clip_by_hand():
    x = np.array([[1, 5, 0], [2, 5, 0], [3, 5, 0], [4, 5, 0], [100, 5, 1]], dtype=np.float32)
    layout = Layout.of(3, (), ())
    model = build_realmlp(layout, task="classification", n_classes=2, spec=spec(embedding_frequencies=0), seed=0)
    initialise(model, layout, x, np.zeros(5), seed=0)
    robust = next(layer for layer in model.layers if isinstance(layer, RobustInputs))
    out = np.asarray(robust(x))
    # Column 1: median 3, quartiles 2 and 4 -> (x - 3) / 2, then x / sqrt(1 + (x/3)²).
    scaled = (np.array([1, 2, 3, 4, 100]) - 3) / 2
    np.testing.assert_allclose(out[:, 0], scaled / np.sqrt(1 + (scaled / 3) ** 2), rtol=1e-6)
    np.testing.assert_array_equal(out[:, 1], 0.0)  # constant: scaled by 0
    # Column 3: quartiles both 0, so half the range (0.5) stands in: 1 -> 2 -> 2 / sqrt(1 + 4/9).
    np.testing.assert_allclose(out[:, 2], [0, 0, 0, 0, 2 / math.sqrt(1 + 4 / 9)], rtol=1e-6)


def test_data_dependent_initialisation():
    x, _ = blobs(200)
    layout = Layout.of(3, (), ())
    model = build_realmlp(layout, task="classification", n_classes=2, spec=spec(hidden_layers=[16, 16]), seed=1)
    initialise(model, layout, x, np.zeros(200), seed=1)
    h = x
    for layer in model.layers:
        if isinstance(layer, NtkDense):
            kernel, bias = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
            pre = np.asarray(h, dtype=np.float64) @ kernel / math.sqrt(kernel.shape[0])
            np.testing.assert_allclose(pre.std(axis=0), 1.0, rtol=1e-4)  # unit std on the training rows
            shifted = pre + bias  # each unit's zero lies among its training pre-activations
            assert np.all((shifted.min(axis=0) <= 0) & (shifted.max(axis=0) >= 0))
        h = np.asarray(layer(h, training=False))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_hosts_pass_for_initialisation_is_each_layers_own(task):
    # Every kind of layer (a category embedded, SELU or Mish), its weights drawn by the initialisation.
    columns = (("numeric", "age"), ("numeric", "fare"), *(("categorical", "grade"),) * 3)
    names = ("numeric__age", "numeric__fare", "categorical__grade_a", "categorical__grade_b", "categorical__grade_c")
    layout = Layout.of(5, columns, names, one_hot_max=2)
    assert layout.large
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=(64, 2)) * 3, np.eye(3)[rng.integers(0, 3, 64)]]).astype(np.float32)
    model = build_realmlp(layout, task=task, n_classes=3, spec=spec(hidden_layers=[16, 16]), seed=2)
    initialise(model, layout, x, rng.normal(size=64), seed=2)
    h = x
    for layer in model.layers:
        if isinstance(layer, ClampOutput):
            continue
        ours = np.asarray(layer(h, training=False), dtype=np.float64)
        np.testing.assert_allclose(host_output(layer, h), ours, rtol=1e-4, atol=1e-5, err_msg=layer.name)
        h = ours


def test_cos_turns_is_cos():
    turns = np.linspace(-8, 8, 200001, dtype=np.float32)
    np.testing.assert_allclose(np.asarray(cos_turns(turns)), np.cos(2 * np.pi * turns.astype(np.float64)), atol=5e-6)


def test_schedules():
    t = np.array([0.0, (2**0.5 - 1) / 15, 1 / 15, 0.25, 0.5, 0.75, 1.0], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(coslog4(t))[[0, 1, 2, 6]], [0, 1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(flat_cos(t))[3:], [1, 1, 0.5, 0], atol=1e-6)


def test_one_optimiser_step_by_hand():
    """PyTorch's Adam after pytabkit's decay, p·(1 − wd·lr·f_wd²·f_lr²): the scale decays 36 times as fast."""
    layout = Layout.of(2, (), ())
    settings = spec(hidden_layers=[4], embedding_frequencies=0, learning_rate=0.04, weight_decay=0.02)
    model = build_realmlp(layout, task="classification", n_classes=2, spec=settings, seed=0)
    updater = RealMlpUpdater(model, settings, learning_rate=0.04)
    names = [v.path.rsplit("/", 1)[-1] for v in model.trainable_variables]
    values = [np.full(v.shape, 2.0, dtype=np.float32) for v in model.trainable_variables]
    grads = [np.full(v.shape, 0.5, dtype=np.float32) for v in model.trainable_variables]
    progress = np.float32(0.3)
    new, state = updater.apply(updater.variables(model), grads, values, progress)
    rate = 0.04 * 0.5 * (1 - math.cos(2 * math.pi * math.log2(1 + 15 * 0.3)))
    lr_factor = {"kernel": 1.0, "bias": 0.1, "alpha": 0.1, "scale": 6.0}
    wd_factor = {"kernel": 1.0, "bias": 0.0, "alpha": 1.0, "scale": 1.0}
    for name, value in zip(names, new, strict=True):
        decayed = 2.0 * (1 - 0.02 * rate * (wd_factor[name] * lr_factor[name]) ** 2)
        # First step: m̂ = g and v̂ = g², so the step is lr·f·g/(|g| + ε).
        expected = decayed - rate * lr_factor[name] * 0.5 / (0.5 + 1e-8)
        np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-6)
    assert float(state[0]) == 1.0


def jobs_of_unequal_size(y: np.ndarray, task: str = "classification") -> list:
    # 30, 42 and 67 fit rows at batch 16: 1, 2 and 4 whole batches an epoch, the rest sat out.
    return [
        plan_job(np.arange(size), y, task=task, validation_fraction=0.25, seed=seed)
        for size, seed in ((40, 3), (57, 4), (90, 5))
    ]


@pytest.mark.parametrize(("task", "classes"), [("classification", 2), ("classification", 3), ("regression", 0)])
def test_networks_trained_together_equal_networks_trained_alone(task, classes):
    x, labels = blobs(90, classes=max(classes, 2))
    y = labels if task == "classification" else (x[:, 0] * 3.0 + 10.0).astype(np.float32)
    recipe = RealMlpRecipe(spec(**TINY), Layout.of(3, (), ()), task=task, n_classes=classes)
    jobs = jobs_of_unequal_size(y, task)
    together = train_many(x, y, jobs, recipe)
    for job, joint in zip(jobs, together, strict=True):
        (alone,) = train_many(x, y, [job], recipe)
        assert (alone.best_epoch, alone.epochs_run) == (joint.best_epoch, joint.epochs_run) and joint.epochs_run == 6
        np.testing.assert_allclose(alone.history["val_loss"], joint.history["val_loss"], rtol=1e-4, atol=1e-6)
        for a, b in zip(alone.model.get_weights(), joint.model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_best_epoch_is_the_last_of_the_lowest_validation_errors():
    x, y = blobs(90)
    recipe = RealMlpRecipe(spec(**{**TINY, "epochs": 12}), Layout.of(3, (), ()), task="classification", n_classes=2)
    for result in train_many(x, y, jobs_of_unequal_size(y), recipe):
        error = 1 - np.array(result.history["val_accuracy"])
        assert result.best_epoch == len(error) - int(np.argmin(error[::-1]))


def test_it_learns_saves_and_loads_as_a_learner(tmp_path):
    x, y = blobs(240, seed=2)
    params = params_from_dict(repo_params(realmlp={**TINY, "hidden_layers": [32, 32], "epochs": 30}))
    learner = registry.learner("realmlp", params)
    problem = Problem("classification", 2, 3)
    cell = Scored(rows=np.arange(160), targets=(y[160:],), inputs=(x[160:],), index=0)
    (found,) = scores_of(learner, x, y, [cell], problem, seed=0)
    assert found[0]["accuracy"] > 0.9
    job = plan_job(np.arange(160), y, task="classification", validation_fraction=0.2, seed=1)
    recipe = RealMlpRecipe(params.section("realmlp"), Layout.of(3, (), ()), task="classification", n_classes=2)
    (result,) = train_many(x, y, [job], recipe)
    save_mlp(result.model, tmp_path / "realmlp.keras")
    loaded = load_mlp(tmp_path / "realmlp.keras", keras_classes())
    np.testing.assert_allclose(
        predict(loaded, x[160:], task="classification"), predict(result.model, x[160:], task="classification"),
        rtol=1e-6,
    )  # fmt: skip


def test_regression_predictions_stay_within_the_training_range():
    x, _ = blobs(120)
    y = (x[:, 0] * 3.0 + 10.0).astype(np.float32)
    recipe = RealMlpRecipe(spec(**TINY), Layout.of(3, (), ()), task="regression", n_classes=0)
    job = plan_job(np.arange(120), y, task="regression", validation_fraction=0.2, seed=0)
    (result,) = train_many(x, y, [job], recipe)
    far = np.array([[50.0, 0, 0], [-50.0, 0, 0]], dtype=np.float32)
    found = predict(result.model, far, task="regression")
    fit = y[job.fit_rows]
    assert np.all(found >= fit.min() - 1e-4) and np.all(found <= fit.max() + 1e-4)


def test_bad_realmlp_params_are_one_line():
    with pytest.raises(QuestError, match=r"realmlp.learning_rate must be auto or a positive number"):
        spec(learning_rate=-1.0)
    with pytest.raises(QuestError, match=r"realmlp.activation must be one of auto, selu, mish, relu"):
        spec(activation="gelu")
    params = params_from_dict(repo_params(train={"backend": "tensorflow", "engine": "fit"}))
    with pytest.raises(QuestError, match="realmlp trains on the fast engine, which compiles with JAX"):
        registry.learner("realmlp", params).configure()
    with pytest.raises(QuestError, match="realmlp trains on the fast engine"):  # before any model is fitted
        registry.entrants(params, who="compare")
    learner = registry.learner("realmlp", params_from_dict(repo_params()))
    with pytest.raises(QuestError, match=r"tune.spaces.realmlp.depth must be one of the realmlp keys"):
        learner.check_space({"depth": [2, 3]}, Problem("classification", 2, 3))
    with pytest.raises(QuestError, match=r"tune.spaces.realmlp.hidden_layers must be a list of layer-size lists"):
        learner.check_space({"hidden_layers": [256, 512]}, Problem("classification", 2, 3))
    with pytest.raises(QuestError, match=r"realmlp.activation must be one of .* \(got 'gelu'\) in tune.spaces"):
        learner.check_space({"activation": ["mish", "gelu"]}, Problem("classification", 2, 3))
    with pytest.raises(QuestError, match=r"realmlp.dropout_rate must be in \[0, 1\) \(got 1.5\) in tune.spaces"):
        learner.check_space({"dropout_rate": {"low": 0.0, "high": 1.5}}, Problem("classification", 2, 3))
    learner.check_space(params_from_dict(repo_params()).tune.spaces["realmlp"], Problem("classification", 2, 3))


def test_a_trials_hyperparameters_replace_the_params():
    learner = registry.learner("realmlp", params_from_dict(repo_params(realmlp=TINY)))
    learner.configure()
    x, y = blobs(60)
    jobs = [plan_job(np.arange(40), y, task="classification", validation_fraction=0.25, seed=1)]
    problem = Problem("classification", 2, 3)
    (result,) = learner.train_jobs(x, y, jobs, problem, {"hidden_layers": [5, 7, 9], "epochs": 2}, "")
    widths = [layer.units for layer in result.model.layers if isinstance(layer, NtkDense)]
    assert widths == [5, 7, 9, 2] and result.epochs_run == 2


def test_the_final_fit_is_the_one_kept():
    learner = registry.learner("realmlp", params_from_dict(repo_params(realmlp=TINY)))
    x, y = blobs(90)
    problem = Problem("classification", 2, 3)
    split = Scored(rows=np.arange(60), targets=(y[60:],), inputs=(x[60:],), index=0)
    final = Scored(rows=np.arange(70), targets=(y[70:],), inputs=(x[70:],), index=-1, keep=True)
    at_split, at_final = results_of(learner, x, y, [split, final], problem, seed=0)
    assert at_split.model is None  # only a cell that asks for its model gets it back
    answers = predict(at_final.model, x[70:], task="classification")
    assert at_final.scores == [scores("classification", y[70:], answers)]  # the final fit's network, not the split's
