"""Column kinds and the preprocessing pipeline, fitted on the training split only."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from quest.data.artifacts import Column, ColumnKind

MISSING_CATEGORY = "__missing__"  # missing categorical values become a category of their own: often informative


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
        columns.append(Column(str(name), kind, categories))
    return tuple(columns)


def to_model_frame(features: pd.DataFrame, columns: tuple[Column, ...]) -> pd.DataFrame:
    """Cast each column to the dtype its branch of the preprocessor expects."""
    out = {}
    for column in columns:
        values = features[column.name]
        if column.kind == "categorical":
            out[column.name] = values.astype(object).where(values.notna(), MISSING_CATEGORY).astype(str)
        else:  # numeric and boolean: floats with NaN for missing, imputed by the preprocessor
            mapped = values.map({True: 1.0, False: 0.0}) if column.kind == "boolean" else values
            out[column.name] = pd.to_numeric(mapped, errors="coerce").astype(float)
    return pd.DataFrame(out, index=features.index)


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


def fit_transform(
    train: pd.DataFrame, test: pd.DataFrame, columns: tuple[Column, ...]
) -> tuple[ColumnTransformer, np.ndarray, np.ndarray]:
    """Fit on `train` only, then transform both splits to float32 model inputs."""
    preprocessor = build_preprocessor(columns)
    x_train = preprocessor.fit_transform(to_model_frame(train, columns))
    x_test = preprocessor.transform(to_model_frame(test, columns))
    return preprocessor, np.asarray(x_train, dtype=np.float32), np.asarray(x_test, dtype=np.float32)
