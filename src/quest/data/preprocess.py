"""The preprocessing, fitted on the training split only: scikit-learn's imputers, scaler and one-hot encoder
learn it, and what they learned is kept as numbers (quest.data.artifacts.Preprocessing). quest.data.columns has
typed the columns first."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from quest.data.artifacts import DATE_PARTS, OTHER_CATEGORY, Column, Feature, Preprocessing, date_part, to_model_frame


def build_preprocessor(columns: tuple[Column, ...], date_parts: list[str]) -> ColumnTransformer:
    """Impute + scale numerics and dates' parts, impute booleans, one-hot encode categoricals with few values
    (unknown values -> all zeros)."""
    by_kind = {kind: [c.name for c in columns if c.kind == kind] for kind in ("numeric", "boolean")}
    few = [c for c in columns if c.kind == "categorical" and not c.grouped]
    transformers = [
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), by_kind["numeric"]),
        ("boolean", SimpleImputer(strategy="most_frequent"), by_kind["boolean"]),
        (
            "categorical",
            OneHotEncoder(categories=[list(c.categories) for c in few] or "auto", handle_unknown="ignore",
                          sparse_output=False),
            [c.name for c in few],
        ),
        ("datetime", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), date_parts),
    ]  # fmt: skip
    return ColumnTransformer(
        [(name, step, cols) for name, step, cols in transformers if cols],
        verbose_feature_names_out=True,
    )


def varying_parts(frame: pd.DataFrame, columns: tuple[Column, ...]) -> dict[str, tuple[str, str, np.ndarray]]:
    """Each date column's parts that vary in the training split (a year alone, or times all at midnight, teach
    nothing), as part-column name -> (column, part, its values)."""
    found = {}
    for column in columns:
        if column.kind != "datetime":
            continue
        for part in DATE_PARTS:
            values = date_part(frame[column.name].to_numpy(), part)
            if np.unique(values[~np.isnan(values)]).size > 1:
                found[f"{column.name}_{part}"] = (column.name, part, values)
    return found


def fit_preprocessing(train: pd.DataFrame, columns: tuple[Column, ...]) -> Preprocessing:
    """Fit scikit-learn's preprocessor on the training split only, and keep what it learned as numbers. The
    columns come typed (quest.data.columns.type_columns), each with a value in the training split."""
    frame = to_model_frame(train, columns)
    parts = varying_parts(frame, columns)
    for name, (_, _, values) in parts.items():
        frame[name] = values
    transformer = build_preprocessor(columns, list(parts)).fit(frame)
    names = iter(str(name) for name in transformer.get_feature_names_out())
    features: list[Feature] = []
    for kind, step, names_in in transformer.transformers_:
        if kind in ("numeric", "datetime"):
            imputer, scaler = step[0], step[1]
            for name, median, mean, scale in zip(names_in, imputer.statistics_, scaler.mean_, scaler.scale_,
                                                 strict=True):  # fmt: skip
                column, part, _ = parts.get(name, (name, "", None))
                features.append(Feature(next(names), column, kind, float(median), float(mean), float(scale), part=part))
        elif kind == "boolean":
            fills = zip(names_in, step.statistics_, strict=True)
            features.extend(Feature(next(names), column, "boolean", fill=float(fill)) for column, fill in fills)
        elif kind == "categorical":
            for column, categories in zip(names_in, step.categories_, strict=True):
                features.extend(Feature(next(names), column, "categorical", category=str(c)) for c in categories)
    if next(names, None) is not None:
        raise RuntimeError("the preprocessor made features fit_preprocessing did not account for")  # a bug here
    for column in columns:  # many-valued: one input per kept value and one the others share
        if column.kind == "categorical" and column.grouped:
            features.extend(
                Feature(f"categorical__{column.name}_{value}", column.name, "categorical", category=value)
                for value in column.categories
            )
            features.append(
                Feature(f"categorical__{column.name}_{OTHER_CATEGORY}", column.name, "other", kept=column.categories)
            )
    return Preprocessing(columns=columns, features=tuple(features))
