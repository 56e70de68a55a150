"""RealMLP's inputs, quest's against pytabkit's, column kind by column kind, on the same rows.

    python benchmarks/peers_inputs.py [--datasets penguins,credit_data,ames]

Per dataset: quest's prepare splits the table as `make bench-peers` does; on the first split's training rows quest's
RealMLP (`initialise`, then its first layer's `host_output`) and pytabkit's RealMLP-TD (its own encoders and
fitters, in .peers-venv: benchmarks/peers_reference.py inputs) each compute what enters the network before its
random parts: the numbers centred, robust-scaled and smoothly clipped; the small categories one-hot encoded (one
±1 column for two categories) and scaled likewise; the large categories' sizes (each one's embedding table).
Printed: the columns of each kind on both sides and the largest difference between them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench import REPO
from peers import SEED, data_params, split_table


def quest_inputs(prepared, rows: np.ndarray) -> dict[str, np.ndarray]:  # noqa: ANN001 (quest.data.artifacts.Prepared)
    """quest's RealMLP on `rows` of the training split: its robust inputs layer's output, split by kind."""
    from quest.learners.base import Problem
    from quest.learners.realmlp.network import Layout, RobustInputs, build_realmlp, host_output, initialise
    from quest.learners.registry import load_params

    spec = load_params(REPO / "params.yaml").section("realmlp")
    problem = Problem.of(prepared)
    x = prepared.x_train[rows]
    layout = Layout.of(x.shape[1], problem.feature_columns, problem.feature_names, one_hot_max=spec.one_hot_max)
    model = build_realmlp(layout, task=problem.task, n_classes=problem.n_classes, spec=spec, seed=SEED)
    initialise(model, layout, x, prepared.y_train[rows].astype(np.float32), seed=SEED)
    robust = next(layer for layer in model.layers if isinstance(layer, RobustInputs))
    scaled = host_output(robust, x.astype(np.float64))[:, : len(layout.sources)]
    return {
        "numeric": scaled[:, : layout.numeric],
        "categories": scaled[:, layout.numeric :],
        "large_sizes": np.array([len(block) for block in layout.large]),
    }


def compare(name: str, ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> list[str]:
    lines = []
    for kind in ("numeric", "categories"):
        a, b = ours[kind], theirs[kind]
        gap = f"largest difference {np.max(np.abs(a - b)):.2e}" if a.shape == b.shape and a.size else "-"
        lines.append(f"{name:<12} {kind:<11} quest {a.shape[1]:>4} columns, pytabkit {b.shape[1]:>4}: {gap}")
    a, b = ours["large_sizes"], theirs.get("large_sizes", np.zeros(0, int))
    lines.append(
        f"{name:<12} {'embedded':<11} quest {len(a):>4} columns, pytabkit {len(b):>4}: sizes quest {a.tolist()}, "
        f"pytabkit {b.tolist()}"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="penguins,credit_data,ames")
    parser.add_argument("--reference-python", default=str(REPO / ".peers-venv" / "bin" / "python"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from quest.learners import backend

    backend.configure("jax", "cpu", SEED)
    for name in args.datasets.split(","):
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            data = data_params(name, folder)
            if data is None:
                print(f"{name}: skipped, no file for it")
                continue
            prepared, held_out = split_table(name, data, 1, folder, 1)
            script = str(REPO / "benchmarks" / "peers_reference.py")
            subprocess.run([args.reference_python, script, "inputs", str(folder)], check=True)
            theirs = dict(np.load(folder / "inputs.npz"))
            ours = quest_inputs(prepared, ~held_out[0])
        print("\n".join(compare(name, ours, theirs)), flush=True)


if __name__ == "__main__":
    main()
