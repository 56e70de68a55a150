"""The reference side of `make bench-peers`: runs in the peers' own environment (.peers-venv), never in quest's.

    .peers-venv/bin/python benchmarks/peers_reference.py MODEL FOLDER

MODEL is realmlp (pytabkit's RealMLP_TD_*, at its defaults) or tabm (pytabkit's TabM_D_*, at its defaults with its
piecewise-linear embeddings on, num_emb_type="pwl", as quest's tabm params), on the CPU with every core. FOLDER
holds what benchmarks/peers.py wrote: train.csv (the training split's raw columns,
numbers imputed as quest's prepare does), y.npy (its encoded target), held_out.npy (one row mask per shared
split) and meta.json. Each split's model learns from the split's training rows and answers its held-out rows;
the answers and the seconds each fit-and-predict took go to FOLDER/MODEL.npz. No score is computed here: quest's
side scores both with the same function.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def quiet() -> None:
    """Lightning resets its loggers when imported: import it first, then silence it."""
    import pytorch_lightning  # noqa: F401

    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def estimator(model: str, task: str, seed: int, threads: int):  # noqa: ANN201 (a pytabkit estimator)
    from pytabkit import RealMLP_TD_Classifier, RealMLP_TD_Regressor, TabM_D_Classifier, TabM_D_Regressor

    kinds = {
        ("realmlp", "classification"): RealMLP_TD_Classifier,
        ("realmlp", "regression"): RealMLP_TD_Regressor,
        ("tabm", "classification"): TabM_D_Classifier,
        ("tabm", "regression"): TabM_D_Regressor,
    }
    options = {"num_emb_type": "pwl"} if model == "tabm" else {}
    return kinds[model, task](device="cpu", n_threads=threads, random_state=seed, verbosity=0, **options)


def main() -> None:
    model, folder = sys.argv[1], Path(sys.argv[2])
    meta = json.loads((folder / "meta.json").read_text())
    quiet()
    frame = pd.read_csv(folder / "train.csv", dtype={name: "str" for name in meta["categorical"]})
    for name in meta["boolean"]:
        frame[name] = frame[name].astype("boolean")
    y = np.load(folder / "y.npy")
    held_out = np.load(folder / "held_out.npy")
    outputs, seconds = [], []
    for split, mask in enumerate(held_out):
        fitted = estimator(model, meta["task"], meta["seed"] + split + 1, meta["threads"])
        started = time.perf_counter()
        fitted.fit(frame[~mask], y[~mask])
        answer = fitted.predict_proba(frame[mask]) if meta["task"] == "classification" else fitted.predict(frame[mask])
        seconds.append(time.perf_counter() - started)
        outputs.append(np.asarray(answer, dtype=np.float64))
        print(f"  reference {model} split {split + 1}/{len(held_out)}: {seconds[-1]:.1f}s", file=sys.stderr, flush=True)
    np.savez(folder / f"{model}.npz", seconds=np.array(seconds), **{f"split_{i}": o for i, o in enumerate(outputs)})


if __name__ == "__main__":
    main()
