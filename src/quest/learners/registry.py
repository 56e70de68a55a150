"""Every learner quest knows, by the name params.yaml uses for it. Adding a model is one folder with its
Learner (and, where it has knobs, the dataclass of its params section) and one line here; no stage changes.

The MLP (`mlp`) is the subject of the comparison: the train stage trains it, and `compare.models` lists the
others it is compared with. A learner with knobs of its own owns a params.yaml section under its name: the
stages load params.yaml through `load_params` here, which validates those sections too. Learner modules are
imported when a learner is made, never at import; a section's dataclass is imported here, and imports no Keras.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quest import params as config
from quest.core.errors import QuestError
from quest.data.artifacts import Prepared
from quest.learners.base import Learner, Problem
from quest.learners.realmlp.params import RealMlpParams
from quest.learners.tabm.params import TabmParams
from quest.params import Params

Factory = Callable[[Params], Learner]


@dataclass(frozen=True)
class Registered:
    """A learner quest knows: how to make one from the params, and the dataclass of its own params.yaml section
    (under the learner's name), or None where it has no knobs there."""

    make: Factory
    section: type | None = None


def _mlp(params: Params) -> Learner:
    from quest.learners.mlp.learner import MLP

    return MLP(params.train, seed=params.seed)


def _baseline(name: str) -> Factory:
    def make(params: Params) -> Learner:
        from quest.learners.classic.baselines import Baseline

        return Baseline(name)

    return make


def _realmlp(params: Params) -> Learner:
    from quest.learners.realmlp.learner import RealMLP

    return RealMLP(params.section("realmlp"), params.train, seed=params.seed)


def _tabm(params: Params) -> Learner:
    from quest.learners.tabm.learner import TabM

    return TabM(params.section("tabm"), params.train, seed=params.seed)


def _catboost(params: Params) -> Learner:
    from quest.learners.gbdt.catboost import CatBoost

    return CatBoost()


def _xgboost(params: Params) -> Learner:
    from quest.learners.gbdt.xgboost import XGBoost

    return XGBoost()


def _lightgbm(params: Params) -> Learner:
    from quest.learners.gbdt.lightgbm import LightGBM

    return LightGBM()


def keras_classes() -> dict[str, type]:
    """Every Keras class of quest's a saved network may hold, by the name it is saved under (`quest>NtkDense`).
    Whoever loads a network hands these to Keras: loading then depends on no module having been imported first
    for its side effect of registering them."""
    import keras

    from quest.learners import layers
    from quest.learners.realmlp import layers as realmlp_layers
    from quest.learners.tabm import layers as tabm_layers

    modules = (layers, realmlp_layers, tabm_layers)
    return {keras.saving.get_registered_name(c): c for module in modules for c in module.KERAS_CLASSES}


SUBJECT = "mlp"
BASELINES = ("logreg", "logreg_rbf", "knn5", "knn15", "tree", "forest", "boosting", "svm_rbf", "hgb")
# name -> how to make it and its section. A new model's line goes here; a test may add a toy one for its duration.
LEARNERS: dict[str, Registered] = {
    SUBJECT: Registered(_mlp),
    **{name: Registered(_baseline(name)) for name in BASELINES},
    "xgboost": Registered(_xgboost),
    "lightgbm": Registered(_lightgbm),
    "catboost": Registered(_catboost),
    "realmlp": Registered(_realmlp, RealMlpParams),
    "tabm": Registered(_tabm, TabmParams),
}


def sections() -> dict[str, type]:
    """The params.yaml sections the learners own, by learner name: what params.yaml holds besides the pipeline's."""
    return {name: entry.section for name, entry in LEARNERS.items() if entry.section is not None}


def load_params(path: Path, *, table: str | None = None) -> Params:
    """params.yaml, read and validated with every learner's own section (quest.params.read_params); `table`: as that
    table of the suite runs."""
    return config.read_params(path, sections(), table=table)


def params_from_dict(raw: Any) -> Params:
    """params.yaml's mapping, validated with every learner's own section (quest.params.build_params)."""
    return config.build_params(raw, sections())


def others() -> list[str]:
    """What compare.models may name: every learner but the subject."""
    return [name for name in LEARNERS if name != SUBJECT]


def learner(name: str, params: Params) -> Learner:
    return LEARNERS[name].make(params)


def subject(params: Params) -> Learner:
    """The learner the train stage trains and every other one is compared with."""
    return learner(SUBJECT, params)


def entrants(params: Params, *, who: str) -> list[Learner]:
    """The learners of compare.models, in order, less any whose library is missing (with a notice each)."""
    allowed = others()
    for name in params.compare.models:
        if name not in allowed:
            raise QuestError(
                f"params.yaml: compare.models must be a list drawn from {', '.join(allowed)} (got {name!r})"
            )
    found = []
    for name in params.compare.models:
        made = learner(name, params)
        if made.available():
            made.check_ready()  # before any model of the stage is fitted
            found.append(made)
        else:
            print(f"{who}: notice: skipping {name}: its library ({made.requires}) is not installed", file=sys.stderr)
    return found


def check_spaces(params: Params) -> None:
    """tune.spaces may hold a space for any learner, and only for those."""
    for name in params.tune.spaces:
        if name not in LEARNERS:
            raise QuestError(f"params.yaml: tune.spaces must be models drawn from {', '.join(LEARNERS)} (got {name!r})")


def problem(params: Params, prepared: Prepared) -> Problem:
    """The table as every stage's models see it: past compare.scale_threshold training rows, the scalable
    stand-ins; past compare.wide_threshold model inputs, the wide recipes."""
    return Problem.of(
        prepared,
        scale_threshold=params.compare.scale_threshold,
        wide=params.compare.wide(prepared.x_train.shape[1]),
    )


def recipe_notices(
    who: str, learners: Sequence[Learner], problem: Problem, params: Params, *, n_train: int, verb: str = "run"
) -> None:
    """Say which models run otherwise than on any table: past compare.scale_threshold training rows, the scalable
    stand-ins; past compare.wide_threshold model inputs, the wide recipes."""
    if problem.large:
        _notice(
            who,
            [learner.name for learner in learners if learner.has_stand_in()],
            f"{n_train} training rows > compare.scale_threshold ({params.compare.scale_threshold})",
            f"{verb} as their scalable stand-ins",
        )
    if problem.wide:
        _notice(
            who,
            [learner.name for learner in learners if learner.wide_recipe(problem)],
            f"{problem.n_features} model inputs > compare.wide_threshold ({params.compare.wide_threshold})",
            f"{verb} with their wide recipes (docs/performance.md)",
        )


def _notice(who: str, names: Sequence[str], why: str, what: str) -> None:
    if names:
        listed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        print(f"{who}: notice: {why}: {listed} {what}", file=sys.stderr)
