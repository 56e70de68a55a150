"""params.yaml, loaded and validated in one place into typed, frozen objects.

params.yaml is the single home of every default: each key must be present there, so the file a user reads is
the configuration that runs. A wrong key, type or value fails here with a message naming the key and what
is allowed.

The pipeline's own sections (data, prepare, train, compare, tune, ...) are the fields of `Params`. A learner
with knobs of its own owns its section: its dataclass lives with the learner, and the registry
(quest.learners.registry, whose `load_params` the stages that make learners call) hands the sections it knows to
`read_params`; they land in `Params.sections`, by the learner's name. This module knows no learner. A stage that
makes none (prepare, report) reads the pipeline's sections only (`sections=None`), so that it depends on no
learner's code: the learners' sections are checked by train, the stage after prepare, before any model trains.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from quest.core import catalogue
from quest.core.errors import QuestError, shown_uri

# The embedded tables, a CSV, the synthetic ones, then the packaged real tables (quest.core.catalogue).
Source = Literal[("breast_cancer", "wine", "diabetes", "csv", "synthetic", *catalogue.NAMES)]  # type: ignore[valid-type]
SplitKind = Literal["random", "group", "time"]
Task = Literal["classification", "regression", "auto"]
MissingTarget = Literal["drop", "error"]
SyntheticKind = Literal["moons", "spirals", "xor", "classification", "grouped"]
Backend = Literal["tensorflow", "jax", "torch"]
Device = Literal["auto", "cpu", "gpu"]
Engine = Literal["fast", "fit"]
DataParallel = int | Literal["all"]  # devices that split each mini-batch, or every one the backend sees
Activation = Literal["relu", "tanh", "sigmoid"]
Initializer = Literal["he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "lecun_normal"]
Optimizer = Literal["adam", "sgd"]
Metric = Literal["auto", "tabarena", "accuracy", "balanced_accuracy", "f1", "roc_auc", "log_loss", "r2", "rmse", "mae"]


def require(ok: bool, key: str, allowed: str, value: Any) -> None:
    """The one-line error of every check: `key` must be `allowed`, and what it got."""
    if not ok:
        raise QuestError(f"params.yaml: {key} must be {allowed} (got {value!r})")


@dataclass(frozen=True)
class SyntheticParams:
    kind: SyntheticKind
    n_samples: int
    n_features: int
    n_classes: int
    noise: float

    def __post_init__(self) -> None:
        require(self.n_samples >= 10, "data.synthetic.n_samples", "at least 10", self.n_samples)
        require(self.n_features >= 2, "data.synthetic.n_features", "at least 2", self.n_features)
        require(self.n_classes >= 2, "data.synthetic.n_classes", "at least 2", self.n_classes)
        require(self.noise >= 0, "data.synthetic.noise", "non-negative", self.noise)


@dataclass(frozen=True)
class DataParams:
    source: Source
    path: str | None
    target: str | None
    drop: tuple[str, ...]
    keep: tuple[str, ...]  # columns that stay model inputs where prepare would leave them out (quest.data.columns)
    missing_target: MissingTarget  # rows without a label: drop them (with a notice) or refuse the table
    task: Task
    synthetic: SyntheticParams

    def __post_init__(self) -> None:
        if self.source == "csv":
            require(bool(self.path), "data.path", "a CSV path when data.source is csv", self.path)
            require(bool(self.target), "data.target", "a column name when data.source is csv", self.target)
        both = sorted(set(self.keep) & set(self.drop))
        require(not both, "data.keep", "columns that data.drop does not leave out", both)


@dataclass(frozen=True)
class SplitParams:
    """How rows are divided, in every split quest makes (quest.data.splits): `random` for independent rows,
    `group` to keep each value of `column` (a customer, a patient, a machine) on one side, `time` to train on
    the past of `column` (dates, datetimes or numbers) and validate on what follows, `gap` rows apart."""

    kind: SplitKind
    column: str | None
    gap: int
    feature: bool  # the split column is also a model input (it is not, by default)

    def __post_init__(self) -> None:
        named = self.column is not None and bool(str(self.column).strip())
        require(self.kind == "random" or named, "prepare.split.column",
                f"a column name when prepare.split.kind is {self.kind}", self.column)  # fmt: skip
        require(self.kind != "random" or self.column is None, "prepare.split.column",
                "null when prepare.split.kind is random (a column needs kind group or time)", self.column)  # fmt: skip
        require(self.gap >= 0, "prepare.split.gap", "0 or a positive row count", self.gap)
        require(self.gap == 0 or self.kind == "time", "prepare.split.gap", "0 unless prepare.split.kind is time",
                self.gap)  # fmt: skip
        require(not self.feature or self.kind != "random", "prepare.split.feature",
                "false when prepare.split.kind is random (there is no split column)", self.feature)  # fmt: skip


@dataclass(frozen=True)
class PrepareParams:
    test_size: float
    folds: int
    repeats: int
    large_repeats: int  # the repeats past compare.scale_threshold training rows (at most `repeats`)
    max_train_rows: int | None  # a seeded, stratified sample of the training split at most this large; None: all
    split: SplitParams

    def __post_init__(self) -> None:
        require(0 < self.test_size < 1, "prepare.test_size", "between 0 and 1 (exclusive)", self.test_size)
        require(self.max_train_rows is None or self.max_train_rows >= 10 * self.folds, "prepare.max_train_rows",
                f"null (every training row) or at least 10 rows a fold ({10 * self.folds})",
                self.max_train_rows)  # fmt: skip
        require(2 <= self.folds <= 50, "prepare.folds", "an integer from 2 to 50", self.folds)
        require(1 <= self.repeats <= 20, "prepare.repeats", "an integer from 1 to 20", self.repeats)
        require(1 <= self.large_repeats <= 20, "prepare.large_repeats", "an integer from 1 to 20", self.large_repeats)
        require(self.repeats == 1 or self.split.kind != "time", "prepare.repeats",
                "1 when prepare.split.kind is time (forward-chaining folds have one order: a repeat would be a copy)",
                self.repeats)  # fmt: skip


@dataclass(frozen=True)
class EarlyStoppingParams:
    patience: int
    validation_fraction: float

    def __post_init__(self) -> None:
        require(self.patience >= 0, "train.early_stopping.patience", "0 (off) or more", self.patience)
        require(
            0 < self.validation_fraction < 1,
            "train.early_stopping.validation_fraction",
            "between 0 and 1 (exclusive)",
            self.validation_fraction,
        )


@dataclass(frozen=True)
class TrainParams:
    backend: Backend
    device: Device
    engine: Engine
    seeds: int
    hidden_layers: tuple[int, ...]
    activation: Activation
    dropout_rate: float
    l2: float
    initializer: Initializer
    optimizer: Optimizer
    learning_rate: float
    momentum: float
    batch_size: int
    data_parallel: DataParallel
    epochs: int
    early_stopping: EarlyStoppingParams

    def __post_init__(self) -> None:
        require(
            self.engine == "fit" or self.backend == "jax",
            "train.engine",
            "fit when train.backend is not jax (the fast engine compiles with JAX)",
            self.engine,
        )
        require(1 <= self.seeds <= 100, "train.seeds", "an integer from 1 to 100", self.seeds)
        require(
            all(size >= 1 for size in self.hidden_layers),
            "train.hidden_layers",
            "a list of positive layer sizes",
            list(self.hidden_layers),
        )
        require(0 <= self.dropout_rate < 1, "train.dropout_rate", "in [0, 1)", self.dropout_rate)
        require(self.l2 >= 0, "train.l2", "non-negative", self.l2)
        require(self.learning_rate > 0, "train.learning_rate", "positive", self.learning_rate)
        require(0 <= self.momentum < 1, "train.momentum", "in [0, 1)", self.momentum)
        require(self.batch_size >= 1, "train.batch_size", "a positive integer", self.batch_size)
        require(
            self.data_parallel == "all" or self.data_parallel >= 1,
            "train.data_parallel",
            "a positive device count or all",
            self.data_parallel,
        )
        require(
            self.data_parallel == 1 or self.backend != "torch",
            "train.data_parallel",
            "1 when train.backend is torch (Keras distributes training on jax and tensorflow only)",
            self.data_parallel,
        )
        require(self.epochs >= 1, "train.epochs", "a positive integer", self.epochs)


EXECUTOR = re.compile(r"local|dask://[^:/\s]+:\d+")  # compare.executor: here, or a Dask scheduler (quest.core.cluster)


@dataclass(frozen=True)
class CompareParams:
    metric: Metric
    alpha: float
    rope: float
    probability: float
    models: tuple[str, ...]  # the models compared with the MLP, neural entrants and classic ones
    scale_threshold: int
    wide_threshold: int  # model inputs past which the costliest models take their wide recipes (quest.learners.wide)
    executor: str  # local (a process pool here) or dask://host:port (a Dask cluster's scheduler): quest.core.cluster

    def __post_init__(self) -> None:
        require(0 < self.alpha < 1, "compare.alpha", "between 0 and 1 (exclusive)", self.alpha)
        require(self.rope >= 0 and math.isfinite(self.rope), "compare.rope", "a finite number >= 0", self.rope)
        require(0.5 < self.probability < 1, "compare.probability", "between 0.5 and 1 (exclusive)", self.probability)
        require(self.scale_threshold >= 1, "compare.scale_threshold", "a positive row count", self.scale_threshold)
        require(self.wide_threshold >= 1, "compare.wide_threshold", "a positive count of model inputs",
                self.wide_threshold)  # fmt: skip
        require(bool(EXECUTOR.fullmatch(self.executor)), "compare.executor", "local or dask://host:port", self.executor)
        repeated = sorted({name for name in self.models if self.models.count(name) > 1})
        require(not repeated, "compare.models", "a list naming each model once", list(self.models))

    def wide(self, n_features: int) -> bool:
        """Whether a table of `n_features` model inputs switches the costliest models to their wide recipes."""
        return n_features > self.wide_threshold


def _check_space(model: str, name: str, spec: Any) -> None:
    """One hyperparameter's range: a non-empty list of choices, or {low, high} with an optional `log: true`."""
    key = f"tune.spaces.{model}.{name}"
    if isinstance(spec, list):
        require(len(spec) > 0, key, "a non-empty list of choices or {low, high, log}", spec)
        return
    require(
        isinstance(spec, dict) and {"low", "high"} <= set(spec) <= {"low", "high", "log"},
        key,
        "a list of choices or a mapping {low, high} with optional log: true",
        spec,
    )
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    require(numbers and low < high, key, "numbers with low < high", spec)
    require(isinstance(log, bool) and (not log or low > 0), key, "log: true only with low > 0", spec)


@dataclass(frozen=True)
class TuneParams:
    trials: int
    validation_fraction: float
    storage: str | None
    heartbeat: int  # seconds between a shared study's worker heartbeats; silent for twice this: taken as dead
    together: int  # trials a worker claims at once for a model that trains them in one program (the MLP)
    spaces: dict[str, dict[str, Any]]  # model -> hyperparameter -> [choices] | {low, high, log}

    def __post_init__(self) -> None:
        require(0 <= self.trials <= 10000, "tune.trials", "an integer from 0 (off) to 10000", self.trials)
        require(1 <= self.together <= 10000, "tune.together", "an integer from 1 to 10000", self.together)
        require(1 <= self.heartbeat <= 3600, "tune.heartbeat", "seconds, an integer from 1 to 3600", self.heartbeat)
        require(
            0 < self.validation_fraction < 1,
            "tune.validation_fraction",
            "between 0 and 1 (exclusive)",
            self.validation_fraction,
        )
        if self.storage is not None and _password_of(self.storage):
            allowed = (
                "a URL without a password, which params.yaml (committed, logged to MLflow) must not hold: put it in "
                "PGPASSFILE or PGPASSWORD (docs/team.md)"
            )
            require(False, "tune.storage", allowed, shown_uri(self.storage))
        # Which models may have a space, and which keys each may vary, the learners say (quest.learners).
        for model, space in self.spaces.items():
            require(isinstance(space, dict), f"tune.spaces.{model}", "a mapping of hyperparameter ranges", space)
            for name, spec in space.items():
                _check_space(model, name, spec)


def _password_of(url: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password
    except ValueError:  # not a URL at all: Optuna says so when it opens it
        return None


@dataclass(frozen=True)
class LearningParams:
    fractions: tuple[float, ...]
    repeats: int

    def __post_init__(self) -> None:
        for fraction in self.fractions:
            require(0 < fraction <= 1, "learning.fractions", "a list of fractions in (0, 1]", list(self.fractions))
        require(1 <= self.repeats <= 20, "learning.repeats", "an integer from 1 to 20", self.repeats)


@dataclass(frozen=True)
class MlflowParams:
    experiment: str
    registered_model: str  # the registry name the MLP is registered under after each comparison; "" skips it

    def __post_init__(self) -> None:
        require(bool(self.experiment.strip()), "mlflow.experiment", "a non-empty name", self.experiment)


@dataclass(frozen=True)
class OtherMachineParams:
    """How far a number may move when the results are recomputed on another numerical fingerprint (another CPU,
    BLAS kernel, GPU): in units of its own standard error, as quest.evaluation.reproduction derives them."""

    mean: float  # a summary over the splits (CV mean, std, interval, a pair's difference): standard errors
    split: float  # one split's score (a CV fold, the test split): standard errors
    probability: float  # posterior probabilities and p-values: absolute
    splits: float  # wins, ties and losses: this fraction of the splits

    def __post_init__(self) -> None:
        for name in ("mean", "split", "probability", "splits"):
            require(getattr(self, name) >= 0, f"verify.other_machine.{name}", "non-negative", getattr(self, name))
        require(self.probability <= 1, "verify.other_machine.probability", "at most 1", self.probability)
        require(self.splits <= 1, "verify.other_machine.splits", "at most 1", self.splits)


@dataclass(frozen=True)
class VerifyParams:
    tolerance: dict[str, float]  # metric name (or "default") -> allowed absolute difference, on any machine
    other_machine: OtherMachineParams  # on another numerical fingerprint: the conclusions, and these bounds

    def __post_init__(self) -> None:
        require("default" in self.tolerance, "verify.tolerance", "a mapping with a `default` entry", self.tolerance)
        for name, value in self.tolerance.items():
            require(value >= 0, f"verify.tolerance.{name}", "non-negative", value)

    def allowed(self, metric: str) -> float:
        return self.tolerance.get(metric, self.tolerance["default"])


# What a suite's table may say: where it comes from (a named table, or a CSV's path and target), its own columns
# to leave out, task and split (as prepare.split), and the metric it is judged on (TabArena's unless it says).
TABLE_KEYS = ("source", "path", "target", "drop", "keep", "task", "split", "metric")
TABLE_SOURCES = ("breast_cancer", "wine", "diabetes", *catalogue.NAMES)  # the named tables: embedded, packaged
TABLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
RANDOM_SPLIT = {"kind": "random", "column": None, "gap": 0, "feature": False}


@dataclass(frozen=True)
class SuiteParams:
    """`make suite` (suite/dvc.yaml): the single-table protocol on each of `tables`, with `profile`'s overrides of
    the params (a mapping laid out as params.yaml is). Tables are keyed by name, which names their DVC stages
    (prepare@ames) and folder (suite/tables/ames): so a table added runs alone, whatever its place."""

    profile: str
    profiles: dict[str, dict[str, Any]]
    tables: dict[str, dict[str, Any]]

    def __post_init__(self) -> None:
        require(self.profile in self.profiles, "suite.profile", f"one of {', '.join(self.profiles)} (suite.profiles)",
                self.profile)  # fmt: skip
        for name, entry in self.tables.items():
            check_table(name, entry)
        require(len(self.tables) >= 2, "suite.tables", "a mapping of at least two tables, by name (a suite sums up "
                "across tables; one table is the pipeline's own job, `make repro`)", list(self.tables))  # fmt: skip


def check_table(name: str, entry: dict[str, Any]) -> None:
    """One suite table's entry, each problem named by its key (suite.tables.<name>.<key>)."""
    key = f"suite.tables.{name}"
    require(bool(TABLE_NAME.fullmatch(name)), key, "named with letters, digits, _ and - (it names a DVC stage and a "
            "folder)", name)  # fmt: skip
    for found in entry:
        if found not in TABLE_KEYS:
            raise QuestError(f"params.yaml: unknown key {key}.{found}; allowed: {', '.join(TABLE_KEYS)}")
    require(("source" in entry) != ("path" in entry), key, "a mapping with either source (a named table) or path "
            "and target (a CSV)", entry)  # fmt: skip
    if "source" in entry:
        source = entry["source"]
        if source not in TABLE_SOURCES:
            near = difflib.get_close_matches(str(source), TABLE_SOURCES, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise QuestError(
                f"params.yaml: {key}.source: no table named {source!r}; {hint}the named tables are "
                f"{', '.join(TABLE_SOURCES)} (docs/suite.md), or give path and target for a CSV"
            )
    else:
        target = entry.get("target")
        require(isinstance(target, str) and bool(target.strip()), f"{key}.target",
                "a column name when the entry gives a CSV path", target)  # fmt: skip
        _coerce(str, entry["path"], f"{key}.path")
    hints = typing.get_type_hints(DataParams)
    for field_name in ("drop", "keep", "task"):
        if field_name in entry:
            _coerce(hints[field_name], entry[field_name], f"{key}.{field_name}")
    if "split" in entry:
        require(isinstance(entry["split"], dict), f"{key}.split", "a mapping as prepare.split", entry["split"])
        try:
            _build(SplitParams, {**RANDOM_SPLIT, **entry["split"]}, f"{key}.split")
        except QuestError as error:  # SplitParams names its keys as prepare.split's
            raise QuestError(str(error).replace("prepare.split.", f"{key}.split.")) from None
    if "metric" in entry:
        _coerce(Metric, entry["metric"], f"{key}.metric")


def for_table(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """params.yaml's mapping as suite table `name` runs: the profile's overrides, then the entry's data, split and
    metric (TabArena's when it names none), its runs in the suite's MLflow experiment and no model registered."""
    suite = raw["suite"]
    entry = suite["tables"][name]
    found = _overridden(raw, suite["profiles"][suite["profile"]])
    found["data"] = {
        **found["data"],
        "source": entry.get("source", "csv"),
        "path": entry.get("path"),
        "target": entry.get("target"),
        "drop": entry.get("drop", []),
        "keep": entry.get("keep", []),
        "task": entry.get("task", "auto"),
    }
    found["prepare"] = {**found["prepare"], "split": {**RANDOM_SPLIT, **entry.get("split", {})}}
    found["compare"] = {**found["compare"], "metric": entry.get("metric", "tabarena")}
    found["mlflow"] = {**found["mlflow"], "experiment": suite_experiment(raw["mlflow"]["experiment"]),
                       "registered_model": ""}  # fmt: skip
    return found


def suite_experiment(experiment: str) -> str:
    """The MLflow experiment of the suite's runs, beside the single table's."""
    return f"{experiment}-suite"


def _overridden(raw: Any, overrides: Any) -> Any:
    """`raw` with `overrides` laid over it, mapping by mapping (a key it lacks is kept, for the check to name)."""
    if not isinstance(raw, dict) or not isinstance(overrides, dict):
        return overrides
    return {**raw, **{key: _overridden(raw.get(key), value) for key, value in overrides.items()}}


@dataclass(frozen=True)
class Params:
    seed: int
    data: DataParams
    prepare: PrepareParams
    train: TrainParams
    compare: CompareParams
    tune: TuneParams
    learning: LearningParams
    mlflow: MlflowParams
    verify: VerifyParams
    suite: SuiteParams
    # The learners' own sections (RealMLP's, TabM's, ...), each under its learner's name: their dataclasses live
    # with the learners, and the registry says which there are (quest.learners.registry.SECTIONS).
    sections: Mapping[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        """Learner `name`'s own section, as its dataclass."""
        return self.sections[name]

    def as_dict(self) -> dict[str, Any]:
        """Plain values laid out as params.yaml lays them out: the learners' sections at the top level."""
        found = asdict(self)
        found.pop("sections")
        return {**found, **{name: asdict(section) for name, section in self.sections.items()}}


Sections = Mapping[str, type]  # top-level key -> the dataclass its mapping is validated into


def read_params(path: Path, sections: Sections | None, *, table: str | None = None) -> Params:
    """Read and validate params.yaml, with the learners' `sections` besides the pipeline's own; every problem is a
    QuestError naming the key. `sections=None`: the learners' sections are not read here (see the module's text).
    `table`: the params as that table of the suite runs them (`for_table`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QuestError(f"{path}: params file not found") from None
    except UnicodeDecodeError:
        raise QuestError(f"{path}: not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise QuestError(f"{path}: invalid YAML{where}") from None
    if raw is None:
        raise QuestError(f"{path}: the file is empty")
    params = build_params(raw, sections)
    if table is None:
        return params
    if table not in params.suite.tables:
        raise QuestError(f"params.yaml: suite.tables has no table {table!r}; it has {', '.join(params.suite.tables)}")
    try:
        return build_params(for_table(raw, table), sections)
    except QuestError as error:
        raise QuestError(f"suite table {table} ({params.suite.profile} profile): {error}") from None


# Keys that were renamed: the old name gets a line naming the new one.
RENAMED = {"compare.baselines": "compare.models"}  # it lists the neural entrants too, not only baselines


def build_params(raw: Any, sections: Sections | None) -> Params:
    """Params from params.yaml's mapping, each of `sections` validated into its dataclass (None: see read_params)."""
    return _build(Params, raw, "", sections)


def _build(cls: type, raw: Any, where: str, sections: Sections | None = None) -> Any:
    """`cls` from the mapping at `where`; at the top level, the learners' `sections` too, into `Params.sections`
    (None there: keys besides the pipeline's are the learners', read by the stages that make them)."""
    label = where or "the top level"
    if not isinstance(raw, dict):
        raise QuestError(f"params.yaml: {label} must be a mapping (got {type(raw).__name__})")
    hints = typing.get_type_hints(cls)
    own = [f.name for f in fields(cls) if not (cls is Params and f.name == "sections")]
    if cls is Params and sections is None:
        raw = {key: value for key, value in raw.items() if key in own}
    sections = sections or {}
    names = [*own, *sections]
    for key in raw:
        if _join(where, key) in RENAMED:
            old = _join(where, key)
            raise QuestError(f"params.yaml: {old} is now {RENAMED[old]}; rename the key (its value is as before)")
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {_join(where, near[0])}?" if near else f"; allowed: {', '.join(names)}"
            raise QuestError(f"params.yaml: unknown key {_join(where, key)}{hint}")
    for name in names:
        if name not in raw:
            raise QuestError(f"params.yaml: missing key {_join(where, name)}")
    values = {name: _coerce(hints[name], raw[name], _join(where, name)) for name in own}
    if cls is Params:
        values["sections"] = {name: _build(kind, raw[name], _join(where, name)) for name, kind in sections.items()}
    return cls(**values)


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _allowed(hint: Any) -> str:
    """A union member in words, for the message when a value fits none of them."""
    if typing.get_origin(hint) is Literal:
        return " or ".join(map(str, typing.get_args(hint)))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[hint]


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:  # free-form, checked by the owning dataclass
        return value
    if is_dataclass(hint):
        return _build(hint, value, key)
    if origin is Literal:
        allowed = typing.get_args(hint)
        require(value in allowed, key, f"one of {', '.join(map(str, allowed))}", value)
        return value
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        if len(options) == 1:
            return _coerce(options[0], value, key)
        for option in options:
            try:
                return _coerce(option, value, key)
            except QuestError:
                pass
        allowed = " or ".join(_allowed(option) for option in options)
        raise QuestError(f"params.yaml: {key} must be {allowed} (got {value!r})")
    if origin is dict:
        value_hint = typing.get_args(hint)[1]
        require(isinstance(value, dict), key, "a mapping", value)
        return {str(name): _coerce(value_hint, item, f"{key}.{name}") for name, item in value.items()}
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        require(isinstance(value, list), key, "a list", value)
        return tuple(_coerce(item_hint, item, key) for item in value)
    if hint is bool:
        require(isinstance(value, bool), key, "true or false", value)
        return value
    if hint is int:
        require(isinstance(value, int) and not isinstance(value, bool), key, "an integer", value)
        return value
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        require(ok, key, "a number", value)
        return float(value)
    if hint is str:
        require(isinstance(value, str), key, "a string", value)
        return value
    raise TypeError(f"unsupported params type {hint!r} for {key}")  # a bug in this module, not user input
