"""Every bad input a user can hand `quest prepare`: one line naming the problem, exit code 2, no traceback,
and the earlier result in the output directory untouched.

Each case is (id, CSV text or bytes or None, params overrides, the message's telling part). The unit tests of
quest.params and quest.data.sources check the messages in full; this table checks the promise at the door.
Most cases run the stage in-process, through the same wrapper the `quest` command uses (`run_cli`); the
cases in THROUGH_THE_COMMAND run the real `quest prepare` in a subprocess, so the door itself is tested too.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from quest.core.errors import run_cli
from quest.core.files import dvc_md5
from quest.stages.prepare import main as prepare_main
from tests.conftest import repo_params
from tests.support import CSV, GOOD, assert_user_error, quest


def csv_params(**data) -> dict:
    return {"data": {"source": "csv", "path": "data.csv", "target": "survived", **data}}


PARAMS_CASES = [
    ("params missing", None, "params file not found"),
    ("params empty", "", "the file is empty"),
    ("params invalid YAML", "train: [unclosed\n", "invalid YAML"),
    ("params not a mapping", "- a\n- b\n", "must be a mapping"),
    ("unknown key", {"train": {"epoch": 5}}, "unknown key train.epoch; did you mean train.epochs?"),
    ("wrong type", {"train": {"epochs": "ten"}}, "train.epochs must be an integer (got 'ten')"),
    ("negative learning rate", {"train": {"learning_rate": -0.1}}, "train.learning_rate must be positive"),
    ("test size above 1", {"prepare": {"test_size": 1.5}}, "prepare.test_size must be between 0 and 1"),
    ("hidden layer of size 0", {"train": {"hidden_layers": [8, 0]}}, "train.hidden_layers must be a list of pos"),
    ("unknown activation", {"train": {"activation": "relux"}}, "train.activation must be one of relu, tanh"),
    ("unknown optimizer", {"train": {"optimizer": "rmsprop"}}, "train.optimizer must be one of adam, sgd"),
    ("unknown backend", {"train": {"backend": "mxnet"}}, "train.backend must be one of tensorflow, jax, torch"),
    ("unknown source", {"data": {"source": "parquet"}}, "data.source must be one of breast_cancer"),
    ("fast engine off jax", {"train": {"backend": "tensorflow"}}, "train.engine must be fit when train.backend"),
]

CSV_CASES = [
    ("csv missing", None, {}, "data.path: file not found"),
    ("csv empty", "", {}, "the file is empty (no header row)"),
    ("header only", "a,b,survived\n", {}, "the header has no data rows under it"),
    ("wrong delimiter", "a;b;survived\n1;2;0\n3;4;1\n", {}, "only one column ('a;b;survived')"),
    ("not UTF-8", "name,survived\nJos\xe9,1\nAnn,0\n".encode("latin-1"), {}, "not UTF-8 text"),
    ("binary file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01", {}, "is it a CSV file?"),
    ("NUL bytes", b"a,b,survived\n1,\x00,0\n", {}, "is it a CSV file?"),
    ("ragged rows", "a,b,survived\n1,2,0\n1,2,3,4\n", {}, "malformed CSV"),
    ("duplicate columns", "a,a,survived\n1,2,0\n", {}, "duplicate column names: a"),
    ("target absent", "a,b,label\n1,2,0\n3,4,1\n", {}, "target column 'survived' (data.target) not found"),
    ("target one class", "a,b,survived\n1,2,0\n3,4,0\n", {}, "target column 'survived' has a single class"),
    ("target all NaN", "a,b,survived\n1,2,\n3,4,\n5,6,\n", {}, "target column 'survived' (data.target) has no value"),
    (
        "target with NaN, refused",
        "a,b,survived\n1,2,0\n3,4,\n5,6,1\n",
        {"missing_target": "error"},
        "target column 'survived' has 1 missing value(s) and data.missing_target is error",
    ),
    ("text in a numeric column", GOOD.replace("71.3", "n/a?"), {}, "column 'fare' is numeric but row 2 holds 'n/a?'"),
    ("infinity", "a,b,survived\n1,inf,0\n3,4,1\n", {}, "column 'b' holds an infinite value at row 1"),
    ("drop names no column", GOOD, {"drop": ["cabin"]}, "data.drop names 'cabin', which is not a column"),
    ("a class of one row", GOOD + "30,9.5,S,2\n", {}, "class '2' has a single row"),
    ("fewer rows of a class than folds", GOOD + "".join(f"3{i},9,S,2\n" for i in range(4)), {}, "prepare.folds=5 but"),
    ("fewer rows than folds", CSV, {}, "prepare.folds=5 but"),
]


# GOOD with a customer (4 rows each, both classes in each) and a day per row, for prepare.split.
DAYS = [f"2024-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in range(48)]
GROUPED = (
    "\n".join(
        ["age,fare,port,customer,day,survived"]
        + [f"{20 + i},{10 + i}.5,{'SCQ'[i % 3]},c{i // 4},{DAYS[i]},{i % 2}" for i in range(48)]
    )
    + "\n"
)


def split(**settings) -> dict:
    """prepare's overrides for a split (one repeat in time, which has one order)."""
    chosen = {"kind": "group", "column": "customer", "gap": 0, "feature": False, **settings}
    return {"split": chosen, **({"repeats": 1} if chosen["kind"] == "time" else {})}


SPLIT_CASES = [
    ("split column absent", GROUPED, split(column="custmer"),
     "prepare.split.column 'custmer' is not a column; did you mean 'customer'?"),
    ("split column is the target", GROUPED, split(column="survived"), "prepare.split.column 'survived' is the target"),
    ("fewer groups than folds + 1", GROUPED, {**split(), "folds": 12},
     "prepare.split.column 'customer' holds 12 groups; the test split and prepare.folds=12 folds need at least 13"),
    ("a row without its group", GROUPED.replace(",c3,", ",,", 1), split(),
     "prepare.split.column 'customer' is empty in row 13; every row needs its group"),
    ("a time that does not parse", GROUPED.replace("2024-01-05", "soon"), split(kind="time", column="day"),
     "prepare.split.column 'day' holds 'soon' in row 5, which is not a date, a datetime or a number"),
    ("a class that cannot reach every fold", GROUPED + "".join(f"6{i},9,S,c{i // 3},2024-03-0{i + 1},2\n"
     for i in range(6)), split(), "class '2'"),
    ("a gap that leaves a fold nothing", GROUPED, split(kind="time", column="day", gap=10),
     "prepare.split.gap=10 leaves fold 1 no earlier row to train on"),
    ("repeats of a time split", GROUPED, {**split(kind="time", column="day"), "repeats": 3},
     "prepare.repeats must be 1 when prepare.split.kind is time"),
    ("a gap at random", GROUPED, split(kind="random", column=None, gap=2),
     "prepare.split.gap must be 0 unless prepare.split.kind is time"),
    ("a column at random", GROUPED, split(kind="random"), "prepare.split.column must be null when"),
    ("a group split without its column", GROUPED, split(column=None),
     "prepare.split.column must be a column name when prepare.split.kind is group"),
]  # fmt: skip


THROUGH_THE_COMMAND = {"params invalid YAML", "not UTF-8", "target absent", "a time that does not parse"}


@dataclass(frozen=True)
class Done:
    """What a run of prepare left: its exit code and what it printed on stderr."""

    returncode: int
    stderr: str


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    """A good earlier result, prepared once: every failing case starts from a copy of it."""
    root = tmp_path_factory.mktemp("earlier")
    (root / "data.csv").write_text(GOOD)
    (root / "params.yaml").write_text(yaml.safe_dump(repo_params(**csv_params())))
    prepare_main(["--params", str(root / "params.yaml"), "--out", str(root / "processed")])
    return root


def prepare(root: Path, capsys: pytest.CaptureFixture, *, command: bool) -> Done:
    """`quest prepare` in `root`: the real command in a subprocess, or the stage in-process behind run_cli."""
    if command:
        done = quest("prepare", "--params", "params.yaml", "--out", "processed", cwd=root)
        return Done(done.returncode, done.stderr)
    capsys.readouterr()
    argv = ["--params", str(root / "params.yaml"), "--out", str(root / "processed")]
    try:
        run_cli("quest prepare", prepare_main, argv)
    except SystemExit as exit_:
        return Done(int(exit_.code), capsys.readouterr().err)
    return Done(0, capsys.readouterr().err)


def run_case(earlier: Path, tmp_path: Path, capsys, case: str, params_text: str | None, csv: str | bytes | None):
    shutil.copytree(earlier / "processed", tmp_path / "processed")
    if params_text is not None:
        (tmp_path / "params.yaml").write_text(params_text)
    if isinstance(csv, bytes):
        (tmp_path / "data.csv").write_bytes(csv)
    elif csv is not None:
        (tmp_path / "data.csv").write_text(csv)
    before = dvc_md5(tmp_path / "processed")
    return prepare(tmp_path, capsys, command=case in THROUGH_THE_COMMAND), before


@pytest.mark.parametrize(("case", "params", "message"), PARAMS_CASES, ids=[c[0] for c in PARAMS_CASES])
def test_bad_params(earlier, tmp_path, capsys, case, params, message):
    text = params if isinstance(params, str) or params is None else yaml.safe_dump(repo_params(**params))
    done, before = run_case(earlier, tmp_path, capsys, case, text, GOOD)
    assert_user_error(done, "quest prepare: error: ", message)
    assert dvc_md5(tmp_path / "processed") == before


@pytest.mark.parametrize(("case", "csv", "data", "message"), CSV_CASES, ids=[c[0] for c in CSV_CASES])
def test_bad_csv(earlier, tmp_path, capsys, case, csv, data, message):
    done, before = run_case(earlier, tmp_path, capsys, case, yaml.safe_dump(repo_params(**csv_params(**data))), csv)
    assert_user_error(done, "quest prepare: error: ", message)
    assert dvc_md5(tmp_path / "processed") == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no half-written leftovers


def test_what_is_handled_rather_than_refused(tmp_path, capsys):
    """An entirely empty column is dropped with a notice; a path outside the repo is used and said so."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    header, *rows = GOOD.splitlines()
    (outside / "table.csv").write_text("\n".join([f"{header},cabin", *(f"{row}," for row in rows)]) + "\n")
    root = tmp_path / "repo"
    root.mkdir()
    params = repo_params(**csv_params(path="../elsewhere/table.csv"))
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    done = prepare(root, capsys, command=False)
    assert done.returncode == 0, done.stderr
    assert "column 'cabin' is entirely missing" in done.stderr
    assert f"data.path {outside / 'table.csv'} is outside the repository" in done.stderr
    schema = yaml.safe_load((root / "processed" / "schema.json").read_text())
    assert schema["source"] == str(outside / "table.csv")  # recorded, resolved


@pytest.mark.parametrize(("case", "csv", "prepare", "message"), SPLIT_CASES, ids=[c[0] for c in SPLIT_CASES])
def test_bad_split(earlier, tmp_path, capsys, case, csv, prepare, message):
    params = yaml.safe_dump(repo_params(**csv_params(), prepare=prepare))
    done, before = run_case(earlier, tmp_path, capsys, case, params, csv)
    assert_user_error(done, "quest prepare: error: ", message)
    assert dvc_md5(tmp_path / "processed") == before
