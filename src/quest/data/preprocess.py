"""Column kinds and the preprocessing, fitted on the training split only: scikit-learn's imputers, scaler and
one-hot encoder learn it, and what they learned is kept as numbers (quest.data.artifacts.Preprocessing)."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from quest.data.artifacts import Column, ColumnKind, Feature, Preprocessing, to_model_frame


def column_kind(values: pd.Series) -> ColumnKind:
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if pd.api.types.is_numeric_dtype(values):
        return "numeric"
    present = values.dropna()
    if len(present) and present.isin([True, False]).all():  # booleans with gaps are read as objects
        return "boolean"
    return "categorical"


def infer_columns(features: pd.DataFrame) -> tuple[Column, ...]:
    """Kinds from the training split; categories as seen there (unseen test values are ignored at encoding)."""
    columns = []
    for name in features.columns:
        kind = column_kind(features[name])
        categories: tuple[str, ...] = ()
        if kind == "categorical":
            categories = tuple(sorted(to_model_frame(features[[name]], (Column(name, kind),))[name].unique()))
        whole = kind == "numeric" and pd.api.types.is_integer_dtype(features[name])
        columns.append(Column(str(name), kind, categories, whole))
    return tuple(columns)


def build_preprocessor(columns: tuple[Column, ...]) -> ColumnTransformer:
    """Impute + scale numerics, impute booleans, one-hot encode categoricals (unknown values -> all zeros)."""
    by_kind = {kind: [c.name for c in columns if c.kind == kind] for kind in ("numeric", "boolean", "categorical")}
    categories = [list(c.categories) for c in columns if c.kind == "categorical"]
    transformers = [
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), by_kind["numeric"]),
        ("boolean", SimpleImputer(strategy="most_frequent"), by_kind["boolean"]),
        (
            "categorical",
            OneHotEncoder(categories=categories or "auto", handle_unknown="ignore", sparse_output=False),
            by_kind["categorical"],
        ),
    ]
    return ColumnTransformer(
        [(name, step, cols) for name, step, cols in transformers if cols],
        verbose_feature_names_out=True,
    )


def fit_preprocessing(train: pd.DataFrame, columns: tuple[Column, ...]) -> Preprocessing:
    """Fit scikit-learn's preprocessor on the training split only, and keep what it learned as numbers."""
    # A column without a value in the training split teaches nothing: it is left out (and said so below).
    fitted = tuple(c for c in columns if train[c.name].notna().any())
    if not fitted:
        return Preprocessing(columns=columns, features=())
    with warnings.catch_warnings():  # said once below, in quest's words
        warnings.filterwarnings("ignore", message="Skipping features without any observed values")
        transformer = build_preprocessor(fitted).fit(to_model_frame(train, fitted))
    names = iter(str(name) for name in transformer.get_feature_names_out())
    features: list[Feature] = []
    for kind, step, names_in in transformer.transformers_:
        if kind == "numeric":
            imputer, scaler = step[0], step[1]
            kept = [c for c, median in zip(names_in, imputer.statistics_, strict=True) if not np.isnan(median)]
            medians = [median for median in imputer.statistics_ if not np.isnan(median)]
            for column, median, mean, scale in zip(kept, medians, scaler.mean_, scaler.scale_, strict=True):
                features.append(Feature(next(names), column, "numeric", float(median), float(mean), float(scale)))
        elif kind == "boolean":
            for column, fill in zip(names_in, step.statistics_, strict=True):
                if not np.isnan(fill):  # a column with no value in training is dropped, as scikit-learn does
                    features.append(Feature(next(names), column, "boolean", fill=float(fill)))
        elif kind == "categorical":
            for column, categories in zip(names_in, step.categories_, strict=True):
                features.extend(Feature(next(names), column, "categorical", category=str(c)) for c in categories)
    if next(names, None) is not None:
        raise RuntimeError("the preprocessor made features fit_preprocessing did not account for")  # a bug here
    for column in columns:
        if column.name not in {feature.column for feature in features}:
            print(
                f"quest: notice: column {column.name!r} has no value in the training split and is ignored",
                file=sys.stderr,
            )
    return Preprocessing(columns=columns, features=tuple(features))
