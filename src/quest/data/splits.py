"""Every split quest makes, in one place: train/test, the shared CV folds, the validation slice that early
stopping and tuning score on, and the subsamples of the learning curves. All seeded; stratified by class
wherever every class can keep a member.

Each follows the table's `Division` (prepare.split): `random` for independent rows; `group`, where the rows of
one group (a customer, a patient) are never on both sides of a split; `time`, where rows are ordered in time and
nothing after a validation row's time trains for it (forward chaining, `gap` rows apart)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from quest.core.errors import QuestError

if TYPE_CHECKING:
    import pandas as pd

DivisionKind = Literal["random", "group", "time"]


@dataclass(frozen=True, eq=False)
class Division:
    """How a table's rows may be divided without a leak. `keys` holds one number per row: the code of its group
    (`group`) or its rank in time (`time`, 0 for the earliest, ties in the table's order); None for `random`."""

    kind: DivisionKind = "random"
    keys: np.ndarray | None = None
    gap: int = 0  # time: rows left out between a training part and the rows it is validated on

    def of(self, rows: np.ndarray) -> Division:
        """The division of a subset of the rows (indices into them), as the split functions take it."""
        return self if self.keys is None else Division(self.kind, self.keys[rows], self.gap)

    def units(self, rows: np.ndarray) -> int:
        """The independent units among `rows`: groups for `group`, rows otherwise."""
        return len(np.unique(self.keys[rows])) if self.kind == "group" and self.keys is not None else len(rows)


RANDOM = Division()


def division_of(values: pd.Series, kind: DivisionKind, *, gap: int, label: str) -> Division:
    """The division a group or time column gives every row of the table; a row without a value, or a time that
    is neither a date, a datetime nor a number, is one line naming the column and row."""
    import pandas as pd

    column = values.name
    missing = np.flatnonzero(values.isna().to_numpy())
    if len(missing):
        what = "group" if kind == "group" else "time"
        raise QuestError(
            f"{label}: prepare.split.column {column!r} is empty in row {missing[0] + 1}; every row needs its {what}"
        )
    if kind == "group":
        codes, _ = pd.factorize(values.astype(str), sort=True)
        return Division("group", codes.astype(np.int64))
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        times = values.to_numpy(dtype=float)
    else:
        try:
            parsed = pd.to_datetime(values.astype(str), errors="coerce", format="mixed")
        except (ValueError, TypeError) as error:  # mixed time zones, out-of-range dates
            raise QuestError(f"{label}: prepare.split.column {column!r} does not parse as times ({error})") from None
        bad = np.flatnonzero(parsed.isna().to_numpy())
        if len(bad):
            raise QuestError(
                f"{label}: prepare.split.column {column!r} holds {values.iloc[bad[0]]!r} in row {bad[0] + 1}, which "
                "is not a date, a datetime or a number"
            )
        times = (parsed - parsed.min()).dt.total_seconds().to_numpy()
    ranks = np.empty(len(times), dtype=np.int64)
    ranks[np.argsort(times, kind="stable")] = np.arange(len(times))
    return Division("time", ranks, gap)


def _group_splits(n_splits: int, y: np.ndarray, keys: np.ndarray, *, stratified: bool, seed: int) -> list[np.ndarray]:
    """The held-out rows of each fold of a shuffled, seeded group k-fold: stratified by class for classification
    (StratifiedGroupKFold, which says nothing when a class has fewer groups than folds: the callers check)."""
    import warnings

    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    kind = StratifiedGroupKFold if stratified else GroupKFold
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class", category=UserWarning)
        splits = kind(n_splits=n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups=keys)
        return [held for _, held in splits]


def _first_group_fold(y: np.ndarray, keys: np.ndarray, *, task: str, fraction: float, seed: int) -> np.ndarray:
    """Held-out mask of about `fraction` of the rows, whole groups only, stratified by class for classification:
    the first fold of a shuffled group k-fold with k = 1 / fraction (at most one fold per group)."""
    groups = len(np.unique(keys))
    n_splits = min(groups, max(2, round(1 / fraction)))
    held = _group_splits(n_splits, y, keys, stratified=task == "classification", seed=seed)[0]
    mask = np.zeros(len(y), dtype=bool)
    mask[held] = True
    return mask


def _latest(keys: np.ndarray, count: int) -> np.ndarray:
    """Mask of the `count` latest rows by their rank in time."""
    mask = np.zeros(len(keys), dtype=bool)
    mask[np.argsort(keys, kind="stable")[len(keys) - count :]] = True
    return mask


def _before(keys: np.ndarray, held: np.ndarray, gap: int) -> np.ndarray:
    """Mask of the rows that may train for the held-out rows `held` in time: those earlier than the earliest of
    them, less the `gap` latest of those."""
    earlier = keys < keys[held].min()
    if gap:
        order = np.flatnonzero(earlier)[np.argsort(keys[earlier], kind="stable")]
        earlier[order[max(0, len(order) - gap) :]] = False
    return earlier


def _label(code: int, labels: tuple[str, ...]) -> str:
    """A class by its label, for messages (its code where the labels are not known)."""
    return labels[code] if code < len(labels) else str(code)


def _rarest(y: np.ndarray, labels: tuple[str, ...]) -> tuple[str, int]:
    """The least frequent class (by its label) and its row count."""
    classes, counts = np.unique(y, return_counts=True)
    return _label(int(classes[counts.argmin()]), labels), int(counts.min())


def split_indices(
    y: np.ndarray,
    *,
    task: str,
    test_size: float,
    seed: int,
    labels: tuple[str, ...] = (),
    division: Division = RANDOM,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test split, stratified by class so both splits keep every class; by `division`: whole groups
    on each side, or the latest `test_size` of the rows as the test split with the `gap` rows before it in
    neither."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    stratify = y if task == "classification" else None
    if division.kind != "random":
        keys = division.keys
        assert keys is not None
        if division.kind == "group":
            test = _first_group_fold(y, keys, task=task, fraction=test_size, seed=seed)
            train = ~test
        else:
            test = _latest(keys, int(np.ceil(test_size * len(y))))
            train = _before(keys, test, division.gap) & ~test
        _check_classes(y, rows[train], rows[test], test_size=test_size, labels=labels, task=task, how=division.kind)
        return rows[train], rows[test]
    if stratify is not None:
        rarest, count = _rarest(y, labels)
        if count < 2:
            raise QuestError(f"class {rarest!r} has a single row; the stratified split needs at least 2 per class")
        classes = np.unique(y)
        n_test = int(np.ceil(test_size * len(y)))
        if n_test < len(classes) or len(y) - n_test < len(classes):
            raise QuestError(
                f"prepare.test_size={test_size} leaves {n_test} test rows of {len(y)} for {len(classes)} classes; "
                "each split needs one row per class"
            )
    train, test = train_test_split(rows, test_size=test_size, random_state=seed, stratify=stratify)
    _check_classes(y, train, test, test_size=test_size, labels=labels, task=task, how="random")
    return np.sort(train), np.sort(test)


def _check_classes(
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    *,
    test_size: float,
    labels: tuple[str, ...],
    task: str,
    how: DivisionKind,
) -> None:
    """Stratification rounds, and whole groups or the latest rows may hold few classes: a class that misses a
    split cannot be learned or scored there."""
    if task != "classification":
        return
    for part, name in ((test, "test"), (train, "training")):
        for code in np.setdiff1d(np.unique(y), y[part]):
            label = _label(code, labels)
            split = {"random": "stratified ", "group": "grouped ", "time": "latest rows' "}[how]
            fix = "change prepare.test_size" if how != "group" else "change prepare.test_size or the seed"
            raise QuestError(
                f"prepare.test_size={test_size}: the {split}{name} split of {len(part)} rows holds no row of "
                f"class {label!r} ({int(np.sum(y == code))} of {len(y)} rows); {fix} or gather more rows of that "
                "class"
            )


def assign_folds(
    y: np.ndarray,
    *,
    task: str,
    folds: int,
    seed: int,
    repeats: int = 1,
    labels: tuple[str, ...] = (),
    division: Division = RANDOM,
) -> np.ndarray:
    """Fold number (0..folds-1) of every training row in each repeat, shape (repeats, rows); the MLP and every
    baseline use these same splits. By `division`: whole groups per fold, each repeat reshuffling them; or, in
    time, folds + 1 consecutive blocks, the earliest (-1) only ever training (`training_rows` says which rows
    train for a fold)."""
    from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold

    if len(y) < folds:
        raise QuestError(f"prepare.folds={folds} but the training split has only {len(y)} rows")
    if division.kind == "group":
        return _group_folds(y, division, task=task, folds=folds, seed=seed, repeats=repeats, labels=labels)
    if division.kind == "time":
        return _time_folds(y, division, task=task, folds=folds, labels=labels)
    if task == "classification":
        rarest, count = _rarest(y, labels)
        if count < folds:
            raise QuestError(
                f"prepare.folds={folds} but class {rarest!r} has only {count} training rows; "
                "lower prepare.folds or gather more data"
            )
        splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    else:
        splitter = RepeatedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    fold_of = np.empty((repeats, len(y)), dtype=np.int64)
    for split, (_, held_out) in enumerate(splitter.split(np.zeros(len(y)), y)):
        fold_of[split // folds, held_out] = split % folds
    return fold_of


def _group_folds(
    y: np.ndarray, division: Division, *, task: str, folds: int, seed: int, repeats: int, labels: tuple[str, ...]
) -> np.ndarray:
    """Whole groups per fold, stratified by class where the groups allow it; each repeat reshuffles them."""
    keys = division.keys
    assert keys is not None
    groups = len(np.unique(keys))
    if groups < folds:
        raise QuestError(
            f"prepare.folds={folds} but the training split holds only {groups} groups of prepare.split.column; "
            "each fold needs at least one: lower prepare.folds or gather more groups"
        )
    draws = np.random.default_rng(seed).integers(0, 2**31 - 1, size=repeats)
    fold_of = np.empty((repeats, len(y)), dtype=np.int64)
    for repeat, draw in enumerate(draws):
        for fold, held_out in enumerate(_group_splits(folds, y, keys, stratified=task == "classification",
                                                      seed=int(draw))):  # fmt: skip
            fold_of[repeat, held_out] = fold
        _check_fold_classes(y, fold_of[repeat], folds=folds, labels=labels, task=task, why="under the grouping")
    return fold_of


def _time_folds(y: np.ndarray, division: Division, *, task: str, folds: int, labels: tuple[str, ...]) -> np.ndarray:
    """Forward chaining: the rows in time order as folds + 1 consecutive blocks of (nearly) equal size; block 0
    (fold -1) only trains, block b + 1 is fold b, validated after training on every earlier block."""
    keys = division.keys
    assert keys is not None
    if len(y) < folds + 1 + division.gap:
        raise QuestError(
            f"prepare.folds={folds} with prepare.split.gap={division.gap} needs at least {folds + 1 + division.gap} "
            f"training rows in time; the training split has {len(y)}"
        )
    fold_of = np.empty((1, len(y)), dtype=np.int64)
    for block, rows in enumerate(np.array_split(np.argsort(keys, kind="stable"), folds + 1)):
        fold_of[0, rows] = block - 1
    for fold in range(folds):
        training = training_rows(fold_of[0], fold, division)
        if not training.any():
            raise QuestError(
                f"prepare.split.gap={division.gap} leaves fold {fold + 1} no earlier row to train on: lower the gap"
            )
        if task == "classification":
            for code in np.setdiff1d(np.unique(y), y[training]):
                label = _label(code, labels)
                raise QuestError(
                    f"prepare.split: class {label!r} has no row before fold {fold + 1} of {folds} in time, so that "
                    "fold cannot learn it: lower prepare.folds or start the table where every class has occurred"
                )
    _check_fold_classes(y, fold_of[0], folds=folds, labels=labels, task=task, why="in time")
    return fold_of


def _check_fold_classes(
    y: np.ndarray, fold_of: np.ndarray, *, folds: int, labels: tuple[str, ...], task: str, why: str
) -> None:
    """Every class in every fold's held-out rows, so that each fold can score it."""
    if task != "classification":
        return
    for fold in range(folds):
        for code in np.setdiff1d(np.unique(y), y[fold_of == fold]):
            label = _label(code, labels)
            raise QuestError(
                f"prepare.folds={folds}: class {label!r} ({int(np.sum(y == code))} training rows) cannot reach every "
                f"fold {why} (fold {fold + 1} holds none): lower prepare.folds or gather more rows of that class"
            )


def training_rows(fold_of: np.ndarray, fold: int, division: Division = RANDOM) -> np.ndarray:
    """Mask of the rows that train for `fold` of one repeat's `fold_of`: every other fold's, or in time only the
    earlier blocks', less the `gap` rows just before it."""
    held = fold_of == fold
    if division.kind != "time":
        return ~held
    assert division.keys is not None
    return _before(division.keys, held, division.gap) & (fold_of < fold)


def validation_split(
    y: np.ndarray, *, task: str, fraction: float, seed: int, division: Division = RANDOM
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of a training set into fit/validation rows, stratified when every class allows it: early
    stopping's validation slice and tuning's inner split. By `division`: whole groups in the validation slice
    (at least one), or the latest `fraction` of the rows, the `gap` rows before them in neither."""
    from sklearn.model_selection import train_test_split  # lazily: stages that only read schemas skip sklearn

    rows = np.arange(len(y))
    if division.kind != "random":
        keys = division.keys
        assert keys is not None
        if division.kind == "group":
            if len(np.unique(keys)) < 2:
                raise QuestError("a validation slice by group needs rows of two groups; these rows hold one")
            held = _first_group_fold(y, keys, task=task, fraction=fraction, seed=seed)
            return rows[~held], rows[held]
        held = _latest(keys, max(1, int(np.ceil(fraction * len(y)))))
        fit = _before(keys, held, division.gap) & ~held
        if not fit.any():
            raise QuestError(f"prepare.split.gap={division.gap} leaves no row before the validation slice to fit on")
        return rows[fit], rows[held]
    stratify = None
    if task == "classification":
        _, counts = np.unique(y, return_counts=True)
        n_validation = int(np.ceil(fraction * len(y)))
        if counts.min() >= 2 and n_validation >= len(counts) and len(y) - n_validation >= len(counts):
            stratify = y
    fit_rows, validation_rows = train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(fit_rows), np.sort(validation_rows)


def subsample(
    rows: np.ndarray, y: np.ndarray, fraction: float, *, task: str, seed: int, division: Division = RANDOM
) -> np.ndarray:
    """A seeded `fraction` of `rows`, stratified on `y` when every class can keep a member; sorted. By `division`
    (over the rows `y` indexes): a seeded `fraction` of the groups, whole; or in time the latest `fraction` of
    the rows, the history nearest to what they are validated on."""
    if fraction >= 1.0:
        return rows
    keep = max(2, round(fraction * len(rows)))
    rng = np.random.default_rng(seed)
    if division.kind == "time":
        assert division.keys is not None
        return np.sort(rows[_latest(division.keys[rows], keep)])
    if division.kind == "group":
        assert division.keys is not None
        groups = np.unique(division.keys[rows])
        chosen = rng.choice(groups, size=min(len(groups), max(2, round(fraction * len(groups)))), replace=False)
        return np.sort(rows[np.isin(division.keys[rows], chosen)])
    if task != "classification":
        return np.sort(rng.choice(rows, size=keep, replace=False))
    labels = y[rows]
    classes, counts = np.unique(labels, return_counts=True)
    # Per class, its share of `keep` (at least one row each), largest remainders first so the total is exact.
    exact = counts * keep / len(rows)
    share = np.maximum(1, np.floor(exact)).astype(int)
    for index in np.argsort(-(exact - np.floor(exact)), kind="stable"):
        if share.sum() >= keep:
            break
        share[index] += 1
    picked = [
        rng.choice(rows[labels == label], size=min(n, c), replace=False)
        for label, n, c in zip(classes, share, counts, strict=True)
    ]
    return np.sort(np.concatenate(picked))
