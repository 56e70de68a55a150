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
WHEN_NAME = re.compile(r"(^|[^a-z])(date|datetime|timestamp)s?([^a-z]|$)", re.IGNORECASE)
YEAR_NAME = re.compile(r"(^|[^a-z])years?([^a-z]|$)", re.IGNORECASE)
# A name that says identifier: id, student_id, idNum, userId (not valid, idea or width).
ID_NAME = re.compile(r"(^|[^A-Za-z])(id|ID|Id)([^a-z]|$)|[a-z](Id|ID)([^a-z]|$)")
MIN_IDENTIFIERS = 20  # an identifier's values, at least: fewer is a code (a shift, a ward)
REPEATS = 1.5  # and its rows per value on average, at least: an identifier seen once a row is left out (prepare)
DATE_TEXT = re.compile(r"^\s*(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4})([ T]\d{1,2}:\d{2}(:\d{2})?.*)?\s*$")


def notices(
    features: pd.DataFrame, target: pd.Series, *, task: str, train_rows: np.ndarray, test_rows: np.ndarray
) -> list[str]:
    """What prepare says after a random split, each a sentence naming the column and the setting that fits."""
    found, times = [], []
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
        elif _identifier_like(column, values):
            found.append(
                f"column {column!r} looks like an identifier that repeats ({values.nunique()} values, "
                f"{values.notna().sum() / values.nunique():.1f} rows each on average): if rows that share a value are "
                "one student, customer or machine, a random split puts it on both sides and flatters every score; "
                f"set prepare.split.kind: group and prepare.split.column: {column}"
            )
        elif _time_like(column, values):
            times.append(str(column))
    if times:
        which = (
            f"column {times[0]!r} looks like a time stamp"
            if len(times) == 1
            else f"columns {', '.join(map(repr, times))} look like time stamps"
        )
        found.append(
            f"{which}: if the model will be used on rows later than these, a random split lets the future train "
            f"for the past; set prepare.split.kind: time and prepare.split.column: "
            + (times[0] if len(times) == 1 else "the one that says when a row was recorded")
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


def _identifier_like(column: object, values: pd.Series) -> bool:
    """Whole numbers or text under an identifier's name, many values, each on a few rows on average."""
    present = values.dropna()
    if not ID_NAME.search(str(column)) or present.empty or pd.api.types.is_bool_dtype(values):
        return False
    if pd.api.types.is_numeric_dtype(values) and not np.all(np.mod(present.to_numpy(dtype=float), 1) == 0):
        return False
    distinct = present.nunique()
    return bool(distinct >= MIN_IDENTIFIERS and len(present) >= REPEATS * distinct)


def _time_like(column: object, values: pd.Series) -> bool:
    """Dates, text that reads as dates, or numbers under a name that says when (date, timestamp) or years (a
    `year` name over whole numbers from 1900 to 2100). A duration (`Time`, `months`, `total_day_minutes`) is
    not a time stamp."""
    present = values.dropna()
    if present.empty:
        return False
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    text = present.head(100).astype(str)
    if text.map(lambda value: bool(DATE_TEXT.match(value))).mean() >= 0.95:
        return True
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    name = str(column)
    if WHEN_NAME.search(name):
        return present.nunique() >= MIN_VALUES
    numbers = present.to_numpy(dtype=float)
    years = bool(np.all(np.mod(numbers, 1) == 0) and numbers.min() >= 1900 and numbers.max() <= 2100)
    return bool(YEAR_NAME.search(name)) and years and present.nunique() >= 2


def _repeated(features: pd.DataFrame, train_rows: np.ndarray, test_rows: np.ndarray) -> int:
    """Test rows equal in every feature (missing equal to missing) to exactly one training row, and distinctive:
    some value of theirs occurs in no third row of the table, so chance would not have repeated it (two readings
    of one record). A profile many rows share (a third-class passenger of unknown age), or a row of coarse codes
    only, is not counted: a table of those repeats rows by chance."""
    if features.shape[1] == 0:
        return 0
    hashes = pd.util.hash_pandas_object(features, index=False).to_numpy()
    seen = pd.Series(hashes[train_rows]).value_counts()
    copies = test_rows[(pd.Series(hashes[test_rows]).map(seen) == 1).to_numpy()]
    if len(copies) == 0:
        return 0
    distinctive = np.zeros(len(copies), dtype=bool)
    for column in features.columns:
        values = features[column]
        counts = values.map(values.value_counts(dropna=True)).to_numpy()
        distinctive |= np.nan_to_num(counts[copies].astype(float), nan=np.inf) <= 2
    return int(distinctive.sum())
