"""The fast engine: networks trained together match networks trained alone, and match model.fit within noise."""

import re

import numpy as np
import pytest

from quest.evaluation.metrics import scores
from quest.learners.jobs import Job, plan_job
from quest.learners.mlp.learner import fit_mlps
from quest.learners.mlp.recipe import fit_many
from quest.learners.networks import predict
from quest.learners.registry import params_from_dict
from tests.conftest import blobs, repo_params


def spec(**train):
    return params_from_dict(repo_params(train=train)).train


def jobs_of_unequal_size(y: np.ndarray, task: str = "classification") -> list[Job]:
    # 40, 57 and 90 rows at batch 16: 3, 4 and 6 batches an epoch, so the padding and skipped batches matter.
    return [
        plan_job(np.arange(size), y, task=task, validation_fraction=0.25, seed=seed)
        for size, seed in ((40, 3), (57, 4), (90, 5))
    ]


@pytest.mark.parametrize(
    ("task", "classes", "dropout_rate"),
    [("classification", 2, 0.2), ("classification", 3, 0.0), ("regression", 0, 0.1)],
)
def test_networks_trained_together_equal_networks_trained_alone(task, classes, dropout_rate):
    x, labels = blobs(90, classes=max(classes, 2))
    y = labels if task == "classification" else (x[:, 0] * 3.0 + 10.0).astype(np.float32)
    settings = spec(
        hidden_layers=[8, 4], epochs=25, batch_size=16, dropout_rate=dropout_rate, learning_rate=0.01,
        early_stopping={"patience": 4, "validation_fraction": 0.25},
    )  # fmt: skip
    jobs = jobs_of_unequal_size(y, task)
    together = fit_many(x, y, jobs, task=task, n_classes=classes, spec=settings)
    for job, joint in zip(jobs, together, strict=True):
        (alone,) = fit_many(x, y, [job], task=task, n_classes=classes, spec=settings)
        assert (alone.best_epoch, alone.epochs_run) == (joint.best_epoch, joint.epochs_run)
        np.testing.assert_allclose(alone.history["val_loss"], joint.history["val_loss"], rtol=1e-5, atol=1e-6)
        for a, b in zip(alone.model.get_weights(), joint.model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert len({r.epochs_run for r in together}) > 1 or settings.epochs in {r.epochs_run for r in together}


def test_early_stopping_and_best_weights_per_network():
    x, y = blobs(90)
    settings = spec(hidden_layers=[8], epochs=80, batch_size=16, learning_rate=0.05,
                    early_stopping={"patience": 3, "validation_fraction": 0.25})  # fmt: skip
    for result in fit_many(x, y, jobs_of_unequal_size(y), task="classification", n_classes=2, spec=settings):
        assert result.epochs_run < 80
        assert result.best_epoch == result.epochs_run - 3 == int(np.argmin(result.history["val_loss"])) + 1
        assert sorted(result.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
        assert all(len(curve) == result.epochs_run for curve in result.history.values())
        assert result.history["val_accuracy"][result.best_epoch - 1] > 0.8


def test_patience_zero_trains_every_epoch():
    x, y = blobs(90)
    settings = spec(hidden_layers=[4], epochs=7, early_stopping={"patience": 0, "validation_fraction": 0.25})
    (result,) = fit_many(x, y, jobs_of_unequal_size(y)[:1], task="classification", n_classes=2, spec=settings)
    assert result.epochs_run == 7


def test_hooks_receive_every_epoch_in_order():
    class Record:  # a plain epoch hook, as quest's own are
        def __init__(self):
            self.events = []

        def on_train_begin(self, logs=None):
            self.events.append("begin")

        def on_epoch_end(self, epoch, logs=None):
            self.events.append((epoch, sorted(logs)))

        def on_train_end(self, logs=None):
            self.events.append("end")

    x, y = blobs(90)
    settings = spec(hidden_layers=[4], epochs=12, early_stopping={"patience": 0, "validation_fraction": 0.25})
    records = [Record(), Record()]
    fit_many(x, y, jobs_of_unequal_size(y)[:2], task="classification", n_classes=2, spec=settings,
             hooks=[[records[0]], [records[1]]])  # fmt: skip
    keys = ["accuracy", "loss", "val_accuracy", "val_loss"]
    for record in records:
        assert record.events == ["begin", *[(epoch, keys) for epoch in range(12)], "end"]


def test_same_accuracy_as_model_fit_within_noise():
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train, test = order[:400], order[400:]
    accuracy = {}
    for engine in ("fast", "fit"):
        settings = spec(engine=engine, hidden_layers=[32, 16], epochs=40, batch_size=32)
        jobs = [plan_job(train, y, task="classification", validation_fraction=0.15, seed=seed) for seed in (1, 2, 3)]
        results = fit_mlps(x, y, jobs, task="classification", n_classes=2, spec=settings)
        accuracy[engine] = np.mean(
            [scores("classification", y[test], predict(r.model, x[test], task="classification"))["accuracy"]
             for r in results]
        )  # fmt: skip
    assert accuracy["fast"] > 0.93 and accuracy["fit"] > 0.93
    assert abs(accuracy["fast"] - accuracy["fit"]) <= 0.02  # 169 test rows: 0.02 is about three of them


def test_the_fast_engine_is_deterministic():
    x, y = blobs(90)
    settings = spec(hidden_layers=[8], epochs=10, dropout_rate=0.3)
    first, second = (
        fit_many(x, y, jobs_of_unequal_size(y), task="classification", n_classes=2, spec=settings) for _ in range(2)
    )
    for a, b in zip(first, second, strict=True):
        assert a.history == b.history
        for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
            np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize(("task", "classes"), [("classification", 2), ("regression", 0)])
def test_networks_with_their_own_learning_rate_dropout_and_l2_train_together_as_alone(task, classes):
    """Tuning trials that differ in learning rate, dropout rate and L2 train in one program: each network's own
    values live in its state, and it learns exactly what it learns alone, with its values as the spec's."""
    from dataclasses import replace

    x, labels = blobs(90, classes=2)
    y = labels if task == "classification" else (x[:, 0] * 3.0 + 10.0).astype(np.float32)
    settings = spec(
        hidden_layers=[8, 4], epochs=25, batch_size=16, dropout_rate=0.1, l2=1e-4, learning_rate=0.01,
        early_stopping={"patience": 4, "validation_fraction": 0.25},
    )  # fmt: skip
    own = [
        {"learning_rate": 0.03, "dropout_rate": 0.3, "l2": 1e-2},
        {"learning_rate": 0.002, "dropout_rate": 0.05, "l2": 1e-6},
        {},  # the spec's own values
    ]
    planned = jobs_of_unequal_size(y, task)
    jobs = [replace(job, hyper=tuple(sorted(values.items()))) for job, values in zip(planned, own, strict=True)]
    together = fit_many(x, y, jobs, task=task, n_classes=classes, spec=settings)
    assert len({r.epochs_run for r in together}) > 1 or len({r.best_epoch for r in together}) > 1
    for job, values, joint in zip(jobs, own, together, strict=True):
        alone_spec = replace(settings, **values)
        (alone,) = fit_many(x, y, [replace(job, hyper=())], task=task, n_classes=classes, spec=alone_spec)
        assert (alone.best_epoch, alone.epochs_run) == (joint.best_epoch, joint.epochs_run)
        np.testing.assert_allclose(alone.history["loss"], joint.history["loss"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(alone.history["val_loss"], joint.history["val_loss"], rtol=1e-5, atol=1e-6)
        for a, b in zip(alone.model.get_weights(), joint.model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        # the kept network carries its own values: its saved dropout and optimiser are the trial's
        assert float(joint.model.optimizer.learning_rate) == pytest.approx(alone_spec.learning_rate)
        assert float(joint.model.get_layer("dropout_1").keep) == pytest.approx(1 - alone_spec.dropout_rate)
        assert joint.model.get_layer("hidden_1").kernel_regularizer.l2 == pytest.approx(alone_spec.l2)


@pytest.mark.parametrize("cores", [1, 2, 3])
def test_networks_split_over_cores_side_by_side_learn_what_one_program_learns(monkeypatch, capsys, cores):
    """On a CPU the MLP's jobs train as one program per core, in threads (the last job repeated to even the
    parts): each network, its curves and its hooks' epochs are those of one program over every job, and the
    progress line counts the jobs still improving, the repeated one once."""
    from quest.learners import engine

    x, y = blobs(90)
    settings = spec(hidden_layers=[8, 4], epochs=25, batch_size=16, dropout_rate=0.1, learning_rate=0.01,
                    early_stopping={"patience": 4, "validation_fraction": 0.25})  # fmt: skip
    jobs = [*jobs_of_unequal_size(y), *jobs_of_unequal_size(y)[:2]]  # 5 jobs: 2 + 2 + 1 (its copy dropped)
    monkeypatch.setattr(engine, "_cores", lambda: 1)
    whole = fit_many(x, y, jobs, task="classification", n_classes=2, spec=settings)
    monkeypatch.setattr(engine, "_cores", lambda: cores)
    seen = []

    class Record:
        def __init__(self, job):
            self.job = job

        def on_train_begin(self, logs=None):
            pass

        def on_epoch_end(self, epoch, logs=None):
            seen.append((self.job, epoch))

        def on_train_end(self, logs=None):
            pass

    hooks = [[Record(j)] for j in range(len(jobs))]
    capsys.readouterr()
    split = fit_many(x, y, jobs, task="classification", n_classes=2, spec=settings, hooks=hooks, label="CV")
    lines = re.findall(r"train: CV 5 networks epoch (\d+)/25, (\d+) still improving", capsys.readouterr().err)
    assert lines and all(int(improving) <= 5 for _, improving in lines)
    assert lines[0][1] == "5" or int(lines[0][0]) > 4  # all five improve until the patience of 4 can stop one
    for one, other in zip(whole, split, strict=True):
        assert (one.best_epoch, one.epochs_run) == (other.best_epoch, other.epochs_run)
        np.testing.assert_allclose(one.history["val_loss"], other.history["val_loss"], rtol=1e-5, atol=1e-6)
        for a, b in zip(one.model.get_weights(), other.model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for j, result in enumerate(split):
        assert [epoch for job, epoch in seen if job == j] == list(range(result.epochs_run))


def test_a_divergence_side_by_side_names_the_earliest_epoch_then_the_lowest_network(monkeypatch):
    """Parts in threads stop at different times: the network reported is the one a single program reports."""
    from quest.learners import engine
    from quest.learners.callbacks import NonFiniteLoss

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 2)).astype(np.float32) * np.float32([1.0, 50.0])
    y = (3 * x[:, 0] + rng.normal(size=200)).astype(np.float32)
    settings = spec(optimizer="sgd", learning_rate=10.0, hidden_layers=[8], epochs=5)
    jobs = [plan_job(np.arange(40 * (j + 1)), y, task="regression", validation_fraction=0.25, seed=j) for j in range(4)]
    found = {}
    for cores in (1, 4):
        monkeypatch.setattr(engine, "_cores", lambda cores=cores: cores)
        with pytest.raises(NonFiniteLoss) as raised:
            fit_many(x, y, jobs, task="regression", n_classes=0, spec=settings)
        found[cores] = (raised.value.job, raised.value.epoch, raised.value.curve)
    # the first network to diverge is not the first one: with a part each, the others' halting decides
    assert found[4] == found[1] and found[1][0] > 0, found


def test_the_engines_timings_reach_whoever_asks_for_them_around_the_learner_that_trains():
    from quest.learners import engine

    x, y = blobs(90)
    settings = spec(hidden_layers=[4], epochs=3, batch_size=16, early_stopping={"patience": 0,
                    "validation_fraction": 0.25})  # fmt: skip
    jobs = jobs_of_unequal_size(y)
    with engine.timed() as timings:
        fit_many(x, y, jobs, task="classification", n_classes=2, spec=settings)
    assert set(timings) == {"build", "compile", "train", "samples"} and all(v > 0 for v in timings.values())
    assert timings["samples"] == sum(len(job.fit_rows) for job in jobs) * 3  # every epoch of every job's rows
    fit_many(x, y, jobs, task="classification", n_classes=2, spec=settings)  # outside the block: nothing kept
    assert engine._timings.get() is None
