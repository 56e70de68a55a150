"""Do recomputed results reproduce the committed ones? Every number of the metric files, and what they conclude.

On the machine that made the results (the same numerical fingerprint) the rule is exact: every number within
`verify.tolerance` (0 by default). On another fingerprint the bits cannot match: a network that trains for
hundreds of epochs carries the last bit of another vector width into another answer on a row. There the rule
is the one a statistician would use: every conclusion unchanged (which models ran, the best of each family,
each verdict's outcome, the winner), and every number within a bound derived from its own uncertainty, the
spread of the same model's scores over the shared splits:

- one split's score (a CV fold, the test split): `other_machine.split` standard deviations of a split's score,
  the test split's scaled by sqrt(validation rows / test rows);
- a summary over the splits (a CV mean, std, interval, a pair's difference): `other_machine.mean` of its
  standard error (sd/sqrt(k) for a mean, sd/sqrt(2(k-1)) for a std);
- posterior probabilities and p-values: `other_machine.probability`, absolute;
- wins, ties and losses: `other_machine.splits` of the k splits.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from quest.core import paths
from quest.params import VerifyParams

METRIC_FILES = tuple(path.as_posix() for path in (paths.METRICS, paths.COMPARISON, paths.CV_FOLDS, paths.VERDICT))
TEXT_COLUMNS = ("model", "family", "metric", "versus")  # comparison.csv's columns that are not numbers
PROBABILITIES = ("p_better", "p_equivalent", "p_worse", "p_value")
COUNTS = ("wins", "ties", "losses")
COMPARISON, CV_FOLDS, METRICS, VERDICT = (
    path.as_posix() for path in (paths.COMPARISON, paths.CV_FOLDS, paths.METRICS, paths.VERDICT)
)


@dataclass(frozen=True)
class Row:
    key: str
    committed: float
    fresh: float
    tolerance: float
    basis: str = ""  # how the tolerance was found, when it is not the plain verify.tolerance

    @property
    def difference(self) -> float:
        return abs(self.fresh - self.committed)

    @property
    def moved(self) -> bool:
        both_nan = math.isnan(self.committed) and math.isnan(self.fresh)
        return not both_nan and self.difference != 0

    @property
    def ok(self) -> bool:
        if math.isnan(self.committed) and math.isnan(self.fresh):
            return True
        return self.difference <= self.tolerance  # NaN on one side only: never ok


def flatten(name: str, text: str) -> dict[str, float]:
    """Every number in one metric file, keyed `file:path.to.value` (lists indexed as [i])."""
    if name.endswith(".csv"):
        out = {}
        for row in csv.DictReader(io.StringIO(text)):
            for column, value in row.items():
                if column not in TEXT_COLUMNS and value != "":  # empty: not applicable (no classic model to test)
                    out[f"{name}:{row['model']}.{column}"] = float(value)
        return out
    return dict(_walk(name + ":", json.loads(text)))


def _walk(prefix: str, node: object) -> Iterator[tuple[str, float]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(f"{prefix}{'' if prefix.endswith(':') else '.'}{key}", value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(f"{prefix}[{index}]", value)
    elif isinstance(node, int | float) and not isinstance(node, bool):
        yield prefix, float(node)


def flatten_all(files: Mapping[str, str]) -> dict[str, float]:
    found: dict[str, float] = {}
    for name in METRIC_FILES:
        found.update(flatten(name, files[name]))
    return found


def metric_name(key: str) -> str:
    """The tolerance name of a key: its last component without list indices (`...mlp.accuracy[2]` -> accuracy)."""
    return re.sub(r"\[\d+\]$", "", key.split(":", 1)[1]).rsplit(".", 1)[-1]


def compare_exactly(committed: dict[str, float], fresh: dict[str, float], tolerance: VerifyParams) -> list[Row]:
    """One row per key on either side, within verify.tolerance; a key missing on one side counts as NaN there,
    which never matches."""
    nan = float("nan")
    return [
        Row(k, committed.get(k, nan), fresh.get(k, nan), tolerance.allowed(metric_name(k)))
        for k in sorted(set(committed) | set(fresh))
    ]


@dataclass(frozen=True)
class Uncertainty:
    """The spread of the committed scores, from which each number's own standard error follows."""

    folds: Mapping[str, Mapping[str, list[float]]]  # cv_folds.json: model -> metric -> one score per split
    test_scale: float  # sqrt(validation rows / test rows): a test score's sd over a split's

    def split_sd(self, model: str, metric: str) -> float | None:
        scores = self.folds.get(model, {}).get(metric)
        if not scores or len(scores) < 2:
            return None
        return float(np.std(scores, ddof=1))

    def pair_sd(self, neural: str, classic: str, metric: str) -> float | None:
        a, b = self.folds.get(neural, {}).get(metric), self.folds.get(classic, {}).get(metric)
        if not a or not b or len(a) != len(b) or len(a) < 2:
            return None
        return float(np.std(np.subtract(a, b), ddof=1))

    @property
    def splits(self) -> int:
        return max((len(scores) for metrics in self.folds.values() for scores in metrics.values()), default=0)


def uncertainty(files: Mapping[str, str], *, validation_rows: float | None, test_rows: float | None) -> Uncertainty:
    folds = json.loads(files[CV_FOLDS])
    scale = math.sqrt(validation_rows / test_rows) if validation_rows and test_rows else 1.0
    return Uncertainty(folds=folds, test_scale=scale)


def other_machine_tolerances(
    files: Mapping[str, str], spread: Uncertainty, params: VerifyParams
) -> dict[str, tuple[float, str]]:
    """Key -> (tolerance, basis) for every number the committed files hold that has a standard error of its own;
    the rest (settings such as rope, alpha, the posterior's df) keep verify.tolerance."""
    rule = params.other_machine
    found: dict[str, tuple[float, str]] = {}
    k = spread.splits
    mean_factor = 1 / math.sqrt(k) if k else 0.0
    sd_factor = 1 / math.sqrt(2 * (k - 1)) if k > 1 else 0.0

    def split(sd: float | None, scale: float = 1.0) -> tuple[float, str] | None:
        return None if sd is None else (rule.split * sd * scale, f"{rule.split:g} sd of a split ({sd * scale:.3g})")

    def mean(se: float | None, what: str) -> tuple[float, str] | None:
        return None if se is None else (rule.mean * se, f"{rule.mean:g} SE of {what} ({se:.3g})")

    for model, metrics in spread.folds.items():
        for metric, scores in metrics.items():
            for index in range(len(scores)):
                found[f"{CV_FOLDS}:{model}.{metric}[{index}]"] = split(spread.split_sd(model, metric))
    for row in csv.DictReader(io.StringIO(files[COMPARISON])):
        model, metric = row["model"], row["metric"]
        sd = spread.split_sd(model, metric)
        prefix = f"{COMPARISON}:{model}."
        found[prefix + "test_score"] = split(sd, spread.test_scale)
        if sd is not None:
            found[prefix + "cv_mean"] = mean(sd * mean_factor, "a mean")
            found[prefix + "cv_std"] = mean(sd * sd_factor, "a std")
            if row.get("ci_low") and row.get("ci_high"):
                half = (float(row["ci_high"]) - float(row["ci_low"])) / 2
                for bound in ("ci_low", "ci_high"):
                    found[prefix + bound] = mean(sd * mean_factor + half * sd_factor, "an interval's bound")
        for name in PROBABILITIES:
            found[prefix + name] = (rule.probability, f"{rule.probability:g} absolute")
        for name in COUNTS:
            found[prefix + name] = (round(rule.splits * k), f"{rule.splits:g} of {k} splits")
    for key in flatten(METRICS, files[METRICS]):
        model, metric = key.split(":", 1)[1].split(".")[0], metric_name(key)
        found[key] = split(spread.split_sd(model, metric), spread.test_scale)
    verdict = json.loads(files[VERDICT])
    metric = verdict.get("metric", "")
    pairs = [("", verdict.get("best_neural"), verdict.get("best_classic"))]
    pairs += [
        (f"neural.{name}.", entry.get("neural"), entry.get("classic"))
        for name, entry in verdict.get("neural", {}).items()
    ]
    for prefix, neural, classic in pairs:
        sd = spread.pair_sd(str(neural), str(classic), metric)
        if sd is not None:
            found[f"{VERDICT}:{prefix}difference"] = mean(sd * mean_factor, "a difference")
            if not prefix:  # the headline pair: its posterior is kept for the picture
                found[f"{VERDICT}:posterior.mean"] = found[f"{VERDICT}:difference"]
                scale = verdict.get("posterior", {}).get("scale")
                if scale is not None:
                    found[f"{VERDICT}:posterior.scale"] = mean(float(scale) * sd_factor, "a std")
        for name in PROBABILITIES:
            found[f"{VERDICT}:{prefix}{name}"] = (rule.probability, f"{rule.probability:g} absolute")
    return {key: value for key, value in found.items() if value is not None}


def compare_elsewhere(
    committed: dict[str, float], fresh: dict[str, float], bounds: Mapping[str, tuple[float, str]], params: VerifyParams
) -> list[Row]:
    """Like compare_exactly, with each number's bound from its own uncertainty where it has one (never below
    verify.tolerance)."""
    rows = []
    for row in compare_exactly(committed, fresh, params):
        bound, basis = bounds.get(row.key, (0.0, ""))
        rows.append(
            Row(row.key, row.committed, row.fresh, max(row.tolerance, bound), basis if bound > row.tolerance else "")
        )
    return rows


def conclusions(files: Mapping[str, str]) -> dict[str, str]:
    """What the results conclude, each a phrase's name -> its value: which models ran and in which family, how
    the rows were split, the metric, the best of each family, the headline verdict, each neural entrant's verdict,
    the winner."""
    verdict = json.loads(files[VERDICT])
    table = list(csv.DictReader(io.StringIO(files[COMPARISON])))
    found = {f"model {row['model']}": row["family"] for row in table}
    found["split"] = str(verdict.get("split", "random"))  # the rows divided another way: another question
    found["metric"] = str(verdict.get("metric"))
    found["headline pair"] = f"{verdict.get('best_neural')} against {verdict.get('best_classic')}"
    found["headline verdict"] = str(verdict.get("outcome"))
    for name, entry in verdict.get("neural", {}).items():
        found[f"verdict of {name} against {entry.get('classic')}"] = str(entry.get("outcome"))
    found["winner"] = str(verdict.get("winner"))
    return found


def changed_conclusions(committed: Mapping[str, str], fresh: Mapping[str, str]) -> list[str]:
    """Each conclusion that differs, in words: `headline verdict: unclear -> better`, `model catboost: missing`."""
    changed = []
    for name in list(committed) + [name for name in fresh if name not in committed]:
        before, after = committed.get(name), fresh.get(name)
        if before == after:
            continue
        if name.startswith("model ") and after is None:
            changed.append(f"{name}: missing from the fresh results")
        elif name.startswith("model ") and before is None:
            changed.append(f"{name}: not in the committed results")
        else:
            changed.append(f"{name}: {before or 'absent'} -> {after or 'absent'}")
    return changed
