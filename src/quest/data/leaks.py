"""Signs that a random split would flatter the scores, for prepare to say in one line each: a column that looks
like a group identifier (many rows per value, the target nearly constant within a value), a column that looks
like a time stamp, and test rows that are exact copies of a training row. Each names the `prepare.split` that would
divide the rows honestly; none is an error, as quest cannot know how the rows were collected."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

MIN_VALUES = 5  # fewer distinct values is a category (a sex, a class), not an identifier
MIN_ROWS_PER_VALUE = 3  # fewer rows per value on average and a value's target is constant by chance
PURE = 0.9  # classification: the share of rows whose class is their value's most frequent one, at least this
GAIN = 0.2  # and at least this much above the share of the most frequent class overall
EXPLAINED = 0.95  # regression: the share of the target's variance that the values' means explain, at least this
DUPLICATES = 0.05  # the share of test rows that are copies of one training row each, at least this (and 2 rows)
TIME_NAME = re.compile(r"(^|[^a-z])(date|time|timestamp|datetime|year|month|week|day)s?([^a-z]|$)", re.IGNORECASE)
DATE_TEXT = re.compile(r"^\s*(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4})([ T]\d{1,2}:\d{2}(:\d{2})?.*)?\s*$")


def notices(
    features: pd.DataFrame, target: pd.Series, *, task: str, train_rows: np.ndarray, test_rows: np.ndarray
) -> list[str]:
    """What prepare says after a random split, each a sentence naming the column and the setting that fits."""
    found = []
    for column in features.columns:
        values = features[column]
        if _group_like(values, target, task=task):
            found.append(
                f"column {column!r} looks like a group identifier ({values.nunique()} values, "
                f"{values.notna().sum() / values.nunique():.0f} rows each on average, the target nearly constant "
                "within each): a random split puts rows of one group on both sides and flatters every score; if "
                f"they are one customer, patient or machine, set prepare.split.kind: group and prepare.split.column: "
                f"{column}"
            )
        elif _time_like(column, values):
            found.append(
                f"column {column!r} looks like a time stamp: if the model will be used on rows later than these, a "
                f"random split lets the future train for the past; set prepare.split.kind: time and "
                f"prepare.split.column: {column}"
            )
    repeated = _repeated(features, train_rows, test_rows)
    if repeated >= max(2, DUPLICATES * len(test_rows)):
        found.append(
            f"{repeated} of {len(test_rows)} test rows ({repeated / len(test_rows):.1%}) are each an exact copy of "
            "one training row in every feature: if each pair is one entity seen twice, the test scores are "
            "flattered; set prepare.split.kind: group with the column that identifies it"
        )
    return found


def _group_like(values: pd.Series, target: pd.Series, *, task: str) -> bool:
    """Integer or text values, several rows each, that all but fix the target. Measurements (numbers with a
    fraction) are never identifiers, however often a value repeats."""
    present = values.notna()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if pd.api.types.is_bool_dtype(values) or present.sum() == 0:
        return False
    if numeric and not np.all(np.mod(values[present].to_numpy(dtype=float), 1) == 0):
        return False
    distinct = values[present].nunique()
    if distinct < MIN_VALUES or present.sum() < MIN_ROWS_PER_VALUE * distinct:
        return False
    keys, outcome = values[present].astype(str), target[present]
    if task == "classification":
        counts = pd.crosstab(keys, outcome)
        purity = counts.max(axis=1).sum() / counts.to_numpy().sum()
        base = outcome.value_counts(normalize=True).iloc[0]
        return bool(purity >= PURE and purity - base >= GAIN)
    numbers = outcome.to_numpy(dtype=float)
    total = float(np.var(numbers))
    if total == 0:
        return False
    means = pd.Series(numbers, index=keys.index).groupby(keys).transform("mean").to_numpy()
    return bool(1 - float(np.var(numbers - means)) / total >= EXPLAINED)


def _time_like(column: object, values: pd.Series) -> bool:
    """A date-like name over numbers or dates, or text that reads as dates."""
    present = values.dropna()
    if present.empty:
        return False
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    text = present.head(100).astype(str)
    if text.map(lambda value: bool(DATE_TEXT.match(value))).mean() >= 0.95:
        return True
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return bool(TIME_NAME.search(str(column))) and numeric and present.nunique() >= MIN_VALUES


def _repeated(features: pd.DataFrame, train_rows: np.ndarray, test_rows: np.ndarray) -> int:
    """Test rows equal in every feature (missing equal to missing) to exactly one training row: a copy of one
    record. A row that many training rows share is a common profile (a third-class passenger of unknown age),
    not a copy, and is not counted."""
    if features.shape[1] == 0:
        return 0
    hashes = pd.util.hash_pandas_object(features, index=False).to_numpy()
    seen = pd.Series(hashes[train_rows]).value_counts()
    return int((pd.Series(hashes[test_rows]).map(seen) == 1).sum())
