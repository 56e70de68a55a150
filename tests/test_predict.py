"""`quest predict` and the Predictor behind it and the served model: raw rows in, the network's answers out,
exactly as evaluate computed them for the test split; bad input is one line, and no partial output."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from quest.commands.predict import main as predict_main
from quest.core.errors import run_cli
from quest.data.artifacts import read_prepared
from quest.data.sources import load_dataset
from quest.learners.registry import load_params
from quest.stages.prepare import main as prepare_main
from tests.conftest import repo_params
from tests.support import GOOD


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> SimpleNamespace:
    """A prepared CSV table with numbers, booleans and a category, and a small MLP trained on it."""
    from quest.learners import backend

    backend.configure("jax", "cpu", 0)
    from quest.learners.mlp.learner import fit_mlp
    from quest.learners.networks import predict, save_mlp

    root = tmp_path_factory.mktemp("predict")
    rows = GOOD.splitlines()
    table = "\n".join([rows[0] + ",alone", *(f"{row},{i % 3 == 0}" for i, row in enumerate(rows[1:]))]) + "\n"
    (root / "data.csv").write_text(table)
    raw = repo_params(
        data={"source": "csv", "path": "data.csv", "target": "survived"},
        prepare={"folds": 2, "repeats": 1},
        train={"hidden_layers": [4], "epochs": 3},
    )
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    prepare_main(["--params", str(root / "params.yaml"), "--out", str(root / "processed")])
    params = load_params(root / "params.yaml")
    prepared = read_prepared(root / "processed")
    fitted = fit_mlp(prepared.x_train, prepared.y_train, task="classification", n_classes=2, spec=params.train, seed=0)
    save_mlp(fitted.model, root / "mlp.keras")
    (root / "config.json").write_text(json.dumps({"backend": "jax", "seed": 0, "train": {"device": "cpu"}}))
    table = load_dataset(params.data, seed=params.seed, root=root).features
    test_rows = table.iloc[np.load(root / "processed" / "test_rows.npy")]
    test_rows.to_csv(root / "test.csv", index=False)
    expected = predict(fitted.model, prepared.x_test, task="classification")
    return SimpleNamespace(root=root, test_rows=test_rows, expected=expected, schema=prepared.schema)


def quest_predict(trained: SimpleNamespace, capsys, source: Path, target: Path, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    argv = [
        "--input",
        str(source),
        "--output",
        str(target),
        "--model",
        str(trained.root / "mlp.keras"),
        "--data",
        str(trained.root / "processed"),
        *extra,
    ]
    try:
        run_cli("quest predict", predict_main, argv)
    except SystemExit as exit_:
        return int(exit_.code), capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_predictions_are_the_networks_answers_on_the_preprocessed_rows_exactly(trained, tmp_path, capsys):
    code, printed = quest_predict(trained, capsys, trained.root / "test.csv", tmp_path / "out.csv", "--chunk-rows", "3")
    assert code == 0, printed
    answers = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(answers.columns) == ["label", "probability_0", "probability_1"]
    np.testing.assert_array_equal(answers[["probability_0", "probability_1"]].to_numpy(), trained.expected)
    assert answers["label"].astype(str).tolist() == [str(k) for k in trained.expected.argmax(axis=1)]
    progress = [line for line in printed.splitlines() if line.startswith("predict: ") and "rows/s" in line]
    assert len(progress) == -(-len(trained.test_rows) // 3)  # a line per chunk of 3 rows
    assert progress[-1].startswith(f"predict: {len(trained.test_rows)}/{len(trained.test_rows)} rows")


def test_gaps_and_unseen_categories_are_handled_as_prepare_handles_them(trained, tmp_path, capsys):
    rows = trained.test_rows.head(2).copy()
    rows["port"] = ["Z", None]  # neither was seen in training: all zeros, as at test time
    rows["age"] = [None, rows["age"].iloc[1]]  # imputed with the training median
    rows["alone"] = [None, True]
    rows.to_csv(tmp_path / "gaps.csv", index=False)
    code, printed = quest_predict(trained, capsys, tmp_path / "gaps.csv", tmp_path / "out.csv")
    assert code == 0, printed
    from quest.learners.predictor import Predictor

    predictor = Predictor.from_files(
        model=trained.root / "mlp.keras",
        preprocessing=trained.root / "processed" / "preprocessing.json",
        schema=trained.root / "processed" / "schema.json",
    )
    inputs = predictor.preprocessing.apply(rows)
    port = [i for i, f in enumerate(predictor.preprocessing.features) if f.column == "port"]
    assert inputs[:, port].tolist() == [[0.0] * len(port)] * 2
    age = next(f for f in predictor.preprocessing.features if f.column == "age")
    assert inputs[0, predictor.preprocessing.features.index(age)] == np.float32((age.median - age.mean) / age.scale)
    assert np.isfinite(pd.read_csv(tmp_path / "out.csv")[["probability_0", "probability_1"]].to_numpy()).all()


BAD = [
    ("missing column", lambda rows: rows.drop(columns=["fare"]).to_csv(index=False), "missing column(s) fare;"),
    (
        "text in a number",
        lambda rows: rows.assign(age=["old", *rows["age"].iloc[1:]]).to_csv(index=False),
        "column 'age' takes numbers but row 1 holds 'old'",
    ),
    (
        "not a boolean",
        lambda rows: rows.assign(alone=["maybe", *rows["alone"].iloc[1:]]).to_csv(index=False),
        "column 'alone' takes true or false but row 1 holds 'maybe'",
    ),
    ("empty file", lambda rows: "", "the file is empty (no header row)"),
    ("header only", lambda rows: "age,fare,port,alone\n", "the header has no data rows under it"),
    ("no such file", None, "file not found"),
]


@pytest.mark.parametrize(("case", "make", "message"), BAD, ids=[case for case, _, _ in BAD])
def test_bad_input_is_one_line_and_leaves_no_output(trained, tmp_path, capsys, case, make, message):
    source = tmp_path / "in.csv"
    if make is not None:
        source.write_text(make(trained.test_rows.head(4)))
    target = tmp_path / "out.csv"
    target.write_text("an earlier answer\n")
    code, printed = quest_predict(trained, capsys, source, target)
    assert code == 2
    errors = [line for line in printed.splitlines() if line.startswith("quest predict: error: ")]
    assert len(errors) == 1 and message in errors[0], printed
    assert target.read_text() == "an earlier answer\n"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == (["in.csv", "out.csv"] if make else ["out.csv"])
