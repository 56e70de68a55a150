import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quest.core.errors import QuestError
from quest.data.sources import load_dataset, read_csv, resolve_task, synthetic_frame
from quest.learners.registry import params_from_dict
from tests.conftest import repo_params


def csv_params(path: Path, target: str = "survived", drop: list[str] | None = None, task: str = "auto", **more):
    data = {"source": "csv", "path": str(path), "target": target, "drop": drop or [], "task": task, **more}
    return params_from_dict(repo_params(data=data)).data


def write(tmp_path: Path, text: str | bytes, name: str = "table.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_csv_with_mixed_types_loads(tmp_path, mixed_frame):
    path = tmp_path / "mixed.csv"
    mixed_frame.to_csv(path, index=False)
    dataset = load_dataset(csv_params(path, drop=["fare"]), seed=0, root=tmp_path)
    assert list(dataset.features.columns) == ["age", "alone", "port"]
    assert dataset.target.tolist() == [0, 1, 1, 1, 0, 0]
    assert dataset.task == "classification"
    assert dataset.name == "mixed"


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, "the file is empty (no header row)"),
        ("a,b,survived\n", {}, "the header has no data rows under it"),
        ("a;b;survived\n1;2;0\n3;4;1\n", {"target": "a;b;survived"}, "only one column"),
        ("a,a,survived\n1,2,0\n", {}, "duplicate column names: a"),
        ("a,b,survived\n1,2,0\n1,2,3,4\n", {}, "malformed CSV"),
        (
            "a,b,Survive\n1,2,0\n3,4,1\n",
            {},
            "'survived' (data.target) not found; did you mean 'Survive'? (columns: a, b, Survive)",
        ),
        ("a,b,label\n1,2,0\n3,4,1\n", {}, "target column 'survived' (data.target) not found (columns: a, b, label)"),
        ("a,b,survived\n1,2,0\n3,4,0\n", {}, "target column 'survived' has a single class (0)"),
        (
            "a,b,survived\n1,2,0\n3,4,\n5,6,1\n",
            {"missing_target": "error"},
            "target column 'survived' has 1 missing value(s) and data.missing_target is error; set it to drop",
        ),
        ("a,b,survived\n1,2,\n3,4,\n", {}, "target column 'survived' (data.target) has no value in any of its 2 rows"),
        (
            "a,b,survived\n1,2,0\n3,4,1\n",
            {"keep": ["bb"]},
            "data.keep names 'bb', which is not a column; did you mean 'b'?",
        ),
        ("a,b,survived\n1,x,0\n3,4,1\n", {"drop": ["c"]}, "data.drop names 'c', which is not a column"),
        ("a,b,survived\n1,2,0\n3,4,1\n", {"drop": ["survived"]}, "data.drop lists the target column 'survived'"),
        ("a,b,survived\n1,inf,0\n3,4,1\n", {}, "column 'b' holds an infinite value at row 1"),
    ],
)
def test_bad_csv_gets_one_clear_message(tmp_path, text, kwargs, message):
    path = write(tmp_path, text)
    with pytest.raises(QuestError) as caught:
        load_dataset(csv_params(path, **kwargs), seed=0, root=tmp_path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_junk_in_a_numeric_column_names_column_row_and_value(tmp_path):
    rows = "\n".join(f"{i},{i % 2}" for i in range(20))
    path = write(tmp_path, "age,survived\n" + rows + "\nabc,1\n")
    with pytest.raises(QuestError, match=r"column 'age' is numeric but row 21 holds 'abc'"):
        load_dataset(csv_params(path), seed=0, root=tmp_path)


def test_not_utf8_and_missing_file(tmp_path):
    path = write(tmp_path, b"a,b,survived\n\xff\xfe,1,0\n")
    with pytest.raises(QuestError, match="not UTF-8 text"):
        read_csv(path)
    with pytest.raises(QuestError, match=r"data.path: file not found: .*absent.csv"):
        load_dataset(csv_params(tmp_path / "absent.csv"), seed=0, root=tmp_path)


def test_entirely_missing_column_is_dropped_with_notice(tmp_path, capsys):
    path = write(tmp_path, "a,empty,survived\n1,,0\n2,,1\n3,,0\n")
    dataset = load_dataset(csv_params(path), seed=0, root=tmp_path)
    assert list(dataset.features.columns) == ["a"]
    assert "column 'empty' is entirely missing and is ignored" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("values", "task"),
    [
        ([0, 1, 1, 0], "classification"),
        (["yes", "no", "yes", "no"], "classification"),
        ([1.5, 2.25, 3.0, 4.75], "regression"),
        (list(range(30)), "regression"),  # many distinct integers: a count, not classes
        (list(range(5)) * 6, "classification"),
    ],
)
def test_auto_task(values, task):
    assert resolve_task(pd.Series(values, name="y"), "auto", label="t") == task


def test_regression_needs_a_numeric_target():
    with pytest.raises(QuestError, match="data.task is regression but target 'y' is not numeric"):
        resolve_task(pd.Series(["a", "b"], name="y"), "regression", label="t")


@pytest.mark.parametrize("kind", ["moons", "spirals", "xor", "classification"])
def test_synthetic_generators_are_seeded(kind):
    spec = params_from_dict(repo_params(data={"synthetic": {"kind": kind, "n_samples": 200}})).data.synthetic
    first, again, other = (synthetic_frame(spec, seed=s) for s in (7, 7, 8))
    assert len(first) == 200
    assert set(first["target"]) == {0, 1}
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_embedded_datasets_ship_with_scikit_learn():
    for source, task, rows in [
        ("breast_cancer", "classification", 569),
        ("wine", "classification", 178),
        ("diabetes", "regression", 442),
    ]:
        dataset = load_dataset(params_from_dict(repo_params(data={"source": source})).data, seed=0, root=Path("."))
        assert (dataset.task, len(dataset.target)) == (task, rows)
    cancer = load_dataset(params_from_dict(repo_params()).data, seed=0, root=Path("."))
    assert sorted(set(cancer.target)) == ["benign", "malignant"]
    assert np.isfinite(cancer.features.to_numpy()).all()


def test_a_file_too_large_for_memory_is_refused_before_reading(tmp_path, monkeypatch):
    import quest.data.sources

    path = write(tmp_path, "a,b,survived\n" + "1,2,0\n3,4,1\n" * 500)
    monkeypatch.setattr(quest.data.sources, "available_memory", lambda: 5000)  # bytes: less than twice the file
    with pytest.raises(QuestError, match=r"GiB of CSV needs about 2x that in memory and 0\.0 GiB is available"):
        load_dataset(csv_params(path), seed=0, root=tmp_path)
    monkeypatch.setattr(quest.data.sources, "available_memory", lambda: 0)  # unknown: read it and see
    assert len(load_dataset(csv_params(path), seed=0, root=tmp_path).target) == 1000


def test_available_memory_is_read_from_the_system():
    from quest.data.sources import available_memory

    assert available_memory() > 2**20


def test_rows_without_a_label_are_left_out_with_a_notice(tmp_path, capsys):
    path = write(tmp_path, "a,g,survived\n1,x,0\n2,y,\n3,z,1\n4,x,\n5,y,0\n")
    data = dataclasses.replace(csv_params(path), drop=(), keep=())
    dataset = load_dataset(data, seed=0, root=tmp_path)
    assert dataset.features.to_dict("list") == {"a": [1, 3, 5], "g": ["x", "z", "y"]}
    assert dataset.target.tolist() == [0, 1, 0]
    assert dataset.features.index.tolist() == [0, 1, 2]  # numbered anew: prepare's row positions hold
    err = capsys.readouterr().err
    assert "2 of 5 rows have no value in target column 'survived' and are left out (data.missing_target: drop)" in err
    assert "3 rows remain" in err


def test_data_keep_and_data_drop_may_not_name_one_column(tmp_path):
    with pytest.raises(QuestError, match=r"params.yaml: data.keep must be columns that data.drop does not leave out"):
        csv_params(tmp_path / "t.csv", drop=["a"], keep=["a"])
