"""Stage 1, prepare: load and validate the table, split it (stratified, seeded), assign the CV folds every
model shares, fit preprocessing on the training split only, and write the processed arrays and schema."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from quest.core import arguments, paths, processes, timing
from quest.core.errors import QuestError, run_cli
from quest.core.files import atomic_dir, write_json
from quest.data import leaks
from quest.data.artifacts import DATE_PARTS, Column, Preprocessing, Schema, Split
from quest.data.columns import NO_VALUE, LeftOut, profile, type_columns
from quest.data.preprocess import fit_preprocessing
from quest.data.sources import Dataset, load_dataset
from quest.data.splits import RANDOM, Division, assign_folds, division_of, split_indices, subsample
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
    keep: tuple[str, ...] = (),
    large: tuple[int, int] | None = None,
) -> dict:
    """Everything prepare writes, computed in memory: arrays, the fitted preprocessing and the schema. A group or
    time `split` divides the rows by its column (dataset.split_values), in the test split and every fold. Past
    `max_train_rows` the training split is a seeded sample of itself (stratified; whole groups; the latest rows),
    and the test split stays whole. Columns that cannot generalise are left out unless `keep` names them. `large`,
    (rows, repeats): a training split past that many rows draws its folds that many times, if fewer."""
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
        notices = []
        if large is not None and len(train_rows) > large[0] and large[1] < repeats:
            notices.append(fewer_repeats(len(train_rows), large, folds=folds, repeats=repeats))
            repeats = large[1]
        fold_of = assign_folds(
            y[train_rows], task=dataset.task, folds=folds, seed=seed, repeats=repeats, labels=class_labels,
            division=division.of(train_rows),
        )  # fmt: skip
    except QuestError as error:
        raise QuestError(f"{dataset.source}: {error}") from None
    train, test = dataset.features.iloc[train_rows], dataset.features.iloc[test_rows]
    preprocessing, left_out = fit_columns(
        train, rows=len(y), built_rows=len(train_rows) + len(test_rows), keep=keep, source=dataset.source
    )
    columns = preprocessing.columns
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
        left_out=tuple((c.name, c.why) for c in left_out),
    )  # fmt: skip
    keys = {} if division.keys is None else {paths.SPLIT_KEYS: division.keys[train_rows]}
    notices += [left_out_notice(c) for c in left_out]
    if division.kind == "random":
        notices += leaks.notices(
            dataset.features, dataset.target, task=dataset.task, train_rows=train_rows, test_rows=test_rows
        )
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
        "columns": profile(train, dataset.target.iloc[train_rows], preprocessing, left_out, task=dataset.task),
        "notices": notices,
    }


def fewer_repeats(rows: int, large: tuple[int, int], *, folds: int, repeats: int) -> str:
    threshold, fewer = large
    drawn = "once" if fewer == 1 else f"{fewer} times"
    return (
        f"{rows} training rows > compare.scale_threshold ({threshold}): the {folds} folds are drawn {drawn}, not "
        f"{repeats} times (prepare.large_repeats: {fewer}), as every model's fit on this many rows is costly and a "
        f"fold's {rows // folds} held-out rows score it closely"
    )


def fit_columns(
    train: pd.DataFrame, *, rows: int, built_rows: int, keep: tuple[str, ...], source: str
) -> tuple[Preprocessing, tuple[LeftOut, ...]]:
    """The training split's columns typed, those that cannot generalise left out (unless `keep` names them), the
    memory the `built_rows` rows of inputs would take checked, and the preprocessing fitted."""
    columns, left_out = type_columns(train, rows=rows, keep=keep)
    if not columns:
        raise QuestError(
            f"{source}: every feature column is left out ("
            + "; ".join(f"{c.name!r} {c.why}" for c in left_out)
            + "); nothing to learn from"
        )
    check_memory(columns, rows=built_rows, source=source)
    return fit_preprocessing(train, columns), left_out


def left_out_notice(column: LeftOut) -> str:
    """One sentence for a column prepare leaves out: which, why, and how to keep it where keeping can help."""
    keeping = "" if column.why == NO_VALUE else f"; data.keep: [{column.name}] keeps it"
    return f"column {column.name!r} {column.why}: left out of the model inputs, as it cannot generalise{keeping}"


# Bytes a cell of the model inputs takes while prepare builds them: each input's float64 column, their float64
# stack, and the float32 matrix kept.
CELL_BYTES = 8 + 8 + 4


def column_inputs(column: Column) -> int:
    """The model inputs a typed column becomes, at most: one per category (and one for the others of a
    many-valued column), one per date part, else one."""
    if column.kind == "categorical":
        return len(column.categories) + int(column.grouped)
    return len(DATE_PARTS) if column.kind == "datetime" else 1


def check_memory(columns: tuple[Column, ...], *, rows: int, source: str) -> None:
    """Before the model inputs are built: one line naming the widest column when rows x inputs would not fit in
    the memory this process may take (QUEST_MEMORY_LIMIT sets another limit), as compare's guard does."""
    widths = {column.name: column_inputs(column) for column in columns}
    inputs = sum(widths.values())
    need, available = rows * inputs * CELL_BYTES, processes.memory_available()
    if need > available:
        widest = max(widths, key=widths.__getitem__)
        raise QuestError(
            f"{source}: the model inputs, {rows} rows x {inputs} inputs, would take about "
            f"{processes.size_text(need)} to build and {processes.size_text(available)} is available; column "
            f"{widest!r} makes {widths[widest]} of the inputs: leave columns out with data.drop, sample the training "
            "split with prepare.max_train_rows, or use a machine with more memory"
        )


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
        write_json(staging / paths.COLUMNS, result["columns"])


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
        keep=params.data.keep,
        large=(params.compare.scale_threshold, params.prepare.large_repeats),
    )
    write_prepared(result, args.out)
    schema: Schema = result["schema"]
    for notice in result["notices"]:
        print(f"prepare: notice: {dataset.source}: {notice}", file=sys.stderr)
    divided = f", split {schema.split.describe()}" if schema.split is not None else ""
    capped = f" (sampled from {schema.sampled_from})" if schema.sampled_from is not None else ""
    print(
        f"prepare: {schema.dataset} ({schema.task}): {schema.n_train} train{capped} / {schema.n_test} test rows, "
        f"{schema.columns_text} -> {len(schema.features)} features, "
        f"{schema.folds_text}{divided} -> {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    run_cli("quest prepare", main)
