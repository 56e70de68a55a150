"""Every learner quest knows, by the name params.yaml uses for it. Adding a model is one module with its
Learner and one line here; no stage changes.

The MLP (`mlp`) is the subject of the comparison: the train stage trains it, and `compare.models` lists the
others it is compared with. Learner modules are imported when a learner is made, never at import.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from quest.errors import QuestError
from quest.learners.base import Learner
from quest.params import Params

Factory = Callable[[Params], Learner]


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

    return RealMLP(params.realmlp, params.train, seed=params.seed)


def _tabm(params: Params) -> Learner:
    from quest.learners.tabm.learner import TabM

    return TabM(params.tabm, params.train, seed=params.seed)


def _catboost(params: Params) -> Learner:
    from quest.learners.gbdt.catboost import CatBoost

    return CatBoost()


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
BASELINES = ("logreg", "logreg_rbf", "knn5", "knn15", "tree", "forest", "boosting", "svm_rbf", "hgb", "xgboost")
# name -> factory(params) -> Learner. A new model's line goes here; a test may add a toy one for its duration.
FACTORIES: dict[str, Factory] = {
    SUBJECT: _mlp,
    **{name: _baseline(name) for name in BASELINES},
    "lightgbm": _lightgbm,
    "catboost": _catboost,
    "realmlp": _realmlp,
    "tabm": _tabm,
}


def others() -> list[str]:
    """What compare.models may name: every learner but the subject."""
    return [name for name in FACTORIES if name != SUBJECT]


def learner(name: str, params: Params) -> Learner:
    return FACTORIES[name](params)


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
        if name not in FACTORIES:
            raise QuestError(
                f"params.yaml: tune.spaces must be models drawn from {', '.join(FACTORIES)} (got {name!r})"
            )


def stand_in_notice(who: str, learners: Sequence[Learner], *, n_train: int, threshold: int, verb: str = "run") -> None:
    """Past compare.scale_threshold, say which rows are their scalable stand-ins."""
    scaled = [learner.name for learner in learners if learner.has_stand_in()]
    if scaled:
        names = " and ".join([", ".join(scaled[:-1]), scaled[-1]] if len(scaled) > 1 else scaled)
        print(
            f"{who}: notice: {n_train} training rows > compare.scale_threshold ({threshold}): {names} {verb} as "
            "their scalable stand-ins",
            file=sys.stderr,
        )
