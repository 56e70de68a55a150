"""Search spaces: drawing one trial's values from params.yaml's tune.spaces, and the names that keep stored
studies apart. A list is a categorical choice (a list of lists, such as hidden layers, travels through Optuna
as strings), {low, high, log} an int or float range."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from quest.core.files import dumps_json

if TYPE_CHECKING:
    import optuna

LAYERS_SEPARATOR = "-"  # [64, 32] travels through Optuna as "64-32": its categorical choices must be scalars


def _is_layers(spec: Any) -> bool:
    return isinstance(spec, list) and any(isinstance(choice, list) for choice in spec)


def _encode(choice: list[int]) -> str:
    return LAYERS_SEPARATOR.join(str(units) for units in choice)


def _decode(text: str) -> tuple[int, ...]:
    return tuple(int(units) for units in text.split(LAYERS_SEPARATOR) if units)


def sample_space(trial: optuna.trial.BaseTrial, space: Mapping[str, Any]) -> dict[str, Any]:
    """Draw one value per hyperparameter from an Optuna trial: a list is a categorical choice (a list of
    lists is encoded as strings and decoded to tuples of ints), {low, high, log} an int or float range."""
    values: dict[str, Any] = {}
    for name, spec in space.items():
        if _is_layers(spec):
            values[name] = _decode(trial.suggest_categorical(name, [_encode(choice) for choice in spec]))
        elif isinstance(spec, list):
            values[name] = trial.suggest_categorical(name, spec)
        elif all(isinstance(spec[key], int) for key in ("low", "high")):
            values[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            values[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    return values


def decode_params(space: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """A stored trial's Optuna params (encoded) as the values sample_space returned."""
    return {name: _decode(value) if _is_layers(space.get(name)) else value for name, value in raw.items()}


def sampler_seed(seed: int, name: str) -> int:
    """Each model's own stream, stable by name: adding a model leaves the others' trials unchanged."""
    return seed + zlib.crc32(name.encode("utf-8")) % 10000


def study_name(dataset: str, name: str, key: Mapping[str, Any]) -> str:
    """A stored study is resumed only when everything that decides its trials (`key`) is unchanged."""
    digest = hashlib.sha256(dumps_json(key).encode("utf-8")).hexdigest()[:12]
    return f"quest-{dataset}-{name}-{digest}"
