"""Generated hostile tables, not just listed ones: Hypothesis writes CSV files that are legal or nearly so (odd
encodings and delimiters, empty and duplicate headers, mixed types in a column, NaN, infinities, huge and
subnormal numbers, constant and all-missing columns, one-row classes, very wide or very short tables) and
runs them through prepare in-process, and the ones prepare accepts through a tiny train, evaluate and compare.

The property, for every table: the stage succeeds with finite model inputs and finite metrics, or it exits 2
with one `quest STAGE: error:` line and no traceback, and the earlier outputs stay byte for byte. Anything
else (a traceback, a second line, a changed output, a NaN) fails the test, and Hypothesis shrinks the table
to its smallest form. Each failure it found became a named case in tests/test_numbers.py.

CI runs a fixed, seeded budget (QUEST_FUZZ_EXAMPLES, 300 tables through prepare; a tenth of that, and at
least 12, through the pipeline); `make fuzz` runs ten times as many.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, seed, settings
from hypothesis import strategies as st

from quest.core.files import dvc_md5
from quest.data.artifacts import read_prepared
from quest.stages.prepare import main as prepare_main
from tests.conftest import repo_params
from tests.support import run_main as run

EXAMPLES = int(os.environ.get("QUEST_FUZZ_EXAMPLES", "300"))
PIPELINE_EXAMPLES = max(12, EXAMPLES // 10)
SETTINGS = {
    "deadline": None,  # a first JAX compile takes seconds; time is the budget's business, not each example's
    "derandomize": True,  # a fixed, seeded budget: CI draws the same tables every run
    "database": None,
    "phases": (Phase.explicit, Phase.generate, Phase.shrink),
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
}

HOSTILE_NUMBERS = [0.0, -0.0, 1e308, -1e308, 1.7976931348623157e308, 5e-324, 1e-300, 1e150, 1e30, 3.4e38, 2.0**53]
WORDS = ["a", "b", "c", "yes", "no", "NA", "nan", "null", "inf", "-inf", "1e400", "True", "false", "é", "x y", ""]


def numbers(*, extreme: bool = False) -> st.SearchStrategy:
    sane = st.one_of(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), st.none())
    if not extreme:
        return sane
    return st.one_of(sane, st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(HOSTILE_NUMBERS))


@st.composite
def column(draw: st.DrawFn, rows: int) -> list:
    """One column's cells, of one kind: numbers, whole numbers, words, booleans, one value, nothing, or a mix."""
    kinds = ["numbers"] * 4 + [
        "whole",
        "whole",
        "words",
        "words",
        "booleans",
        "constant",
        "missing",
        "mixed",
        "extreme",
    ]
    kind = draw(st.sampled_from(kinds))
    if kind in ("numbers", "extreme"):
        cell = numbers(extreme=kind == "extreme")
    elif kind == "whole":
        cell = st.one_of(st.integers(-5, 5), st.integers(-(2**70), 2**70), st.none())
    elif kind == "words":
        cell = st.one_of(
            st.sampled_from(WORDS), st.text(st.characters(exclude_characters="\x00"), max_size=4), st.none()
        )
    elif kind == "booleans":
        cell = st.one_of(st.booleans(), st.none())
    elif kind == "constant":
        value = draw(st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.sampled_from(WORDS), st.booleans()))
        cell = st.one_of(st.just(value), st.none()) if draw(st.booleans()) else st.just(value)
    elif kind == "missing":
        cell = st.none()
    else:
        cell = st.one_of(numbers(extreme=True), st.sampled_from(WORDS), st.booleans(), st.integers(-3, 3))
    return draw(st.lists(cell, min_size=rows, max_size=rows))


@st.composite
def target_column(draw: st.DrawFn, rows: int, *, mild: bool = False) -> list:
    """Classes (some with a single row), a regression target, one value, or any column at all."""
    kinds = ["classes", "classes", "labels", "regression", "regression"] + ([] if mild else ["constant", "any"])
    kind = draw(st.sampled_from(kinds))
    if kind == "classes":
        cell = st.integers(0, draw(st.integers(1, 4)))
    elif kind == "labels":
        cell = st.sampled_from(["yes", "no", "maybe", "é"][: draw(st.integers(1, 4))])
    elif kind == "regression":
        cell = st.floats(-1e3, 1e3, allow_nan=False) if draw(st.integers(0, 3)) < 3 else numbers(extreme=True)
    elif kind == "constant":
        cell = st.just(draw(st.sampled_from([3.5, 1, "x"])))
    else:
        return draw(column(rows))
    return draw(st.lists(cell, min_size=rows, max_size=rows))


@dataclass(frozen=True)
class Table:
    data: bytes
    target: str
    task: str

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example: the file as a user would see it
        return f"Table(target={self.target!r}, task={self.task!r}, data={self.data[:2000]!r})"


def cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def sometimes(draw: st.DrawFn, hostile: st.SearchStrategy, sane: object, *, mild: bool) -> object:
    """A table's aspect: sane most of the time, so most tables get deep into the stages; hostile one time in 12."""
    return draw(hostile) if not mild and draw(st.integers(0, 11)) == 11 else sane


@st.composite
def tables(draw: st.DrawFn, *, mild: bool = False) -> Table:
    """A CSV file's bytes, the target it names, and data.task. `mild` keeps the encoding, delimiter and header
    sane, so that most tables reach the pipeline."""
    rows = draw(st.integers(8, 60)) if mild else sometimes(draw, st.integers(0, 8), draw(st.integers(8, 60)), mild=mild)
    width = (
        draw(st.integers(1, 5)) if mild else sometimes(draw, st.integers(20, 60), draw(st.integers(1, 6)), mild=mild)
    )
    plain = [f"c{i}" for i in range(width)]
    names = sometimes(draw, st.lists(st.text(alphabet="abc_ ,;\"é'\n", max_size=3), min_size=width, max_size=width),
                      plain, mild=mild)  # fmt: skip
    features = [draw(column(rows)) for _ in names]
    target = draw(target_column(rows, mild=mild))
    position = draw(st.integers(0, width))
    target_name = sometimes(draw, st.sampled_from(["", "c0", " y"]), "y", mild=mild)
    header = names[:position] + [target_name] + names[position:]
    body = features[:position] + [target] + features[position:]
    delimiter = sometimes(draw, st.sampled_from([";", "\t", "|"]), ",", mild=mild)
    newline = sometimes(draw, st.just("\r\n"), "\n", mild=mild)
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    for r in range(rows):
        writer.writerow([cell_text(values[r]) for values in body])
    encoding = sometimes(draw, st.sampled_from(["utf-8-sig", "latin-1", "utf-16", "cp1252"]), "utf-8", mild=mild)
    asked = sometimes(draw, st.sampled_from(["missing", "Y", ""]), "y", mild=mild)
    task = draw(st.sampled_from(["auto", "auto", "classification", "regression"]))
    return Table(text.getvalue().encode(encoding, errors="replace"), asked, task)


TINY = {
    "prepare": {"test_size": 0.25, "folds": 2, "repeats": 1},
    "train": {"epochs": 3, "hidden_layers": [8], "early_stopping": {"patience": 2, "validation_fraction": 0.2}},
    "mlflow": {"registered_model": ""},
}


def write_case(root: Path, table: Table) -> Path:
    (root / "data.csv").write_bytes(table.data)
    params = repo_params(data={"source": "csv", "path": "data.csv", "target": table.target, "task": table.task}, **TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root / "params.yaml"


@dataclass(frozen=True)
class Done:
    code: int
    stderr: str


def run_stage(prog: str, main, argv: list[str], capsys: pytest.CaptureFixture) -> Done:
    """A stage in-process, behind the wrapper the `quest` command uses; anything but SystemExit goes on up."""
    return Done(*run(prog, main, argv, capsys))


def assert_one_line_or_success(done: Done, prog: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith(f"{prog}: error: ")]
    if done.code == 0:
        assert errors == [], done.stderr
    else:
        assert done.code == 2 and len(errors) == 1, (done.code, done.stderr)


def outcome(done: Done, prog: str) -> str:
    """The kind of answer, for --hypothesis-show-statistics: accepted, or the error with its specifics cut."""
    if done.code == 0:
        return "accepted"
    line = next(line for line in done.stderr.splitlines() if line.startswith(f"{prog}: error: "))
    text = line.removeprefix(f"{prog}: error: ").split(": ", 1)[-1]
    if os.environ.get("QUEST_FUZZ_VERBOSE"):
        return text
    return " ".join(word for word in text.split()[:5] if not any(ch.isdigit() for ch in word))


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.name.startswith(".") and not p.name.endswith(".lock"))


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    """A good earlier prepare of the embedded default, which every failing table must leave as it was."""
    root = tmp_path_factory.mktemp("earlier")
    (root / "params.yaml").write_text(yaml.safe_dump(repo_params(**TINY)))
    prepare_main(["--params", str(root / "params.yaml"), "--out", str(root / "processed")])
    return root / "processed"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def prepare_checked(root: Path, earlier: Path, table: Table, capsys) -> Done:
    """prepare on `table` over a copy of the earlier result: the property for prepare, asserted."""
    out = root / "processed"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(earlier, out)
    before = dvc_md5(out)
    params = write_case(root, table)
    done = run_stage("quest prepare", prepare_main, ["--params", str(params), "--out", str(out)], capsys)
    assert_one_line_or_success(done, "quest prepare")
    event(f"prepare: {outcome(done, 'quest prepare')}")
    if done.code:
        assert dvc_md5(out) == before
    else:
        prepared = read_prepared(out)  # consistent with its schema, or this raises
        assert np.isfinite(prepared.x_train).all() and np.isfinite(prepared.x_test).all()
        assert np.isfinite(prepared.y_train.astype(float)).all()
    assert leftovers(root) == []
    return done


@seed(20261202)
@settings(max_examples=EXAMPLES, **SETTINGS)
@given(table=tables())
def test_prepare_on_generated_tables(table, workdir, earlier, capsys):
    prepare_checked(workdir, earlier, table, capsys)


@pytest.mark.e2e
@seed(20261202)
@settings(max_examples=PIPELINE_EXAMPLES, **SETTINGS)
@given(table=tables(mild=True))
def test_pipeline_on_generated_tables(table, workdir, earlier, capsys, monkeypatch):
    """Tables prepare accepts, through train, evaluate and compare: finite metrics, or one line and nothing
    half-written."""
    from quest.stages import compare, evaluate, train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")  # MLflow sets it in-process
    if prepare_checked(workdir, earlier, table, capsys).code:
        return  # refused in one line, as the property allows
    params, data, reports = str(workdir / "params.yaml"), str(workdir / "processed"), workdir / "reports"
    model = workdir / "models" / "mlp.keras"
    steps = [
        ("quest train", train.main, ["--model", str(model), "--cv-out", str(reports / "cv_mlp.json")]),
        ("quest evaluate", evaluate.main, ["--model", str(model), "--reports", str(reports)]),
        ("quest compare", compare.main, ["--model", str(model), "--reports", str(reports)]),
    ]
    for prog, main, extra in steps:
        before = dvc_md5(reports) if reports.exists() else None
        done = run_stage(prog, main, ["--params", params, "--data", data, *extra], capsys)
        assert_one_line_or_success(done, prog)
        event(f"{prog}: {outcome(done, prog)}")
        if done.code:
            assert (dvc_md5(reports) if reports.exists() else None) == before
            return
    metrics = json.loads((reports / "cv_folds.json").read_text())
    assert all(math.isfinite(v) for scores in metrics.values() for values in scores.values() for v in values)
    assert leftovers(workdir) == []
