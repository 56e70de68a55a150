"""What each column of the training split is, typed as the field's table tools type it (AutoGluon's feature
generators, skrub's TableVectorizer): numeric, boolean, categorical with few values or with many, a date or time,
free text, or a column left out because it cannot generalise to new rows (unique per row, or one value only).
Typing reads the training split only, like every fitted step of prepare; data.keep overrides a left-out verdict."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quest.data.artifacts import Column, Feature, Preprocessing, date_seconds, to_model_frame

# Past this many distinct training values a categorical column is many-valued: skrub's TableVectorizer's
# cardinality_threshold, under which it one-hot encodes and over which it takes an encoder made for many values.
MANY_VALUES = 40
# A many-valued column keeps its this-many-minus-one most frequent values, each seen at least GROUPED_MIN_ROWS
# times, as inputs of their own; every other value (rare or unseen) shares one input (OneHotEncoder's infrequent).
GROUPED_MAX_CATEGORIES = 32
GROUPED_MIN_ROWS = 10
# A text column reads as a date when at least this share of its present values parse in one format.
DATE_SHARE = 0.95
# Free text: a many-valued column whose values are mostly distinct and run to several words.
TEXT_WORDS = 5
TEXT_DISTINCT = 0.5
# A row number: whole numbers, distinct in every row, spanning at most this many times the table's rows (the
# row numbers of a filtered export keep gaps).
ROW_NUMBER_SPAN = 2.0
NO_VALUE = "has no value in the training split"  # the one reason data.keep cannot override
ISO_DATE = re.compile(r"^\s*\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?\s*$")


@dataclass(frozen=True)
class LeftOut:
    """A column that is no model input, and why, in a few words a notice and the report use."""

    name: str
    why: str
    read_as: str = ""  # the column's type as quest read it, for the report


def type_columns(
    train: pd.DataFrame, *, rows: int, keep: tuple[str, ...] = ()
) -> tuple[tuple[Column, ...], tuple[LeftOut, ...]]:
    """The training split's columns typed, and those left out: without a value, with one value only, unique per
    row (an identifier, a row number) or free text. `rows` is the table's whole row count; `keep` names columns
    that stay inputs whatever they look like."""
    columns: list[Column] = []
    left_out: list[LeftOut] = []
    for name in train.columns:
        values = train[name]
        column = type_column(str(name), values)
        if values.isna().all():  # nothing to learn from, kept or not
            why: str | None = NO_VALUE
        else:
            why = None if name in keep else left_out_because(column, values, rows=rows)
        if why is None:
            columns.append(column)
        else:
            left_out.append(LeftOut(str(name), why, _read_as(column)))
    return tuple(columns), tuple(left_out)


def type_column(name: str, values: pd.Series) -> Column:
    """One column's kind, with what its encoding needs: a categorical column's training values (its most
    frequent ones when many-valued), a date column's format."""
    if pd.api.types.is_bool_dtype(values):
        return Column(name, "boolean")
    if pd.api.types.is_numeric_dtype(values):
        return Column(name, "numeric", whole=pd.api.types.is_integer_dtype(values))
    present = values.dropna()
    if len(present) and present.isin([True, False]).all():  # booleans with gaps are read as objects
        return Column(name, "boolean")
    if pd.api.types.is_datetime64_any_dtype(values):
        return Column(name, "datetime", date_format="ISO8601")
    date_format = find_date_format(present)
    if date_format is not None:
        return Column(name, "datetime", date_format=date_format)
    text = to_model_frame(values.to_frame(name), (Column(name, "categorical"),))[name]
    counts = text.value_counts()
    if len(counts) <= MANY_VALUES:
        return Column(name, "categorical", tuple(sorted(counts.index)))
    return Column(name, "categorical", frequent_values(counts), grouped=True)


def frequent_values(counts: pd.Series) -> tuple[str, ...]:
    """The values a many-valued column keeps as inputs of their own, sorted: scikit-learn's OneHotEncoder with
    max_categories and min_frequency, fitted on the training values' counts, chooses them."""
    from sklearn.preprocessing import OneHotEncoder

    encoder = OneHotEncoder(
        max_categories=GROUPED_MAX_CATEGORIES, min_frequency=GROUPED_MIN_ROWS, handle_unknown="infrequent_if_exist"
    )
    values = np.repeat(counts.index.to_numpy(dtype=object), counts.to_numpy()).reshape(-1, 1)
    encoder.fit(values)
    infrequent = set(encoder.infrequent_categories_[0] if encoder.infrequent_categories_[0] is not None else ())
    return tuple(sorted(str(value) for value in encoder.categories_[0] if value not in infrequent))


def find_date_format(present: pd.Series) -> str | None:
    """The one format that reads (nearly) every present value as a date or time: ISO 8601 for its strings, else
    the format pandas guesses from the first value (`01/31/2019 10:22` -> %m/%d/%Y %H:%M); None for other text."""
    if present.empty or not pd.api.types.is_object_dtype(present) and not pd.api.types.is_string_dtype(present):
        return None
    first = str(present.iloc[0])
    if ISO_DATE.match(first):
        date_format = "ISO8601"
    else:
        from pandas.tseries.api import guess_datetime_format

        date_format = guess_datetime_format(first.strip())
        if date_format is None or not any(code in date_format for code in ("%d", "%H")):
            return None  # a year or a month alone (2019, 2019-01) is a number or a category, not a time stamp
    read = ~np.isnan(date_seconds(present, date_format))
    return date_format if read.mean() >= DATE_SHARE else None


def left_out_because(column: Column, values: pd.Series, *, rows: int) -> str | None:
    """Why a typed column cannot generalise to new rows, or None when it can."""
    present = values.dropna()
    distinct = int(present.nunique())
    if column.kind == "categorical":
        distinct += int(values.isna().any())  # a missing value is a category of its own
    if distinct <= 1:
        return "holds one value only in the training split"
    if column.kind == "categorical" and column.grouped:
        if _text_like(present):
            return (
                f"is free text ({distinct} distinct values, {TEXT_WORDS} words or more each as a rule): quest reads "
                "no text, and one input per value would not generalise"
            )
        if distinct == len(values) and distinct == len(present):
            return f"is unique per row ({distinct} distinct values in as many rows): an identifier"
    if column.kind == "numeric" and distinct > MANY_VALUES and distinct == len(values) == len(present):
        numbers = present.to_numpy(dtype=float)
        span = numbers.max() - numbers.min() + 1
        if np.all(np.mod(numbers, 1) == 0) and span <= ROW_NUMBER_SPAN * rows:
            return f"is unique per row and counts the rows (whole numbers from {numbers.min():g} to {numbers.max():g})"
    return None


def _text_like(present: pd.Series) -> bool:
    text = present.astype(str)
    words = text.str.split().str.len()
    return bool(words.median() >= TEXT_WORDS and text.nunique() >= TEXT_DISTINCT * len(text))


def profile(
    train: pd.DataFrame, target: pd.Series, preprocessing: Preprocessing, left_out: tuple[LeftOut, ...], *, task: str
) -> dict:
    """What a person checks before trusting the models, per column of the training split: its type as quest read
    it, what it became, its missing values and distinct values; and the target's balance (classes) or spread."""
    why = {column.name: column for column in left_out}
    typed = {column.name: column for column in preprocessing.columns}
    inputs: dict[str, list] = {}
    for feature in preprocessing.features:
        inputs.setdefault(feature.column, []).append(feature)
    rows = []
    for name in train.columns:
        values, column, made = train[name], typed.get(str(name)), inputs.get(str(name), [])
        rows.append({
            "column": str(name),
            "read_as": why[str(name)].read_as if column is None else _read_as(column),
            "became": f"left out: {why[str(name)].why}" if column is None else _became(column, made),
            "inputs": len(made),
            "missing": int(values.isna().sum()),
            "distinct": int(values.nunique()),
        })  # fmt: skip
    return {"rows": len(train), "columns": rows, "target": _target_summary(target, task=task)}


def _read_as(column: Column) -> str:
    if column.kind == "categorical":
        return "categorical, many values" if column.grouped else "categorical"
    if column.kind == "datetime":
        return f"date and time ({column.date_format})"
    return "numeric, whole numbers" if column.whole else column.kind


def _became(column: Column, features: list[Feature]) -> str:
    if column.kind == "datetime":
        return f"{len(features)} inputs: " + ", ".join(feature.part for feature in features) + ", standardised"
    if column.kind == "categorical" and column.grouped:
        return (
            f"{len(features)} inputs: one for each of its {len(column.categories)} most frequent values, one shared "
            "by every other value (rare or unseen)"
        )
    if column.kind == "categorical":
        return f"one-hot: {len(features)} inputs (a value unseen in training: all zeros)"
    if column.kind == "boolean":
        return "1 input, 0 or 1 (a gap takes the most frequent)"
    return "1 input, standardised (a gap takes the median)"


def _target_summary(target: pd.Series, *, task: str) -> dict:
    if task == "classification":
        counts = target.astype(str).value_counts().sort_index()
        return {"name": str(target.name), "classes": {str(label): int(count) for label, count in counts.items()}}
    numbers = target.to_numpy(dtype=float)
    return {
        "name": str(target.name),
        **{stat: float(getattr(np, stat)(numbers)) for stat in ("mean", "std", "min", "max")},
    }
