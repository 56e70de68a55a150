"""Every split quest makes, in one place: train/test, the shared CV folds, the validation slice that early
stopping and tuning score on, and the subsamples of the learning curves. All seeded; stratified by class
wherever every class can keep a member."""

from __future__ import annotations

import numpy as np

from quest.errors import QuestError


def _rarest(y: np.ndarray, labels: tuple[str, ...]) -> tuple[str, int]:
    """The least frequent class (by its label) and its row count."""
    classes, counts = np.unique(y, return_counts=True)
    code = int(classes[counts.argmin()])
    return (labels[code] if code < len(labels) else str(code)), int(counts.min())


def split_indices(
    y: np.ndarray, *, task: str, test_size: float, seed: int, labels: tuple[str, ...] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test split, stratified by class so both splits keep every class."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    stratify = y if task == "classification" else None
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
    # Stratification rounds: a rare class can still miss a split, which then cannot learn or score it.
    for part, name in ((test, "test"), (train, "training")) if stratify is not None else ():
        for code in np.setdiff1d(np.unique(y), y[part]):
            label = labels[code] if code < len(labels) else str(code)
            raise QuestError(
                f"prepare.test_size={test_size}: the stratified {name} split of {len(part)} rows holds no row of "
                f"class {label!r} ({int(np.sum(y == code))} of {len(y)} rows); change prepare.test_size or "
                "gather more rows of that class"
            )
    return np.sort(train), np.sort(test)


def assign_folds(
    y: np.ndarray, *, task: str, folds: int, seed: int, repeats: int = 1, labels: tuple[str, ...] = ()
) -> np.ndarray:
    """Fold number (0..folds-1) of every training row in each repeat, shape (repeats, rows); the MLP and every
    baseline use these same splits."""
    from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold

    if len(y) < folds:
        raise QuestError(f"prepare.folds={folds} but the training split has only {len(y)} rows")
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


def validation_split(y: np.ndarray, *, task: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of a training set into fit/validation rows, stratified when every class allows it: early
    stopping's validation slice and tuning's inner split."""
    from sklearn.model_selection import train_test_split  # lazily: stages that only read schemas skip sklearn

    rows = np.arange(len(y))
    stratify = None
    if task == "classification":
        _, counts = np.unique(y, return_counts=True)
        n_validation = int(np.ceil(fraction * len(y)))
        if counts.min() >= 2 and n_validation >= len(counts) and len(y) - n_validation >= len(counts):
            stratify = y
    fit_rows, validation_rows = train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(fit_rows), np.sort(validation_rows)


def subsample(rows: np.ndarray, y: np.ndarray, fraction: float, *, task: str, seed: int) -> np.ndarray:
    """A seeded `fraction` of `rows`, stratified on `y` when every class can keep a member; sorted."""
    if fraction >= 1.0:
        return rows
    keep = max(2, round(fraction * len(rows)))
    rng = np.random.default_rng(seed)
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
