"""Stage 1, prepare: load and validate the table, split it (stratified, seeded), assign the CV folds every
model shares, fit preprocessing on the training split only, and write the processed arrays and schema."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from quest import arguments, paths, timing
from quest.data import leaks
from quest.data.artifacts import Column, Preprocessing, Schema, Split
from quest.data.preprocess import fit_preprocessing, infer_columns
from quest.data.sources import Dataset, load_dataset
from quest.data.splits import RANDOM, Division, assign_folds, division_of, split_indices, subsample
from quest.errors import QuestError, run_cli
from quest.files import atomic_dir, write_json
from quest.params import SplitParams, read_params


def encode_target(target: pd.Series, task: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Classes become 0..K-1 in sorted label order; a regression target becomes float32."""
    if task == "regression":
        return target.to_numpy(dtype=np.float32), ()
    labels = sorted(target.unique(), key=str)
    index = {label: code for code, label in enumerate(labels)}
    return target.map(index).to_numpy(dtype=np.int64), tuple(str(label) for label in labels)


def prepare(
    dataset: Dataset,
    *,
    test_size: float,
    folds: int,
    seed: int,
    repeats: int = 1,
    split: SplitParams | None = None,
    max_train_rows: int | None = None,
) -> dict:
    """Everything prepare writes, computed in memory: arrays, the fitted preprocessing and the schema. A group or
    time `split` divides the rows by its column (dataset.split_values), in the test split and every fold. Past
    `max_train_rows` the training split is a seeded sample of itself (stratified; whole groups; the latest rows),
    and the test split stays whole."""
    y, class_labels = encode_target(dataset.target, dataset.task)
    division = divide(dataset, split, folds=folds)
    try:
        train_rows, test_rows = split_indices(
            y, task=dataset.task, test_size=test_size, seed=seed, labels=class_labels, division=division
        )
        sampled_from = None
        if max_train_rows is not None and len(train_rows) > max_train_rows:
            sampled_from, fraction = len(train_rows), max_train_rows / len(train_rows)
            train_rows = subsample(train_rows, y, fraction, task=dataset.task, seed=seed, division=division)
        fold_of = assign_folds(
            y[train_rows], task=dataset.task, folds=folds, seed=seed, repeats=repeats, labels=class_labels,
            division=division.of(train_rows),
        )  # fmt: skip
    except QuestError as error:
        raise QuestError(f"{dataset.source}: {error}") from None
    train, test = dataset.features.iloc[train_rows], dataset.features.iloc[test_rows]
    columns: tuple[Column, ...] = infer_columns(train)
    preprocessing = fit_preprocessing(train, columns)
    if not preprocessing.features:
        raise QuestError(
            f"{dataset.source}: no feature column holds a value in the training split; nothing to learn from"
        )
    x_train, x_test = preprocessing.apply(train), preprocessing.apply(test)  # the one function serving applies too
    for x, part in ((x_train, "training"), (x_test, "test")):
        check_finite_inputs(x, preprocessing, split=part, source=dataset.source)
    schema = Schema(
        dataset=dataset.name,
        source=dataset.source,
        task=dataset.task,
        target=str(dataset.target.name),
        class_labels=class_labels,
        columns=columns,
        features=tuple(feature.name for feature in preprocessing.features),
        n_train=len(train_rows),
        n_test=len(test_rows),
        folds=folds,
        repeats=repeats,
        split=None if split is None or division.kind == "random" else Split(
            division.kind, str(split.column), gap=split.gap,
            groups=division.units(train_rows) if division.kind == "group" else 0,
        ),
        sampled_from=sampled_from,
    )  # fmt: skip
    keys = {} if division.keys is None else {paths.SPLIT_KEYS: division.keys[train_rows]}
    return {
        paths.X_TRAIN: x_train,
        paths.Y_TRAIN: y[train_rows],
        paths.X_TEST: x_test,
        paths.Y_TEST: y[test_rows],
        paths.FOLDS: fold_of,
        paths.TEST_ROWS: test_rows,  # positions in the loaded table: the raw rows of the test split
        **keys,  # each training row's group code or rank in time, for every split after prepare's
        "preprocessing": preprocessing,
        "schema": schema,
        "notices": [] if division.kind != "random" else leaks.notices(
            dataset.features, dataset.target, task=dataset.task, train_rows=train_rows, test_rows=test_rows
        ),
    }  # fmt: skip


def divide(dataset: Dataset, split: SplitParams | None, *, folds: int) -> Division:
    """The rows' division by prepare.split: at random, or by the split column's groups or times, with enough
    groups for the test split and every fold."""
    if split is None or split.kind == "random" or dataset.split_values is None:
        return RANDOM
    division = division_of(dataset.split_values, split.kind, gap=split.gap, label=dataset.source)
    groups = division.units(np.arange(len(dataset.target)))
    if split.kind == "group" and groups < folds + 1:
        raise QuestError(
            f"{dataset.source}: prepare.split.column {split.column!r} holds {groups} groups; the test split and "
            f"prepare.folds={folds} folds need at least {folds + 1}: lower prepare.folds or gather more groups"
        )
    return division


def check_finite_inputs(x: np.ndarray, preprocessing: Preprocessing, *, split: str, source: str) -> None:
    """Every model input is a finite float32: the validation in quest.data.sources should see to it, and this
    says which column slipped through if it did not, before any model sees a NaN."""
    bad = ~np.isfinite(x)
    if bad.any():
        row, position = (int(i[0]) for i in np.nonzero(bad))
        feature = preprocessing.features[position]
        raise QuestError(
            f"{source}: column {feature.column!r} gives a non-finite model input ({feature.name}) in row {row + 1} "
            f"of the {split} split after scaling: rescale the column (for example, take its log) or leave it out "
            "with data.drop"
        )


def write_prepared(result: dict, out: Path) -> None:
    with atomic_dir(out) as staging:
        for name, value in result.items():
            if name.endswith(".npy"):
                np.save(staging / name, value, allow_pickle=False)
        write_json(staging / paths.PREPROCESSING, result["preprocessing"].to_dict())
        write_json(staging / paths.SCHEMA, result["schema"].to_dict())


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = arguments.stage_parser("stages.prepare", __doc__, "params", "out")
    args = parser.parse_args(argv)

    params = read_params(args.params, sections=None, table=args.table)  # it makes no learner: see quest.params
    root = paths.repo_root(args.params.parent)
    split = params.prepare.split
    dataset = load_dataset(params.data, seed=params.seed, root=root, split=split)
    result = prepare(
        dataset,
        test_size=params.prepare.test_size,
        folds=params.prepare.folds,
        repeats=params.prepare.repeats,
        seed=params.seed,
        split=split,
        max_train_rows=params.prepare.max_train_rows,
    )
    write_prepared(result, args.out)
    schema: Schema = result["schema"]
    for notice in result["notices"]:
        print(f"prepare: notice: {dataset.source}: {notice}", file=sys.stderr)
    divided = f", split {schema.split.describe()}" if schema.split is not None else ""
    capped = f" (sampled from {schema.sampled_from})" if schema.sampled_from is not None else ""
    print(
        f"prepare: {schema.dataset} ({schema.task}): {schema.n_train} train{capped} / {schema.n_test} test rows, "
        f"{len(schema.columns)} columns -> {len(schema.features)} features, "
        f"{schema.folds} folds x {schema.repeats} repeats{divided} -> {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    run_cli("quest prepare", main)
