"""What prepare hands to the later stages and to the served model: the schema it decided on, the fitted
preprocessing (plain numbers in JSON: nothing to unpickle), and the processed arrays, read back."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from quest.core import paths
from quest.core.errors import QuestError, first_line
from quest.core.files import read_json, require
from quest.data.splits import RANDOM, Division, training_rows

if TYPE_CHECKING:
    import pandas as pd

ColumnKind = Literal["numeric", "boolean", "categorical", "datetime"]
# A model input's kind: a column's own, or `other` for the one input a many-valued column's rarer values share.
FeatureKind = Literal["numeric", "boolean", "categorical", "other", "datetime"]
MISSING_CATEGORY = "__missing__"  # missing categorical values become a category of their own: often informative
OTHER_CATEGORY = "__other__"  # a many-valued column's input for every value it keeps no input for
# What a date or time column becomes: its calendar parts and the time itself (seconds since 1970), as skrub's
# DatetimeEncoder makes them; the hour only where the training split's times are not all midnight.
DATE_PARTS = ("year", "month", "day", "weekday", "hour", "seconds")
LABEL, PREDICTION, PROBABILITY = "label", "prediction", "probability_"  # the model's answers for a raw row


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    categories: tuple[str, ...] = ()  # categorical columns: the values seen in the training split (grouped: kept)
    whole: bool = False  # numeric columns: whole numbers without a gap in training (an integer dtype)
    grouped: bool = False  # categorical columns: many-valued, the values not in `categories` share one input
    date_format: str = ""  # datetime columns: the format its text is read in (ISO8601 or a strptime format)

    def to_dict(self) -> dict:
        """Its fields, the newer ones only where they are set: a table without them writes what it always did."""
        found = asdict(self)
        for key in ("grouped", "date_format"):
            if not found[key]:
                del found[key]
        return found

    @classmethod
    def from_dict(cls, raw: dict) -> Column:
        return cls(
            raw["name"], raw["kind"], tuple(raw["categories"]), raw.get("whole", False), raw.get("grouped", False),
            raw.get("date_format", ""),
        )  # fmt: skip


@dataclass(frozen=True)
class Split:
    """How prepare divided the rows when not at random (prepare.split): by the groups or in the time order of
    `column`."""

    kind: Literal["group", "time"]
    column: str
    gap: int = 0  # time: rows left out between each training part and the rows it is validated on
    groups: int = 0  # group: the groups in the training split

    def describe(self) -> str:
        """In a few words, for the report and the stage's line."""
        if self.kind == "group":
            return (
                f"by group of `{self.column}` ({self.groups} groups in training; no group on both sides of any "
                "split, the test split included)"
            )
        gap = f", {self.gap} rows apart" if self.gap else ""
        return f"in time by `{self.column}` (each fold trains on the past only{gap}; the test split is the latest rows)"


@dataclass(frozen=True)
class Schema:
    """What prepare decided about the table; saved beside the processed data and read by later stages."""

    dataset: str
    source: str
    task: Literal["classification", "regression"]
    target: str
    class_labels: tuple[str, ...]  # classification: label of encoded class i; empty for regression
    columns: tuple[Column, ...]
    features: tuple[str, ...]  # model input names, after one-hot encoding
    n_train: int
    n_test: int
    folds: int
    repeats: int
    split: Split | None = None  # None: at random (prepare.split.kind random), as every table was before it
    sampled_from: int | None = None  # the training split's rows before prepare.max_train_rows sampled it; None: not
    left_out: tuple[tuple[str, str], ...] = ()  # (column, why) of every column that is no model input

    @property
    def rows(self) -> int:
        """The table's rows, test and training split, before any sample of the training split."""
        return (self.sampled_from or self.n_train) + self.n_test

    @property
    def n_columns(self) -> int:
        """The table's feature columns, model inputs or left out."""
        return len(self.columns) + len(self.left_out)

    @property
    def columns_text(self) -> str:
        """The table's feature columns in a few words: `30 columns`, `14 columns (3 left out)`."""
        left_out = f" ({len(self.left_out)} left out)" if self.left_out else ""
        return f"{self.n_columns} columns{left_out}"

    @property
    def folds_text(self) -> str:
        """The folds in a few words: `5 folds x 3 repeats`, or `5 folds` when they are drawn once."""
        return f"{self.folds} folds x {self.repeats} repeats" if self.repeats > 1 else f"{self.folds} folds"

    @property
    def split_param(self) -> str:
        """How the rows were split, as every MLflow run records it: random, group:<column> or time:<column>
        (with +gap<rows> where a gap is set)."""
        if self.split is None:
            return "random"
        gap = f"+gap{self.split.gap}" if self.split.gap else ""
        return f"{self.split.kind}:{self.split.column}{gap}"

    def to_dict(self) -> dict:
        found = {**asdict(self), "columns": [column.to_dict() for column in self.columns]}
        if not self.left_out:  # nor one without a left-out column
            del found["left_out"]
        if self.split is None:  # a random split's schema.json is byte for byte what it was before prepare.split
            del found["split"]
        if self.sampled_from is None:  # and an unsampled one what it was before prepare.max_train_rows
            del found["sampled_from"]
        return found

    def outputs(self) -> list[str]:
        """What the model answers for a raw row: its label and one probability per class, or its value."""
        if self.task == "regression":
            return [PREDICTION]
        return [LABEL, *(f"{PROBABILITY}{label}" for label in self.class_labels)]

    def feature_columns(self) -> tuple[tuple[ColumnKind, str], ...]:
        """Per model input, the kind and name of the raw column it comes from: a categorical column's one-hot
        inputs share its name (the preprocessing names them kind__column or categorical__column_category, the
        shared input of a many-valued column's other values categorical__column___other__); a date's parts are
        numbers."""
        categorical = [c for c in self.columns if c.kind == "categorical"]
        found: list[tuple[ColumnKind, str]] = []
        for name in self.features:
            kind, _, rest = name.partition("__")
            if kind == "categorical":
                owners = [c.name for c in categorical if rest.startswith(f"{c.name}_") and rest[len(c.name) + 1 :]
                          in (*c.categories, OTHER_CATEGORY)]  # fmt: skip
                found.append(("categorical", max(owners, key=len) if owners else rest))
            else:
                found.append(("boolean" if kind == "boolean" else "numeric", rest))
        return tuple(found)

    @classmethod
    def from_dict(cls, raw: dict) -> Schema:
        columns = tuple(Column.from_dict(c) for c in raw["columns"])
        fields = {**raw, "columns": columns}
        for key in ("class_labels", "features"):
            fields[key] = tuple(raw[key])
        if raw.get("split") is not None:
            fields["split"] = Split(**raw["split"])
        fields["left_out"] = tuple(tuple(pair) for pair in raw.get("left_out", ()))
        return cls(**fields)


def to_model_frame(features: pd.DataFrame, columns: tuple[Column, ...]) -> pd.DataFrame:
    """Each column cast as its kind is preprocessed: floats with NaN for missing (numeric and boolean, True
    as 1.0), strings for categoricals with missing values as MISSING_CATEGORY, and dates as seconds since 1970
    (NaN where missing or unreadable in the column's format)."""
    import pandas as pd

    out = {}
    for column in columns:
        values = features[column.name]
        if column.kind == "categorical":
            out[column.name] = values.astype(object).where(values.notna(), MISSING_CATEGORY).astype(str)
        elif column.kind == "datetime":
            out[column.name] = date_seconds(values, column.date_format)
        else:  # numeric and boolean: floats with NaN for missing, imputed by the preprocessing
            mapped = values.map({True: 1.0, False: 0.0}) if column.kind == "boolean" else values
            out[column.name] = pd.to_numeric(mapped, errors="coerce").astype(float)
    return pd.DataFrame(out, index=features.index)


def date_seconds(values: pd.Series, date_format: str) -> np.ndarray:
    """Dates and times in `date_format` (ISO8601 or a strptime format; time zones read as UTC) as float seconds
    since 1970, NaN where a value is missing or does not parse."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    else:
        text = values.astype("string").str.strip()
        parsed = pd.to_datetime(text, format=date_format, errors="coerce", utc=True)
    nanoseconds = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return np.where(parsed.isna().to_numpy(), np.nan, nanoseconds // 10**9).astype(np.float64)


def date_part(seconds: np.ndarray, part: str) -> np.ndarray:
    """One of DATE_PARTS from seconds since 1970 (NaN stays NaN): the calendar's year, month and day, the weekday
    (Monday 0), the hour, or the seconds themselves."""
    if part == "seconds":
        return seconds
    missing = np.isnan(seconds)
    moments = np.where(missing, 0, seconds).astype("datetime64[s]")
    if part == "year":
        found = moments.astype("datetime64[Y]").astype(np.int64) + 1970
    elif part == "month":
        found = moments.astype("datetime64[M]").astype(np.int64) % 12 + 1
    elif part == "day":
        found = (moments.astype("datetime64[D]") - moments.astype("datetime64[M]")).astype(np.int64) + 1
    elif part == "weekday":  # 1970-01-01 was a Thursday (3 with Monday 0)
        found = (moments.astype("datetime64[D]").astype(np.int64) + 3) % 7
    elif part == "hour":
        found = (moments - moments.astype("datetime64[D]")).astype(np.int64) // 3600
    else:
        raise ValueError(f"not a date part: {part!r} (allowed: {', '.join(DATE_PARTS)})")
    return np.where(missing, np.nan, found.astype(np.float64))


MAX_INPUT = 1e6  # standard deviations: the most a standardised input can be (float32 holds up to 3.4e38)


@dataclass(frozen=True)
class Feature:
    """One model input and how it is made from its raw column: a numeric column (or a date's part) imputed with
    its training median then standardised, a boolean imputed with its most frequent value, one category
    one-hot, or the one input a many-valued column's other values share (its kept categories are not it)."""

    name: str  # as in the schema's features
    column: str
    kind: FeatureKind
    median: float = math.nan  # numeric and datetime
    mean: float = 0.0
    scale: float = 1.0
    fill: float = math.nan  # boolean
    category: str = ""  # categorical
    kept: tuple[str, ...] = ()  # other: the column's values that have an input of their own
    part: str = ""  # datetime: one of DATE_PARTS

    def to_dict(self) -> dict:
        """The fields its kind uses: no NaN placeholders in the JSON."""
        own = {
            "numeric": ("median", "mean", "scale"), "boolean": ("fill",), "categorical": ("category",),
            "other": ("kept",), "datetime": ("part", "median", "mean", "scale"),
        }[self.kind]  # fmt: skip
        return {"name": self.name, "column": self.column, "kind": self.kind, **{k: getattr(self, k) for k in own}}

    @classmethod
    def from_dict(cls, raw: dict) -> Feature:
        return cls(**{**raw, **({"kept": tuple(raw["kept"])} if "kept" in raw else {})})

    def values(self, column: np.ndarray) -> np.ndarray:
        """This input from its column as to_model_frame casts it, in float64 as scikit-learn computes it."""
        if self.kind == "categorical":
            return (column == self.category).astype(np.float64)
        if self.kind == "other":
            return (~np.isin(column, self.kept)).astype(np.float64)
        if self.kind == "datetime":
            column = date_part(column, self.part)
        imputed = np.where(np.isnan(column), self.fill if self.kind == "boolean" else self.median, column)
        if self.kind == "boolean":
            return imputed
        # A value far outside the training split's spread (a column all but constant there) is held at
        # MAX_INPUT standard deviations, so that no input overflows float32 on its way to the network.
        return np.clip((imputed - self.mean) / self.scale, -MAX_INPUT, MAX_INPUT)


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing prepare fitted on the training split, as the numbers it learned. Stored as JSON
    (numbers and strings only, so loading it runs no code) and applied by this one function wherever the
    model runs: prepare, `quest predict` and the served model give the network the same inputs."""

    columns: tuple[Column, ...]  # the raw columns a row must have
    features: tuple[Feature, ...]  # the model's inputs, in order

    def check(self, raw: pd.DataFrame, *, label: str, first_row: int = 1) -> None:
        """Refuse, in one line naming the column and row, raw rows the model cannot take: a missing column,
        text in a numeric column, an infinite value. `first_row` numbers raw's first row (1 = the first data
        row of a file). Extra columns are ignored."""
        missing = [column.name for column in self.columns if column.name not in raw.columns]
        if missing:
            needed = ", ".join(column.name for column in self.columns)
            raise QuestError(f"{label}: missing column(s) {', '.join(missing)}; the model needs {needed}")
        frame = to_model_frame(raw, self.columns)
        for column in self.columns:
            if column.kind == "categorical":
                continue
            values, parsed = raw[column.name], frame[column.name].to_numpy()
            junk = np.flatnonzero(np.isnan(parsed) & values.notna().to_numpy())
            if len(junk):
                kind = {"boolean": "true or false", "datetime": f"dates ({column.date_format})"}.get(
                    column.kind, "numbers"
                )
                raise QuestError(
                    f"{label}: column {column.name!r} takes {kind} but row {first_row + junk[0]} holds "
                    f"{values.iloc[junk[0]]!r}"
                )
            infinite = np.flatnonzero(np.isinf(parsed))
            if len(infinite):
                raise QuestError(
                    f"{label}: column {column.name!r} holds an infinite value at row {first_row + infinite[0]}"
                )

    def apply(self, raw: pd.DataFrame) -> np.ndarray:
        """Model inputs (float32) for raw rows: missing values imputed, categories unseen in training all zeros."""
        frame = to_model_frame(raw, self.columns)
        columns = {column.name: frame[column.name].to_numpy() for column in self.columns}
        inputs = [feature.values(columns[feature.column]) for feature in self.features]
        stacked = np.column_stack(inputs) if inputs else np.zeros((len(frame), 0))
        return np.asarray(stacked, dtype=np.float32)

    def to_dict(self) -> dict:
        return {"columns": [c.to_dict() for c in self.columns], "features": [f.to_dict() for f in self.features]}

    @classmethod
    def from_dict(cls, raw: dict) -> Preprocessing:
        columns = tuple(Column.from_dict(c) for c in raw["columns"])
        return cls(columns=columns, features=tuple(Feature.from_dict(f) for f in raw["features"]))


@dataclass(frozen=True)
class Prepared:
    """prepare's outputs as the later stages read them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    folds: np.ndarray  # (repeats, rows): the fold of each training row in each repeat (-1: only ever trains)
    schema: Schema
    division: Division = RANDOM  # how the training rows may be divided: every later split follows it

    @property
    def n_classes(self) -> int:
        return len(self.schema.class_labels)

    def splits(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(split number, training mask, held-out mask) for every fold of every repeat, in the same order for every
        model. The training rows are every other fold's, or in time only the earlier ones (forward chaining)."""
        for repeat in range(self.schema.repeats):
            for fold in range(self.schema.folds):
                training = training_rows(self.folds[repeat], fold, self.division)
                yield repeat * self.schema.folds + fold, training, self.folds[repeat] == fold

    @property
    def split_sizes(self) -> tuple[float, float]:
        """Average (training, held-out) rows of a split."""
        if self.division.kind == "random":
            held_out = len(self.y_train) / self.schema.folds
            return round(len(self.y_train) - held_out), round(held_out)
        sizes = np.array([(train.sum(), held.sum()) for _, train, held in self.splits()], dtype=float)
        return float(sizes[:, 0].mean()), float(sizes[:, 1].mean())

    @property
    def correction_sizes(self) -> tuple[float, float]:
        """The n_train and n_test of the corrected statistics (quest.evaluation.stats), whose variance correction
        is n_test / n_train. At random: a split's rows. By group: the mean over the splits of held-out groups per
        training group, as groups, not rows, are the independent units. In time: the mean over the splits of
        held-out rows per training row, each fold's own (forward chaining trains on more rows fold by fold). Given
        as (mean training units, that mean ratio times them)."""
        if self.division.kind == "random":
            return self.split_sizes
        units = self.division.units
        pairs = [(units(np.flatnonzero(train)), units(np.flatnonzero(held))) for _, train, held in self.splits()]
        n_train = float(np.mean([train for train, _ in pairs]))
        return n_train, n_train * float(np.mean([held / train for train, held in pairs]))


def read_prepared(directory: Path) -> Prepared:
    """prepare's outputs, checked against each other: a damaged or mixed-up directory is one clear line."""
    raw = read_json(require(directory / paths.SCHEMA, "prepare"))
    try:
        schema = Schema.from_dict(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise QuestError(
            f"{directory / paths.SCHEMA}: not a schema prepare wrote ({error!r}); run `dvc repro prepare`"
        ) from None
    arrays = {
        name: _load_array(directory / name)
        for name in (paths.X_TRAIN, paths.Y_TRAIN, paths.X_TEST, paths.Y_TEST, paths.FOLDS)
    }
    if schema.split is not None:
        arrays[paths.SPLIT_KEYS] = _load_array(directory / paths.SPLIT_KEYS)
    prepared = Prepared(
        x_train=arrays[paths.X_TRAIN],
        y_train=arrays[paths.Y_TRAIN],
        x_test=arrays[paths.X_TEST],
        y_test=arrays[paths.Y_TEST],
        folds=arrays[paths.FOLDS],
        schema=schema,
        division=RANDOM
        if schema.split is None
        else Division(schema.split.kind, arrays[paths.SPLIT_KEYS], schema.split.gap),  # fmt: skip
    )
    expected = {
        paths.X_TRAIN: (schema.n_train, len(schema.features)),
        paths.Y_TRAIN: (schema.n_train,),
        paths.X_TEST: (schema.n_test, len(schema.features)),
        paths.Y_TEST: (schema.n_test,),
        paths.FOLDS: (schema.repeats, schema.n_train),
        **({paths.SPLIT_KEYS: (schema.n_train,)} if schema.split is not None else {}),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise QuestError(
                f"{directory / name}: holds an array of shape {arrays[name].shape} where its schema.json says "
                f"{shape}: the directory mixes two runs of prepare; run `dvc repro prepare`"
            )
    return prepared


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(require(path, "prepare"), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise QuestError(
            f"{path}: cannot be read as a NumPy array ({first_line(error)}); run `dvc repro prepare`"
        ) from None
