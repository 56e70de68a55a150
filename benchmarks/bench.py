"""quest's benchmarks: every figure is measured side by side in one run and printed as a ratio.

    python benchmarks/bench.py cpu     # make bench-cpu: engines on the default dataset, the pipeline's split,
                                       # MLflow's cost per epoch, baseline growth from n to 2n rows,
                                       # each model's seconds and memory on a grid of table shapes
    python benchmarks/bench.py gpu     # make bench-gpu: engines on a synthetic 1 M x 64 set on the GPU
    python benchmarks/bench.py cluster # make bench-cluster: the default comparison on a local Dask cluster of
                                       # 1 and 2 workers beside the local pool, and the cost of a task

Each training engine runs in its own process (a Keras backend is chosen once per process). Results are
printed and written to benchmarks/results/<part>.json and <part>.txt. Targets live here, never in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


# --- one engine, one process --------------------------------------------------------------------------------


def engine_main(argv: list[str]) -> None:
    """`bench.py _engine ...`: train one workload with one engine here and print a JSON line of figures."""
    parser = argparse.ArgumentParser(prog="bench.py _engine")
    parser.add_argument("--engine", choices=["fit", "fast", "limit"], required=True)
    parser.add_argument("--backend", choices=["tensorflow", "jax"], required=True)
    parser.add_argument("--data", choices=["default", "synthetic"], required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--hidden", default="")
    args = parser.parse_args(argv)

    from quest.learners import backend

    device = backend.configure(args.backend, "auto", 42)
    import numpy as np

    x, y, jobs, x_test, y_test, hidden = _workload(args.data, rows=args.rows)
    if args.hidden:
        hidden = [int(units) for units in args.hidden.split(",")]
    from quest.learners.registry import params_from_dict

    params = params_from_dict(
        _params(hidden, args.batch, args.epochs, args.engine, args.backend, plain=args.data == "synthetic")
    )
    figures: dict[str, object] = {"device": device.describe()}
    if args.engine == "limit":
        figures.update(_limit(x, y, jobs, hidden=hidden, batch=args.batch, epochs=args.epochs, seed=42))
    else:
        figures.update(_keras(x, y, jobs, params.train, warm=args.data == "synthetic"))
        if x_test is not None:
            from quest.evaluation.metrics import scores
            from quest.learners.networks import predict

            accuracy = [
                scores("classification", y_test, predict(m, x_test, task="classification"))["accuracy"]
                for m in figures.pop("models")
            ]
            figures["test_accuracy"] = float(np.mean(accuracy))
        figures.pop("models", None)
    print(json.dumps(figures))


def _params(hidden: list[int], batch: int, epochs: int, engine: str, backend_name: str, plain: bool = False) -> dict:
    """params.yaml's train section with the workload's shape; `plain`: no dropout or L2, as the limit loop."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(
        hidden_layers=hidden,
        batch_size=batch,
        epochs=epochs,
        engine="fast" if engine == "limit" else engine,
        backend=backend_name,
    )
    params["train"]["early_stopping"]["patience"] = 0  # every engine runs every epoch: equal work
    if plain:
        params["train"].update(dropout_rate=0.0, l2=0.0)
    return params


def _workload(name: str, *, rows: int):
    """(x, y, jobs, x_test, y_test, hidden): the default dataset's first 5 CV folds, or one synthetic job."""
    import numpy as np

    from quest.learners.jobs import plan_job

    if name == "default":
        from quest.data.sources import load_dataset
        from quest.learners.registry import params_from_dict
        from quest.stages.prepare import prepare

        params = params_from_dict(_params([64, 32], 32, 1, "fit", "jax"))
        prepared = prepare(
            load_dataset(params.data, seed=params.seed, root=REPO),
            test_size=params.prepare.test_size,
            folds=params.prepare.folds,
            repeats=1,
            seed=params.seed,
        )
        from quest.core import paths

        x, y, folds = prepared[paths.X_TRAIN], prepared[paths.Y_TRAIN], prepared[paths.FOLDS][0]
        jobs = [
            plan_job(
                np.flatnonzero(folds != fold),
                y,
                task="classification",
                validation_fraction=0.15,
                seed=params.seed + fold + 1,
            )
            for fold in range(params.prepare.folds)
        ]
        return x, y, jobs, prepared[paths.X_TEST], prepared[paths.Y_TEST], list(params.train.hidden_layers)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 64)).astype(np.float32)
    y = ((x[:, :8] @ rng.normal(size=8) + 0.5 * np.sin(3 * x[:, 8])) > 0).astype(np.int64)
    jobs = [plan_job(np.arange(rows), y, task="classification", validation_fraction=0.05, seed=1)]
    return x, y, jobs, None, None, [256, 256]


def _keras(x, y, jobs, spec, *, warm: bool) -> dict:
    """Train `jobs` with quest's engine `spec.engine`; seconds exclude compilation, which is reported apart."""
    from quest.learners.mlp.learner import fit_mlps

    if spec.engine == "fast":
        timings: dict[str, float] = {}
        from quest.learners.mlp.recipe import fit_many

        results = fit_many(x, y, jobs, task="classification", n_classes=2, spec=spec, timings=timings)
        return {
            "seconds": timings["train"],
            "compile": timings["compile"],
            "samples": timings["samples"],
            "samples_per_s": timings["samples"] / timings["train"],
            "models": [r.model for r in results],
        }

    class Clock:  # an epoch hook: the times each epoch ended
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_begin(self, logs=None) -> None:
            self.ends.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.ends.append(time.perf_counter())

        def on_train_end(self, logs=None) -> None:
            pass

    clocks = [Clock() for _ in jobs]
    results = fit_mlps(x, y, jobs, task="classification", n_classes=2, spec=spec, hooks=[[c] for c in clocks])
    # fit's first epoch traces and compiles its step: on a large set (warm) it is left out, as compile is above.
    first = 1 if warm and spec.epochs > 1 else 0
    seconds = sum(c.ends[-1] - c.ends[first] for c in clocks)
    samples = sum(len(job.fit_rows) * (spec.epochs - first) for job in jobs)
    compile_seconds = sum(c.ends[1] - c.ends[0] for c in clocks) if first else 0.0
    return {
        "seconds": seconds,
        "compile": compile_seconds,
        "samples": float(samples),
        "samples_per_s": samples / seconds,
        "models": [r.model for r in results],
    }


def _limit(x, y, jobs, *, hidden: list[int], batch: int, epochs: int, seed: int) -> dict:
    """The hand-written JAX loop: the same MLP (dense+ReLU, sigmoid out, Adam) with no Keras at all."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    sizes = [x.shape[1], *hidden, 1]

    def init(key):
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            key, sub = jax.random.split(key)
            params.append((jax.random.normal(sub, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in), jnp.zeros(fan_out)))
        return params

    def forward(params, xb):
        for w, b in params[:-1]:
            xb = jax.nn.relu(xb @ w + b)
        w, b = params[-1]
        return (xb @ w + b)[:, 0]

    def loss(params, xb, yb):
        logits = forward(params, xb)
        return jnp.mean(jnp.maximum(logits, 0) - logits * yb + jnp.log1p(jnp.exp(-jnp.abs(logits))))

    def adam(params, grads, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
        m = jax.tree.map(lambda a, g: b1 * a + (1 - b1) * g, m, grads)
        v = jax.tree.map(lambda a, g: b2 * a + (1 - b2) * g * g, v, grads)
        scale = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        params = jax.tree.map(lambda p, a, b: p - scale * a / (jnp.sqrt(b) + eps), params, m, v)
        return params, m, v

    xd, yd = jnp.asarray(x), jnp.asarray(y, dtype="float32")
    width = max(len(job.fit_rows) for job in jobs)
    n_batches = width // batch  # full batches only: the limit does the least work per sample
    rows = jnp.asarray(np.stack([np.resize(job.fit_rows, width) for job in jobs]))

    def train(key, rows):
        params = init(key)
        zeros = jax.tree.map(jnp.zeros_like, params)

        def epoch(carry, index):
            params, m, v, t = carry
            order = jax.random.permutation(jax.random.fold_in(key, index), rows)[: n_batches * batch]

            def step(carry, picked):
                params, m, v, t = carry
                grads = jax.grad(loss)(params, xd[picked], yd[picked])
                params, m, v = adam(params, grads, m, v, t + 1)
                return (params, m, v, t + 1), None

            carry, _ = jax.lax.scan(step, (params, m, v, t), order.reshape(n_batches, batch))
            return carry, None

        (params, _, _, _), _ = jax.lax.scan(epoch, (params, zeros, zeros, 0.0), jnp.arange(epochs))
        return params

    run = jax.jit(jax.vmap(train))
    keys = jnp.stack([jax.random.PRNGKey(seed + j) for j in range(len(jobs))])
    started = time.perf_counter()
    compiled = run.lower(keys, rows).compile()
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    jax.block_until_ready(compiled(keys, rows))
    seconds = time.perf_counter() - started
    samples = float(len(jobs) * n_batches * batch * epochs)
    return {"seconds": seconds, "compile": compile_seconds, "samples": samples, "samples_per_s": samples / seconds}


def _engine(engine: str, backend_name: str, data: str, batch: int, epochs: int, **extra: object) -> dict:
    args = [sys.executable, __file__, "_engine", "--engine", engine, "--backend", backend_name, "--data", data]
    args += ["--batch", str(batch), "--epochs", str(epochs)]
    for key, value in extra.items():
        args += [f"--{key}", str(value)]
    # No persistent compilation cache: every engine compiles from nothing, as on a first run.
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "QUEST_JAX_CACHE": ""}
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"bench: {engine} on {backend_name} failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process_seconds"] = time.perf_counter() - started
    return figures


# --- the CPU part -------------------------------------------------------------------------------------------


def cpu_training(out: Report, epochs: int) -> None:
    out.section(f"Training on the default dataset: 5 CV folds x {epochs} epochs, MLP 64-32, Adam (CPU)")
    out.line(f"{'engine':<22}{'batch':>6}{'seconds':>9}{'compile':>9}{'samples/s':>12}{'test acc':>10}")
    for batch in (32, 256):
        runs = {
            "fit (tensorflow)": _engine("fit", "tensorflow", "default", batch, epochs),
            "fit (jax)": _engine("fit", "jax", "default", batch, epochs),
            "fast (jax)": _engine("fast", "jax", "default", batch, epochs),
            "limit (hand-written)": _engine("limit", "jax", "default", batch, epochs),
        }
        for name, figures in runs.items():
            accuracy = figures.get("test_accuracy")
            out.line(
                f"{name:<22}{batch:>6}{figures['seconds']:>9.2f}{figures['compile']:>9.2f}"
                f"{figures['samples_per_s']:>12,.0f}{accuracy if accuracy is not None else float('nan'):>10.4f}"
            )
        fit_tf, fast, limit = runs["fit (tensorflow)"], runs["fast (jax)"], runs["limit (hand-written)"]
        # The headline counts compilation against the fast engine: it is paid on every run.
        speedup = fit_tf["seconds"] / (fast["seconds"] + fast["compile"])
        out.figure(f"cpu_speedup_vs_fit_b{batch}", speedup)
        out.figure(f"cpu_fast_vs_limit_b{batch}", fast["samples_per_s"] / limit["samples_per_s"])
        out.figure(f"cpu_accuracy_gap_b{batch}", abs(fast["test_accuracy"] - fit_tf["test_accuracy"]))
        if batch == 32:
            out.figure("cpu_speedup_vs_fit", speedup)


PEER_TABLES = {  # name -> (data section, prepare repeats): the default table as train runs it, and larger ones
    "default": ({"source": "breast_cancer"}, 3),
    "diabetes": ({"source": "diabetes"}, 3),
    "40k": ({"source": "synthetic", "synthetic": {"kind": "classification", "n_samples": 50000, "n_features": 20,
                                                   "n_classes": 2, "noise": 0.2}}, 1),
}  # fmt: skip


def peer_main(argv: list[str]) -> None:
    """`bench.py _peer TABLE SIDE`: train the MLP on TABLE's CV splits (and, for quest, the final fit, as the train
    stage does) here, as quest or as scikit-learn; print a JSON line: seconds, CV score, and quest's parts."""
    table, side = argv
    import numpy as np
    import yaml

    from quest.learners import backend

    backend.configure("jax", "cpu", 42)
    from quest.data.artifacts import Prepared
    from quest.data.sources import load_dataset
    from quest.evaluation.metrics import primary_metric
    from quest.evaluation.scoring import cv_cells, final_cell, scores_of
    from quest.learners import registry
    from quest.learners.base import Problem
    from quest.learners.registry import params_from_dict
    from quest.stages.prepare import prepare

    data, repeats = PEER_TABLES[table]
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"] = {**raw["data"], **data, "synthetic": {**raw["data"]["synthetic"], **data.get("synthetic", {})}}
    raw["prepare"]["repeats"] = repeats
    params = params_from_dict(raw)
    result = prepare(load_dataset(params.data, seed=params.seed, root=REPO), test_size=params.prepare.test_size,
                     folds=params.prepare.folds, repeats=repeats, seed=params.seed)  # fmt: skip
    prepared = Prepared(
        x_train=result["X_train.npy"], y_train=result["y_train.npy"], x_test=result["X_test.npy"],
        y_test=result["y_test.npy"], folds=result["folds.npy"], schema=result["schema"],
    )  # fmt: skip
    problem = Problem.of(prepared)
    metric = primary_metric("auto", problem.task)
    cells = cv_cells(prepared)
    figures: dict[str, float] = {"rows": float(len(prepared.y_train)), "splits": float(len(cells))}
    if side == "quest":
        from quest.learners import engine

        learner = registry.learner("mlp", params)
        learner.configure()  # Keras' import is the process's, not the training's
        started = time.perf_counter()
        with engine.timed() as timings:  # the engine's own split of the work: compile and train
            found = scores_of(learner, prepared.x_train, prepared.y_train, [*cells, final_cell(prepared)], problem,
                              seed=params.seed)  # fmt: skip
        figures["seconds"] = time.perf_counter() - started
        figures.update({f"engine_{k}": v for k, v in timings.items()})
        figures["cv"] = float(np.mean([split[0][metric] for split in found[:-1]]))
    else:
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        spec = params.train
        peer = MLPRegressor if problem.task == "regression" else MLPClassifier
        x, y = prepared.x_train, prepared.y_train
        if problem.task == "regression":  # quest's network learns the standardised target: so does the peer
            y = (y - y.mean()) / y.std()
        values, started = [], time.perf_counter()
        for cell in cells:
            model = peer(
                hidden_layer_sizes=spec.hidden_layers, activation=spec.activation, solver="adam",
                learning_rate_init=spec.learning_rate, batch_size=spec.batch_size, alpha=spec.l2,
                max_iter=spec.epochs, early_stopping=True,
                validation_fraction=spec.early_stopping.validation_fraction,
                n_iter_no_change=spec.early_stopping.patience, tol=0.0, random_state=params.seed + cell.index + 1,
            )  # fmt: skip
            model.fit(x[cell.rows], y[cell.rows])
            answers = model.predict(cell.inputs[0])
            if problem.task == "regression":
                truth = (cell.targets[0] - prepared.y_train.mean()) / prepared.y_train.std()
                values.append(1.0 - np.sum((truth - answers) ** 2) / np.sum((truth - truth.mean()) ** 2))
            else:
                values.append(float(np.mean(answers == cell.targets[0])))
        figures["seconds"] = time.perf_counter() - started
        figures["cv"] = float(np.mean(values))
    figures["metric"] = metric  # type: ignore[assignment]
    print(json.dumps(figures))


def sklearn_peer(out: Report) -> None:
    """quest's MLP against scikit-learn's on the same splits: the same 64-32 network, Adam, batch and patience."""
    out.section("The MLP against scikit-learn's MLPClassifier / MLPRegressor, on quest's CV splits (CPU)")
    out.line(f"{'table':<10}{'rows':>7}{'splits':>7}{'quest s':>9}{'build':>7}{'compile':>8}{'train':>7}"
             f"{'sklearn s':>10}{'quest CV':>10}{'sklearn CV':>11}")  # fmt: skip
    for table in PEER_TABLES:
        sides = {}
        for side in ("quest", "sklearn"):
            env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "QUEST_JAX_CACHE": ""}  # a first run: cold
            done = subprocess.run([sys.executable, __file__, "_peer", table, side], capture_output=True, text=True,
                                  env=env)  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"bench: the {side} MLP on {table} failed:\n{done.stderr[-3000:]}")
            sides[side] = json.loads(done.stdout.strip().splitlines()[-1])
        ours, theirs = sides["quest"], sides["sklearn"]
        out.line(
            f"{table:<10}{ours['rows']:>7.0f}{ours['splits']:>7.0f}{ours['seconds']:>9.2f}{ours['engine_build']:>7.2f}"
            f"{ours['engine_compile']:>8.2f}{ours['engine_train']:>7.2f}{theirs['seconds']:>10.2f}{ours['cv']:>10.4f}"
            f"{theirs['cv']:>11.4f}"
        )
        out.figure(f"cpu_vs_sklearn_mlp_{table}", theirs["seconds"] / ours["seconds"])
        out.figure(f"cpu_vs_sklearn_mlp_{table}_cv_gap", ours["cv"] - theirs["cv"])


REPRO_TARGET_SECONDS = 60  # issue 16: the default run, RealMLP included, under a minute on two cores


def pipeline(out: Report) -> None:
    out.section("The whole pipeline on the default dataset (dvc repro; seconds)")
    with tempfile.TemporaryDirectory(prefix="quest-bench-") as tmp:
        import yaml

        sys.path.insert(0, str(REPO))  # the end-to-end tests' copy of the repo, pipeline outputs left out
        from tests.support import copy_repo

        copy = copy_repo(Path(tmp) / "quest", yaml.safe_load((REPO / "params.yaml").read_text()))
        timings = Path(tmp) / "timings.jsonl"
        env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(copy / "src")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.pop("MLFLOW_TRACKING_URI", None)
        first, _ = _timed(["dvc", "repro"], copy, env)  # a fresh MLflow store: its schema is created here
        env["QUEST_TIMINGS"] = str(timings)
        forced, said = _timed(["dvc", "repro", "--force"], copy, env)
        noop, _ = _timed(["dvc", "repro"], copy, {k: v for k, v in env.items() if k != "QUEST_TIMINGS"})
        stages = [json.loads(line) for line in timings.read_text().splitlines()]
    out.line(f"{'stage':<18}{'total':>7}{'start-up':>9}{'imports':>9}{'compute':>9}{'mlflow':>8}{'other':>7}")
    sums = dict.fromkeys(("total", "startup", "imports", "compute", "mlflow", "other"), 0.0)
    for stage in stages:
        for key in sums:
            sums[key] += stage.get(key, 0.0)
        out.line(
            f"{stage['stage']:<18}{stage['total']:>7.2f}{stage['startup']:>9.2f}{stage.get('imports', 0):>9.2f}"
            f"{stage.get('compute', 0):>9.2f}{stage.get('mlflow', 0):>8.2f}{stage['other']:>7.2f}"
        )
    dvc = forced - sums["total"]
    out.line(
        f"{'all stages':<18}{sums['total']:>7.2f}{sums['startup']:>9.2f}{sums['imports']:>9.2f}"
        f"{sums['compute']:>9.2f}{sums['mlflow']:>8.2f}{sums['other']:>7.2f}"
    )
    out.line(f"dvc itself (repro --force wall time less the stages): {dvc:.2f}")
    out.line("start-up = interpreter and module imports; imports = Keras and its backend; mlflow includes its import")
    split = {
        "imports": sums["startup"] + sums["imports"],
        "dvc": dvc,
        "mlflow": sums["mlflow"],
        "compute": sums["compute"],
        "other": sums["other"],
    }
    out.line("split: " + ", ".join(f"{k} {v:.1f}s ({v / forced:.0%})" for k, v in split.items()))
    # Each compared model's CV + final fit, as the compare stage reports it (wall time in its worker or after).
    fits = re.findall(r"^compare: (\w+) +CV .*\((\d+\.\d+)s\)$", said, flags=re.MULTILINE)
    out.line("compare, per model (s): " + ", ".join(f"{name} {seconds}" for name, seconds in fits))
    out.figure("repro_first_seconds", first)
    out.figure("repro_force_seconds", forced)
    out.figure("repro_noop_seconds", noop)
    out.figure("repro_first_vs_60s_target", first / REPRO_TARGET_SECONDS)
    out.figure("repro_slowest_part", max(split, key=split.get), text=True)


def _timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Seconds the command took, and what it wrote to stderr."""
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stdout + done.stderr


def mlflow_cost(out: Report) -> None:
    """The train stage's training (15 CV networks, then the final one with its per-epoch MLflow logger)."""
    out.section("MLflow's per-epoch logging against training time (the train stage's work, default dataset)")
    done = subprocess.run(
        [sys.executable, __file__, "_mlflow"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: MLflow cost failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    out.line(
        f"training {figures['training']:.3f}s (compilation included), of which logging {figures['logging']:.3f}s "
        f"for {figures['epochs']} epochs; per epoch: logging {figures['per_epoch_logging_ms']:.3f} ms, "
        f"the final network's compute {figures['per_epoch_compute_ms']:.3f} ms"
    )
    out.figure("mlflow_fraction_of_training", figures["fraction"])
    out.figure("mlflow_per_epoch_vs_epoch_compute", figures["per_epoch_logging_ms"] / figures["per_epoch_compute_ms"])


def mlflow_main() -> None:
    from quest.core import timing
    from quest.learners import backend

    backend.configure("jax", "cpu", 42)
    import mlflow
    import numpy as np

    from quest.learners.mlp.recipe import fit_many
    from quest.learners.registry import load_params
    from quest.tracking.epochs import MlflowEpochLogger

    params = load_params(REPO / "params.yaml")
    x, y, jobs, _, _, _ = _workload("default", rows=0)
    with tempfile.TemporaryDirectory() as tmp:
        from quest.learners.jobs import plan_job

        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        final_job = plan_job(np.arange(len(y)), y, task="classification", validation_fraction=0.15, seed=params.seed)
        cv_jobs = jobs * params.prepare.repeats  # as many networks as the stage's 5 folds x 3 repeats
        with mlflow.start_run() as run:
            for _ in range(2):  # the first fills JAX's compilation cache, as any earlier run would have
                logger = MlflowEpochLogger(run.info.run_id)
                before = timing._spent.get("mlflow", 0.0)
                started = time.perf_counter()
                fit_many(x, y, cv_jobs, task="classification", n_classes=2, spec=params.train)
                final: dict[str, float] = {}
                (result,) = fit_many(
                    x, y, [final_job], task="classification", n_classes=2, spec=params.train,
                    hooks=[[logger]], timings=final,
                )  # fmt: skip
                training = time.perf_counter() - started
                logging = timing._spent.get("mlflow", 0.0) - before
    epochs = result.epochs_run
    print(
        json.dumps(
            {
                "epochs": epochs,
                "training": training,
                "logging": logging,
                "fraction": logging / (training - logging),
                "per_epoch_logging_ms": 1000 * logging / epochs,
                "per_epoch_compute_ms": 1000 * (final["train"] - logging) / epochs,
            }
        )
    )


def baseline_growth(out: Report, n: int) -> None:
    out.section(f"Baseline fit times at n = {n} and 2n rows (synthetic, 20 features, 2 classes)")
    import numpy as np
    from sklearn.datasets import make_classification

    sys.path.insert(0, str(REPO / "src"))
    from quest.learners import registry
    from quest.learners.base import Problem
    from quest.learners.registry import load_params

    params = load_params(REPO / "params.yaml")
    x, y = make_classification(n_samples=2 * n, n_features=20, n_informative=10, random_state=0)
    out.line(f"{'model':<22}{'n (s)':>9}{'2n (s)':>9}{'ratio':>7}   growth ~ n^k")
    for name in registry.others():  # every row through the learner interface, as compare builds it
        learner = registry.learner(name, params)
        if not learner.available():
            continue
        if learner.trains_together:  # no single model to fit: its networks train together (make bench-peers)
            out.line(f"{name:<22}{'':>9}{'':>9}{'':>7}   trains its networks together: see make bench-peers")
            continue
        for large in (False, True) if learner.has_stand_in() else (False,):
            seconds = []
            for rows in (n, 2 * n):
                model = learner.build(Problem("classification", 2, 20, large=large), seed=0, hyper={})
                started = time.perf_counter()
                model.fit(x[:rows], y[:rows])
                seconds.append(time.perf_counter() - started)
            ratio = seconds[1] / seconds[0]
            label = f"{name} (stand-in)" if large else name
            out.line(f"{label:<22}{seconds[0]:>9.3f}{seconds[1]:>9.3f}{ratio:>7.2f}   k = {np.log2(ratio):.2f}")


SHAPES = ((50_000, 20), (2_000, 500), (2_000, 1_000), (200, 3_000))  # rows x numeric columns


def shape_grid(out: Report, shapes: tuple[tuple[int, int], ...], limit: float) -> None:
    """Each model's seconds and peak memory as the table grows in rows and in columns: a synthetic numeric table
    (binary target, 20 informative columns) of each shape through the real prepare, then each model's CV on
    the shared splits and final fit (quest.evaluation.scoring.evaluate, as compare runs it), alone in a process
    of its own on every core. `limit` seconds at most a model; one that runs past it is reported as such."""
    out.section(
        "Cost growth in rows and columns: seconds and peak memory per model (CV on the shared splits + final fit)"
    )
    sys.path.insert(0, str(REPO / "src"))
    from quest.learners import registry

    models = [registry.SUBJECT, *registry.others()]
    out.line(f"{'shape':<14}" + "".join(f"{name:>18}" for name in models))
    skipped: list[str] = []
    for rows, columns in shapes:
        with tempfile.TemporaryDirectory(prefix="quest-shape-") as scratch:
            folder = Path(scratch)
            prepared = _prepared_table(folder, rows, columns)
            cells, notes = [], []
            for name in models:
                cell, note = _one_model(name, folder, prepared, limit)
                cells.append(cell)
                notes += [f"  {rows} x {columns}, {name}: {note}"] if note else []
            out.line(f"{f'{rows} x {columns}':<14}" + "".join(f"{cell:>18}" for cell in cells))
            out.figures[f"shape_{rows}x{columns}"] = dict(zip(models, cells, strict=True))
            skipped.extend(notes)
    out.line("(cell: seconds / peak resident MB of the process, imports included; 'over' past the time limit;")
    out.line(" 'too large': compare's memory guard would leave it out, before its first step:)")
    for note in skipped:
        out.line(note)


def _prepared_table(folder: Path, rows: int, columns: int) -> Path:
    import numpy as np
    import yaml

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, columns)).astype(np.float32)
    weights = np.zeros(columns)
    weights[: min(20, columns)] = rng.normal(size=min(20, columns))
    y = (x @ weights + rng.normal(size=rows) > 0).astype(int)
    header = ",".join([*(f"f{i}" for i in range(columns)), "target"])
    np.savetxt(folder / "table.csv", np.column_stack([x, y]), delimiter=",", header=header, comments="", fmt="%.6g")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(source="csv", path=str(folder / "table.csv"), target="target", task="classification")
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run([sys.executable, "-m", "quest.stages.prepare", "--params", str(folder / "params.yaml"), "--out",
                    str(folder / "processed")], check=True, env=env, capture_output=True)  # fmt: skip
    return folder / "processed"


def _one_model(name: str, folder: Path, prepared: Path, limit: float) -> tuple[str, str]:
    """The cell of `name` on the prepared table, and a note to print under the grid (why it was left out)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = [sys.executable, str(Path(__file__)), "_shape", name, str(folder / "params.yaml"), str(prepared)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=limit, env=env)
    except subprocess.TimeoutExpired:
        return f"over {limit:.0f} s", ""
    if done.returncode != 0:
        return "failed", done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if isinstance(figures, str):  # the memory guard's reason
        return "too large", figures
    seconds, peak = figures
    return f"{seconds:.1f} / {peak:.0f}", ""


def shape_main(argv: list[str]) -> None:
    """In its own process: one model's CV and final fit on a prepared table; prints [seconds, peak MB]."""
    import resource

    name, params_path, prepared_dir = argv
    from quest.data.artifacts import read_prepared
    from quest.evaluation.scoring import Skipped, evaluate_or_skip
    from quest.learners import registry
    from quest.learners.registry import load_params

    params = load_params(Path(params_path))
    learner = registry.learner(name, params)
    if hasattr(learner, "configure"):
        learner.configure()
    prepared = read_prepared(Path(prepared_dir))
    problem = registry.problem(params, prepared)
    started = time.perf_counter()
    result = evaluate_or_skip(learner, prepared, problem, seed=params.seed)
    if isinstance(result, Skipped):
        print(json.dumps(result.reason))
        return
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps([seconds, peak]))


# --- the GPU part -------------------------------------------------------------------------------------------


def gpu(out: Report, rows: int, epochs: int, allow_cpu: bool) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; print(sum(d.platform == 'gpu' for d in jax.devices()))"],
        capture_output=True,
        text=True,
    )
    gpus = int(probe.stdout.strip() or 0) if probe.returncode == 0 else 0
    if not gpus and not allow_cpu:
        raise SystemExit("bench-gpu: JAX sees no GPU here; run it on a machine with one (or pass --allow-cpu)")
    out.section(f"Training on a synthetic {rows:,} x 64 set, MLP 256-256, Adam, {epochs} timed epochs (JAX backend)")
    out.line(f"{'engine':<22}{'batch':>6}{'seconds':>9}{'compile':>9}{'samples/s':>14}")
    device = ""
    for batch in (256, 4096):
        runs = {
            "fit (jax)": _engine("fit", "jax", "synthetic", batch, epochs + 1, rows=rows),
            "fast (jax)": _engine("fast", "jax", "synthetic", batch, epochs, rows=rows),
            "limit (hand-written)": _engine("limit", "jax", "synthetic", batch, epochs, rows=rows),
        }
        for name, figures in runs.items():
            device = figures["device"]
            out.line(
                f"{name:<22}{batch:>6}{figures['seconds']:>9.2f}{figures['compile']:>9.2f}"
                f"{figures['samples_per_s']:>14,.0f}"
            )
        fast = runs["fast (jax)"]["samples_per_s"]
        out.figure(f"gpu_fast_vs_limit_b{batch}", fast / runs["limit (hand-written)"]["samples_per_s"])
        out.figure(f"gpu_fast_vs_fit_b{batch}", fast / runs["fit (jax)"]["samples_per_s"])
    out.line(f"device: {device}")


# --- a Dask cluster --------------------------------------------------------------------------------------------

OVERHEAD_TASKS = 200  # empty tasks whose round trips give the cluster's cost per task


def cluster_part(out: Report) -> None:
    """The default comparison (compare stage) in this process's pool and on a local Dask cluster of 1 and then 2
    single-threaded workers (scripts/cluster.sh, as make cluster starts it), side by side: with every default
    model, and with the single-threaded classic ones alone; then what a task costs the cluster beyond its work."""
    import yaml

    sys.path.insert(0, str(REPO))  # the end-to-end tests' copy of the repo and their helpers
    from tests.support import copy_repo, local_cluster

    out.section("The default comparison: a local process pool against a Dask cluster of 1 and 2 workers (seconds)")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    classic = [name for name in params["compare"]["models"] if name not in ("catboost", "realmlp")]
    workloads = {
        "every default model": params,
        "classic models alone": {**params, "compare": {**params["compare"], "models": classic}},
    }
    with tempfile.TemporaryDirectory(prefix="quest-bench-") as tmp:
        env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.pop("MLFLOW_TRACKING_URI", None)
        copies = {}
        for index, (workload, its_params) in enumerate(workloads.items()):
            copies[workload] = copy_repo(Path(tmp) / f"quest-{index}", its_params)
            # What compare reads; its first MLflow run makes the store.
            _timed(["dvc", "repro", "evaluate"], copies[workload], {**env, "PYTHONPATH": str(copies[workload] / "src")})
        stage = [sys.executable, "-m", "quest.stages.compare"]
        wall: dict[tuple[str, str], float] = {}
        tables: dict[str, set[bytes]] = {workload: set() for workload in workloads}

        def run(mode: str, extra: dict[str, str]) -> str:
            said = ""
            for workload, copy in copies.items():
                wall[workload, mode], said_here = _timed(stage, copy, {**env, "PYTHONPATH": str(copy / "src"), **extra})
                tables[workload].add((copy / "reports" / "comparison.csv").read_bytes())
                said = said or said_here
            return said  # the first workload's (every model's) stderr

        run("local pool", {})
        for workers in (1, 2):
            started = time.perf_counter()
            with local_cluster(env, workers) as address:
                mode = f"{workers} worker{'s' if workers > 1 else ''}"
                out.line(f"cluster of {mode}: scheduler and workers ready in {time.perf_counter() - started:.1f}s")
                said = run(mode, {"QUEST_EXECUTOR": address})
                if workers == 2:
                    fits = re.findall(r"^compare: (\w+) +CV .*\((\d+\.\d+)s\)$", said, flags=re.MULTILINE)
                    out.line("on 2 workers, per model (s): " + ", ".join(f"{n} {sec}" for n, sec in fits))
                    _task_overhead(out, copies["every default model"], address)
    modes = ("local pool", "1 worker", "2 workers")
    out.line(f"{'':<22}" + "".join(f"{mode:>12}" for mode in modes))
    for workload in workloads:
        out.line(f"{workload:<22}" + "".join(f"{wall[workload, mode]:>12.1f}" for mode in modes))
    for key, workload in (("every", "every default model"), ("classic", "classic models alone")):
        out.figure(f"cluster_{key}_1_vs_2_workers", wall[workload, "1 worker"] / wall[workload, "2 workers"])
        out.figure(f"cluster_{key}_2_workers_vs_local_pool", wall[workload, "2 workers"] / wall[workload, "local pool"])
    same = all(len(found) == 1 for found in tables.values())
    out.figure("cluster_comparison_identical_to_local", "yes" if same else "no", text=True)


def _task_overhead(out: Report, copy: Path, address: str) -> None:
    """What a task costs beyond its work: the prepared arrays scattered to every worker once, then empty tasks
    that read them, one at a time (a round trip each) and all submitted at once (the scheduler's throughput)."""
    from distributed import Client

    from quest.data.artifacts import read_prepared

    prepared = read_prepared(copy / "data" / "processed")
    size = prepared.x_train.nbytes + prepared.x_test.nbytes + prepared.y_train.nbytes + prepared.y_test.nbytes
    with Client(address.replace("dask://", "tcp://"), timeout=30) as client:
        started = time.perf_counter()
        handle = client.scatter(prepared, broadcast=True, hash=False)
        scattered = time.perf_counter() - started
        started = time.perf_counter()
        for index in range(OVERHEAD_TASKS):
            client.submit(_rows_of, handle, index, pure=False).result()
        one_by_one = (time.perf_counter() - started) / OVERHEAD_TASKS
        started = time.perf_counter()
        futures = [client.submit(_rows_of, handle, index, pure=False) for index in range(OVERHEAD_TASKS)]
        client.gather(futures)
        at_once = (time.perf_counter() - started) / OVERHEAD_TASKS
    out.line(
        f"the prepared arrays ({size / 1e6:.2f} MB) scattered to both workers: {scattered * 1000:.0f} ms, once per "
        f"stage; an empty task on them: {one_by_one * 1000:.1f} ms a round trip one at a time, "
        f"{at_once * 1000:.2f} ms a task with {OVERHEAD_TASKS} submitted at once"
    )
    out.figure("cluster_task_round_trip_ms", one_by_one * 1000)
    out.figure("cluster_task_at_once_ms", at_once * 1000)


def _rows_of(prepared: object, index: int) -> int:
    return len(prepared.y_train) + index  # type: ignore[attr-defined]


# --- output -------------------------------------------------------------------------------------------------


class Report:
    """Printed as it goes; saved as text and JSON under benchmarks/results/."""

    def __init__(self, part: str) -> None:
        self.part, self.lines, self.figures = part, [], {}

    def section(self, title: str) -> None:
        self.line(f"\n## {title}")

    def line(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)

    def figure(self, name: str, value: float | str, text: bool = False) -> None:
        self.figures[name] = value
        self.line(f"{name}={value}" if text else f"{name}={value:.3f}")

    def save(self) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        header = f"# quest benchmarks, {self.part} part: {platform.node()} {platform.processor() or platform.machine()}"
        (RESULTS / f"{self.part}.txt").write_text("\n".join([header, *self.lines]) + "\n")
        (RESULTS / f"{self.part}.json").write_text(json.dumps(self.figures, indent=2) + "\n")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_engine":
        return engine_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "_peer":
        return peer_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "_mlflow":
        return mlflow_main()
    if len(sys.argv) > 1 and sys.argv[1] == "_shape":
        return shape_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "part",
        choices=["cpu", "gpu", "shapes", "cluster"],
        help="shapes: the cpu part's shape grid alone; cluster: the default comparison on 1 and 2 Dask workers",
    )
    parser.add_argument("--epochs", type=int, default=None, help="cpu: 100 per fold; gpu: 3 timed epochs")
    parser.add_argument("--rows", type=int, default=1_000_000, help="gpu: rows of the synthetic set")
    parser.add_argument("--baseline-rows", type=int, default=2000, help="cpu: n of the baseline growth table")
    parser.add_argument("--skip-pipeline", action="store_true", help="cpu: leave out the dvc repro timings")
    parser.add_argument("--allow-cpu", action="store_true", help="gpu: run the GPU part on the CPU (smoke test)")
    parser.add_argument(
        "--shapes",
        default=",".join(f"{r}x{c}" for r, c in SHAPES),
        help="cpu: the shape grid's tables, rows x columns (default: %(default)s; empty: none)",
    )
    parser.add_argument("--shape-limit", type=float, default=900, help="cpu: seconds at most per model and shape")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    # A smoke run of the GPU part on a CPU must not pass for GPU figures.
    out = Report("gpu-on-cpu" if args.part == "gpu" and args.allow_cpu else args.part)
    started = time.perf_counter()
    if args.part == "cpu":
        cpu_training(out, args.epochs or 100)
        sklearn_peer(out)
        mlflow_cost(out)
        if not args.skip_pipeline:
            pipeline(out)
        baseline_growth(out, args.baseline_rows)
    shapes = tuple(tuple(map(int, shape.split("x"))) for shape in args.shapes.split(",") if shape)
    if args.part in ("cpu", "shapes") and shapes:
        shape_grid(out, shapes, args.shape_limit)
    if args.part == "cluster":
        cluster_part(out)
    if args.part == "gpu":
        gpu(out, args.rows, args.epochs or 3, args.allow_cpu)
    out.line(f"\n(benchmark wall time {time.perf_counter() - started:.0f}s)")
    out.save()


if __name__ == "__main__":
    main()
