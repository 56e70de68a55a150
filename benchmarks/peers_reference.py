"""The reference side of `make bench-peers`: runs in the peers' own environment (.peers-venv), never in quest's.

    .peers-venv/bin/python benchmarks/peers_reference.py MODEL FOLDER

MODEL is realmlp (pytabkit's RealMLP_TD_*, at its defaults) or tabm (pytabkit's TabM_D_*, at its defaults with its
piecewise-linear embeddings on, num_emb_type="pwl", as quest's tabm params), on the CPU with every core. FOLDER
holds what benchmarks/peers.py wrote: train.csv (the training split's raw columns,
numbers imputed as quest's prepare does), y.npy (its encoded target), held_out.npy (one row mask per shared
split) and meta.json, and with peers.py --same-validation fit.npy and validation.npy (per split, the rows quest's
network learned from and picked its epoch on). Each split's model learns from the split's training rows (divided
as quest divided them, when given) and answers its held-out rows;
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


def inputs(folder: Path) -> None:
    """RealMLP-TD's inputs to its first layer, before its random parts, as pytabkit computes them on the first
    split's training rows: the numbers centred, scaled and clipped (the periodic embedding's input), the small
    categories one-hot encoded and scaled likewise, and the large ones' sizes (their embedding tables, a row for a
    missing or unknown value included). To FOLDER/inputs.npz, for benchmarks/peers_inputs.py to hold against quest's."""
    import torch
    from pytabkit.models.data.conversion import ToDictDatasetConverter
    from pytabkit.models.data.data import TensorInfo
    from pytabkit.models.nn_models.base import FilterTensorsFactory, SequentialFactory
    from pytabkit.models.nn_models.categorical import EncodingFactory, SingleOneHotFactory
    from pytabkit.models.nn_models.models import PreprocessingFactory
    from pytabkit.models.sklearn.default_params import DefaultParams

    meta = json.loads((folder / "meta.json").read_text())
    frame, y, rows = read_inputs(folder, meta)
    classification = meta["task"] == "classification"
    config = dict(DefaultParams.RealMLP_TD_CLASS if classification else DefaultParams.RealMLP_TD_REG)
    config["tfms"] = [tfm for tfm in config["tfms"] if tfm != "embedding"]  # the random part: left to compare
    data = ToDictDatasetConverter().fit_transform(frame[~rows[0]])
    data.tensors["y"] = torch.as_tensor(y[~rows[0]]).reshape(-1, 1)
    data.tensor_infos["y"] = TensorInfo(cat_sizes=[int(y.max()) + 1 if classification else 0])
    # As NNFactory._create_transform: small categories one-hot first, then numbers and categories apart.
    one_hot = EncodingFactory(SingleOneHotFactory(**config), enc_output_name="x_one_hot").create(data.tensor_infos)
    _, data = one_hot.fit_transform(data)
    found = {}
    for name, keys in (("numeric", {"include_keys": ["x_cont"]}), ("categories", {"exclude_keys": ["x_cont"]})):
        branch = SequentialFactory([FilterTensorsFactory(**keys), PreprocessingFactory(**config)])
        _, out = branch.create(data.tensor_infos).fit_transform(data)
        found[name] = out.tensors["x_cont"].numpy() if "x_cont" in out.tensors else np.zeros((out.n_samples, 0))
        if name == "categories" and "x_cat" in out.tensors:
            found["large_sizes"] = out.tensor_infos["x_cat"].get_cat_sizes().numpy()
    np.savez(folder / "inputs.npz", **found)


def read_inputs(folder: Path, meta: dict) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The training split's raw columns as pytabkit should read them, its encoded target, the held-out masks."""
    frame = pd.read_csv(folder / "train.csv", dtype={name: "str" for name in meta["categorical"]})
    for name in meta["boolean"]:
        frame[name] = frame[name].astype("boolean")
    return frame, np.load(folder / "y.npy"), np.load(folder / "held_out.npy")


def main() -> None:
    model, folder = sys.argv[1], Path(sys.argv[2])
    if model == "inputs":
        inputs(folder)
        return
    meta = json.loads((folder / "meta.json").read_text())
    quiet()
    frame, y, held_out = read_inputs(folder, meta)
    shared = (folder / "fit.npy").exists()  # quest's own fit and validation rows (peers.py --same-validation)
    if shared:
        fits, validations = np.load(folder / "fit.npy"), np.load(folder / "validation.npy")
    outputs, seconds = [], []
    for split, mask in enumerate(held_out):
        fitted = estimator(model, meta["task"], meta["seed"] + split + 1, meta["threads"])
        started = time.perf_counter()
        if shared:
            rows = fits[split] | validations[split]
            fitted.fit(frame[rows], y[rows], val_idxs=np.flatnonzero(validations[split][rows])[None, :])
        else:
            fitted.fit(frame[~mask], y[~mask])
        answer = fitted.predict_proba(frame[mask]) if meta["task"] == "classification" else fitted.predict(frame[mask])
        seconds.append(time.perf_counter() - started)
        outputs.append(np.asarray(answer, dtype=np.float64))
        print(f"  reference {model} split {split + 1}/{len(held_out)}: {seconds[-1]:.1f}s", file=sys.stderr, flush=True)
    np.savez(folder / f"{model}.npz", seconds=np.array(seconds), **{f"split_{i}": o for i, o in enumerate(outputs)})


if __name__ == "__main__":
    main()
