"""train.data_parallel: a no-op on one device; on two (XLA host devices, in a child process) both engines split
every batch across them and learn what one device learns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from quest.core.errors import QuestError
from quest.learners import backend
from quest.learners.backend import DeviceInfo, data_parallel_devices
from quest.learners.registry import params_from_dict
from tests.conftest import REPO, repo_params

ENGINES = pytest.mark.parametrize("engine", ["fast", "fit"])


def spec(**train):
    return params_from_dict(repo_params(train=train)).train


def blobs(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    return (rng.normal(size=(n, 3)) + 2.0 * y[:, None]).astype(np.float32), y


@ENGINES
def test_all_on_one_device_is_the_same_run_as_off(engine):
    from quest.learners.mlp.learner import fit_mlp

    x, y = blobs(60)
    runs = [
        fit_mlp(x, y, task="classification", n_classes=2, seed=4,
                spec=spec(engine=engine, hidden_layers=[4], epochs=2, batch_size=16, data_parallel=setting))
        for setting in (1, "all")
    ]  # fmt: skip
    assert runs[0].history == runs[1].history
    for a, b in zip(runs[0].model.get_weights(), runs[1].model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@ENGINES
def test_more_devices_than_the_backend_sees_is_one_line_naming_the_key(engine):
    from quest.learners.mlp.learner import fit_mlp

    x, y = blobs(20)
    with pytest.raises(QuestError) as caught:
        fit_mlp(x, y, task="classification", n_classes=2, seed=0, spec=spec(engine=engine, data_parallel=2))
    assert str(caught.value) == (
        "train.data_parallel is 2 but the jax backend sees 1 device; set train.data_parallel to at most 1, or all"
    )


def test_all_counts_the_devices_and_the_batch_must_split_evenly(monkeypatch):
    monkeypatch.setattr(backend, "device_count", lambda name: 4)
    assert data_parallel_devices("jax", "all", 32) == 4
    assert data_parallel_devices("tensorflow", 2, 32) == 2
    with pytest.raises(QuestError, match=r"^train\.data_parallel is 8 but the jax backend sees 4 devices; "):
        data_parallel_devices("jax", 8, 32)
    with pytest.raises(QuestError) as caught:
        data_parallel_devices("jax", "all", 30)
    assert str(caught.value) == (
        "train.batch_size must be a multiple of the 4 devices train.data_parallel splits it across (got 30)"
    )


def test_the_device_string_names_a_count_only_above_one():
    one = DeviceInfo(backend="jax", kind="gpu", name="NVIDIA H100")
    assert one.describe() == "gpu:NVIDIA H100 (jax)"  # as recorded before data parallelism existed
    assert DeviceInfo(backend="jax", kind="gpu", name="NVIDIA H100", devices=4).describe() == "gpu:NVIDIA H100 x4 (jax)"


def run_child(mode: str) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "KERAS_BACKEND": mode,
    }
    done = subprocess.run([sys.executable, __file__, mode], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
def test_two_jax_devices_split_every_batch_and_learn_what_one_learns():
    found = run_child("jax")
    fast, fit = found["fast"], found["fit"]
    assert found["device"] == f"cpu:{backend.cpu_name()} x2 (jax)"
    # fast: in the compiled program each device pushes 8 of a batch's 16 rows (per job) through the first
    # layer, and the gradients are summed across devices; weights and data enter it whole on every device.
    assert fast["1"]["forward_rows"] == [16] and fast["2"]["forward_rows"] == [8]
    assert not fast["1"]["all_reduce"] and fast["2"]["all_reduce"]
    assert fast["1"]["input_devices"] == [1] and fast["2"]["input_devices"] == [2]
    assert fast["2"]["replicated"]
    # fit: Keras' DataParallel hands each device half of every batch and keeps the weights on both.
    assert fit["1"]["batch_rows"] == [] and max(fit["2"]["batch_rows"]) == 8
    assert fit["1"]["weight_devices"] == 1 and fit["2"]["weight_devices"] == 2
    for engine in (fast, fit):  # the same maths, up to the order of float sums
        np.testing.assert_allclose(engine["1"]["val_loss"], engine["2"]["val_loss"], rtol=1e-4)
        np.testing.assert_allclose(engine["1"]["proba"], engine["2"]["proba"], atol=1e-4)
    # 57 fit rows: fit drops one, so the last batch has 8 rows (4 a device), not 9; it still learns.
    assert fit["uneven"]["batch_rows"] == [2, 4, 8] and fit["uneven"]["accuracy"] > 0.9


@pytest.mark.e2e
def test_two_tensorflow_devices_mirror_the_model():
    found = run_child("tensorflow")
    assert found["1"]["mirrored"] is False and found["2"]["mirrored"] is True
    assert found["2"]["device"] == f"cpu:{backend.cpu_name()} x2 (tensorflow)"
    np.testing.assert_allclose(found["1"]["val_loss"], found["2"]["val_loss"], atol=1e-3)


# The child processes: a second device exists only if XLA_FLAGS (or TensorFlow's logical devices) are set
# before the framework starts.


def _jax_child() -> dict:
    import jax
    from keras.src.backend.jax import distribution_lib

    from quest.learners.jobs import plan_job
    from quest.learners.mlp.learner import fit_mlp
    from quest.learners.mlp.recipe import fit_many
    from quest.learners.networks import predict

    programs: list[jax.stages.Compiled] = []
    compile_program = jax.stages.Lowered.compile

    def recording(self, *args, **kwargs):
        compiled = compile_program(self, *args, **kwargs)
        programs.append(compiled)
        return compiled

    batch_rows: list[int] = []  # per device, of each batch Keras distributes (features, targets alike)
    distribute = distribution_lib.distribute_data_input

    def watching(batch, layout, batch_dim_name):
        sharded = distribute(batch, layout, batch_dim_name)
        batch_rows.append(sharded.sharding.shard_shape(sharded.shape)[0])
        return sharded

    jax.stages.Lowered.compile = recording
    distribution_lib.distribute_data_input = watching
    device = backend.configure("jax", "cpu", 0, data_parallel=2)
    x, y = blobs(80)
    found: dict = {"device": device.describe(), "fast": {}, "fit": {}}
    never_stop = {"patience": 0, "validation_fraction": 0.25}
    for devices in (1, 2):
        settings = spec(hidden_layers=[5], epochs=6, batch_size=16, early_stopping=never_stop, data_parallel=devices)
        # 30, 45 and 60 fit rows; validation widths 10, 15 and 20, padded to 20
        jobs = [
            plan_job(np.arange(n), y, task="classification", validation_fraction=0.25, seed=1) for n in (40, 60, 80)
        ]
        programs.clear()
        results = fit_many(x, y, jobs, task="classification", n_classes=2, spec=settings)
        # the epoch loop; the others are Keras' small initialiser programs
        program = max(programs, key=lambda compiled: len(compiled.as_text()))
        training = program.as_text()
        inputs = jax.tree.leaves(program.input_shardings)  # the stacked weights, optimiser state, data and batches
        # the training pass: (jobs, rows, units), the jobs those of one program (on a CPU, one per core side by side)
        forward = r"f32\[\d+,(\d+),5\]\{[\d,]*\} dot\([^\n]*/jvp\(hidden_1\)/dot_general"
        found["fast"][str(devices)] = {
            "forward_rows": sorted({int(n) for n in re.findall(forward, training)}),
            "all_reduce": "all-reduce" in training,
            "input_devices": sorted({len(sharding.device_set) for sharding in inputs}),
            "replicated": all(sharding.is_fully_replicated for sharding in inputs),
            "val_loss": [r.history["val_loss"] for r in results],
            "proba": predict(results[0].model, x, task="classification").tolist(),
        }
        batch_rows.clear()
        settings = replace(settings, engine="fit")
        result = fit_mlp(x, y, task="classification", n_classes=2, spec=settings, seed=1)
        found["fit"][str(devices)] = {
            "batch_rows": sorted(set(batch_rows)),
            "weight_devices": len(result.model.layers[0].kernel.value.sharding.device_set),
            "val_loss": result.history["val_loss"],
            "proba": predict(result.model, x, task="classification").tolist(),
        }
    batch_rows.clear()
    x, y = blobs(77)  # 57 fit rows, 20 validation rows
    settings = replace(settings, epochs=10, learning_rate=0.05)
    result = fit_mlp(x, y, task="classification", n_classes=2, spec=settings, seed=1)
    accuracy = float((predict(result.model, x, task="classification").argmax(axis=1) == y).mean())
    found["fit"]["uneven"] = {"batch_rows": sorted(set(batch_rows)), "accuracy": accuracy}
    return found


def _tensorflow_child() -> dict:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    found = {}
    for devices in (1, 2):
        device = backend.configure("tensorflow", "cpu", 0, data_parallel=devices)
        from quest.learners.mlp.learner import fit_mlp

        x, y = blobs(64)
        settings = spec(backend="tensorflow", engine="fit", hidden_layers=[4], epochs=3, batch_size=16,
                        data_parallel=devices, early_stopping={"patience": 0, "validation_fraction": 0.25})  # fmt: skip
        result = fit_mlp(x, y, task="classification", n_classes=2, spec=settings, seed=1)
        found[str(devices)] = {
            "device": device.describe(),
            "mirrored": isinstance(result.model.layers[0].kernel.value, tf.distribute.DistributedValues),
            "val_loss": result.history["val_loss"],
        }
    return found


if __name__ == "__main__":
    print(json.dumps({"jax": _jax_child, "tensorflow": _tensorflow_child}[sys.argv[1]]()))
