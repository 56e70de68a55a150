"""The one interface every model of the comparison implements, neural or classic.

A learner is scikit-learn's estimator contract lifted one level: it builds fresh models (`build`, which
learn nothing before `fit`) and, given a list of fits on rows of the shared training arrays, returns each
fit's outputs on the inputs it names, with its model where the fit asks to keep it (`fit_predict`). The
comparison, the learning curves and the tuning hand every learner the same fits on the same splits and never
ask which model it is. A learner that trains many fits in one program (the Keras MLP's compiled engine) says
so (`trains_together`) and overrides `fit_predict`; the others fit one model after another.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from quest.core import progress
from quest.core.errors import QuestError
from quest.data.artifacts import Prepared
from quest.data.splits import RANDOM, Division

if TYPE_CHECKING:
    from quest.learners.jobs import FitResult

Kind = Literal["neural", "classic"]
Output = np.ndarray  # class probabilities (n, n_classes) for classification, predictions (n,) for regression


@dataclass(frozen=True)
class Problem:
    """What every learner needs to know about the table before it builds a model."""

    task: Literal["classification", "regression"]
    n_classes: int  # 0 for regression
    n_features: int
    large: bool = False  # the training split is past compare.scale_threshold: scalable stand-ins, where any
    row_share: float = 1.0  # compare.scale_threshold over the training rows where they are past it: 1 otherwise
    wide: bool = False  # the inputs are past compare.wide_threshold: wide recipes, where any (quest.learners.wide)
    feature_names: tuple[str, ...] = ()  # the model inputs' names, for messages (schema.features)
    # Per model input, its raw column's kind and name (Schema.feature_columns): a categorical column's one-hot
    # inputs share a name. Empty: every input is numeric.
    feature_columns: tuple[tuple[str, str], ...] = ()
    # How the training rows may be divided (prepare.split): a learner's own validation slice follows it.
    division: Division = field(default=RANDOM, compare=False)

    @classmethod
    def of(cls, prepared: Prepared, *, scale_threshold: int | None = None, wide: bool = False) -> Problem:
        """The problem `prepared` poses; past `scale_threshold` training rows (None: no threshold), a large one."""
        schema, rows = prepared.schema, len(prepared.y_train)
        large = scale_threshold is not None and rows > scale_threshold
        return cls(
            schema.task,
            prepared.n_classes,
            prepared.x_train.shape[1],
            large=large,
            row_share=scale_threshold / rows if large else 1.0,
            wide=wide,
            feature_names=schema.features,
            feature_columns=schema.feature_columns(),
            division=prepared.division,
        )


@dataclass(frozen=True)
class Fit:
    """One model to fit on rows of the shared training arrays, and the inputs to predict with it."""

    rows: np.ndarray  # indices into the training arrays
    predict: tuple[np.ndarray, ...]  # inputs whose outputs the caller wants, e.g. (held-out rows,)
    seed: int
    hyper: Mapping[str, Any] = field(default_factory=dict)  # hyperparameters over the learner's defaults
    keep: bool = False  # return the trained model with the outputs (the final fit), where the learner can save one
    hooks: tuple[Any, ...] = ()  # epoch hooks (quest.learners.callbacks) that watch this fit's network train


@dataclass(frozen=True)
class Fitted:
    """What one fit gives back: its outputs on the fit's `predict` inputs, and, where the fit asked to keep its
    model (`Fit.keep`) and the learner can save one, the trained network with how it trained (its history, best
    epoch and epochs run); None otherwise."""

    outputs: list[Output]
    trained: FitResult | None = None


class Model(Protocol):
    """A fresh model: scikit-learn's contract, with `output` in place of predict/predict_proba."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> Model: ...

    def output(self, x: np.ndarray) -> Output: ...


OnFailure = Callable[[Fit, ValueError], None]  # told when a fit is refused (too few rows, a rejected value)


COPIES = 4  # float64 copies of a training split a fit may hold at once (Learner.memory_needed)


class Learner(ABC):
    """A row of the comparison. Subclasses set `name` and `kind` and implement `describe` and `build`, or
    `fit_predict` when they train many fits together."""

    name: str
    kind: Kind
    requires: str | None = None  # the optional library it needs; skipped with a notice when it is missing
    trains_together: bool = False  # fit_predict trains every fit in one program: hand it all of them at once
    trials_together: bool = False  # and fits whose values differ too: tuning hands it several trials at once
    fills_cores: bool = False  # one fit keeps every core busy (its own thread pool): never run it beside others

    def available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None

    def check_ready(self) -> None:
        """Raise a QuestError now, before any fit, when the params leave the learner unable to run; most learners
        need nothing beyond their library (`available`)."""
        return None

    @abstractmethod
    def describe(self, problem: Problem) -> str:
        """What the row is, in a few words, for the report's table."""

    def memory_needed(self, rows: int, columns: int) -> int:
        """Bytes one of its fits may take on a training split of this shape, beyond the arrays the stage holds: a
        few float64 copies of the rows (validation, the split's rows, the library's own layout). A learner whose
        networks train together returns 0 here: XLA's layout of its compiled program is checked instead."""
        return 0 if self.trains_together else rows * columns * 8 * COPIES

    def has_stand_in(self) -> bool:
        """Whether a scalable model stands in for this one past compare.scale_threshold."""
        return False

    def wide_recipe(self, problem: Problem) -> str:
        """How it trains past compare.wide_threshold model inputs, in a few words (quest.learners.wide); empty:
        as on any table."""
        return ""

    def seeds(self, seed: int, index: int) -> tuple[int, ...]:
        """The seeds of the models fitted for split (or trial) `index`; their scores are averaged. An estimator
        keeps the pipeline's seed; a network draws its own initialisation per split."""
        return (seed,)

    def device_tags(self) -> dict[str, str]:
        """Where it trains, as MLflow tags, when that is worth recording (a GPU, a backend); none for the CPU
        libraries."""
        return {}

    def settings(self, problem: Problem) -> dict[str, Any]:
        """What besides a search space decides its trials' results: a stored study is resumed only while
        these are unchanged."""
        return {"large": problem.large, "wide": problem.wide}

    def build(self, problem: Problem, *, seed: int, hyper: Mapping[str, Any]) -> Model:
        """A fresh, seeded model with `hyper` over the learner's defaults."""
        raise NotImplementedError(f"{type(self).__name__} trains its fits together: call fit_predict")

    def check_space(self, space: Mapping[str, Any], problem: Problem) -> None:
        """Fail before a search, not trials into it, when `space` names a hyperparameter the model lacks."""
        first = {key: spec[0] if isinstance(spec, list) else spec["low"] for key, spec in space.items()}
        try:
            self.build(problem, seed=0, hyper=first)
        except TypeError as error:
            raise QuestError(f"params.yaml: tune.spaces.{self.name}: {error}") from None

    def fit_predict(
        self,
        x: np.ndarray,
        y: np.ndarray,
        fits: Sequence[Fit],
        problem: Problem,
        *,
        label: str = "",
        on_failure: OnFailure | None = None,
    ) -> list[Fitted | None]:
        """Each fit's outputs on its `predict` inputs, in order (an estimator's model is not kept: only networks
        are saved). A fit the model refuses (ValueError) raises, or, given `on_failure`, is reported to it and
        gives None. `label` names the work in progress lines."""
        outputs: list[Fitted | None] = []
        for fit in fits:
            progress.fits_done(len(outputs), len(fits))
            model = self.build(problem, seed=fit.seed, hyper=fit.hyper)
            try:
                model.fit(x[fit.rows], y[fit.rows])
                outputs.append(Fitted([model.output(inputs) for inputs in fit.predict]))
            except ValueError as error:
                if on_failure is None:
                    raise
                on_failure(fit, error)
                outputs.append(None)
        return outputs
