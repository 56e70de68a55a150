from pathlib import Path

import pytest
import yaml

from quest.core.errors import QuestError
from quest.learners.registry import load_params, params_from_dict
from tests.conftest import REPO, repo_params


def test_repo_params_load_into_typed_frozen_objects():
    params = load_params(REPO / "params.yaml")
    assert params.data.source == "breast_cancer"
    assert params.train.hidden_layers == (64, 32)
    assert params.train.learning_rate == 0.001
    assert params.train.data_parallel == 1  # off: one device, whatever the machine has
    lecture = ("logreg", "logreg_rbf", "knn5", "knn15", "tree", "forest", "boosting", "svm_rbf")
    assert params.compare.models == (*lecture, "hgb", "xgboost", "lightgbm", "catboost", "realmlp")
    realmlp = params.section("realmlp")  # a learner's own section (quest.learners.registry.sections)
    assert realmlp.hidden_layers == (256, 256, 256) and realmlp.learning_rate == "auto"
    with pytest.raises(AttributeError):
        params.train.epochs = 3  # frozen


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train": {"epoch": 5}}, "unknown key train.epoch; did you mean train.epochs?"),
        ({"train": {"epochs": "ten"}}, "train.epochs must be an integer (got 'ten')"),
        ({"train": {"epochs": True}}, "train.epochs must be an integer (got True)"),
        ({"train": {"learning_rate": -0.1}}, "train.learning_rate must be positive (got -0.1)"),
        ({"train": {"activation": "relux"}}, "train.activation must be one of relu, tanh, sigmoid (got 'relux')"),
        ({"train": {"optimizer": "rmsprop"}}, "train.optimizer must be one of adam, sgd (got 'rmsprop')"),
        (
            {"train": {"hidden_layers": [64, 0]}},
            "train.hidden_layers must be a list of positive layer sizes (got [64, 0])",
        ),
        ({"train": {"hidden_layers": 64}}, "train.hidden_layers must be a list (got 64)"),
        ({"prepare": {"test_size": 1.5}}, "prepare.test_size must be between 0 and 1 (exclusive) (got 1.5)"),
        ({"prepare": {"folds": 1}}, "prepare.folds must be an integer from 2 to 50 (got 1)"),
        ({"data": {"source": "parquet"}}, "data.source must be one of breast_cancer, wine, diabetes, csv, synthetic"),
        ({"data": {"source": "csv"}}, "data.path must be a CSV path when data.source is csv (got None)"),
        ({"data": {"task": "ranking"}}, "data.task must be one of classification, regression, auto (got 'ranking')"),
        ({"train": {"backend": "mxnet"}}, "train.backend must be one of tensorflow, jax, torch (got 'mxnet')"),
        ({"train": {"data_parallel": 0}}, "train.data_parallel must be a positive device count or all (got 0)"),
        ({"train": {"data_parallel": "two"}}, "train.data_parallel must be an integer or all (got 'two')"),
        ({"train": {"data_parallel": None}}, "train.data_parallel must be an integer or all (got None)"),
        (
            {"train": {"backend": "torch", "engine": "fit", "data_parallel": "all"}},
            "train.data_parallel must be 1 when train.backend is torch",
        ),
        ({"seedz": 1}, "unknown key seedz; did you mean seed?"),
        (
            {"compare": {"executor": "ray://h:1"}},
            "compare.executor must be local or dask://host:port (got 'ray://h:1')",
        ),
        ({"prepare": {"max_train_rows": 20}}, "prepare.max_train_rows must be null (every training row) or at least"),
        ({"suite": {"profile": "huge"}}, "suite.profile must be one of lite, full (suite.profiles) (got 'huge')"),
        ({"suite": {"tables": {"x": {"source": "digitz"}}}}, "suite.tables.x.source: no table named 'digitz'; did"),
        ({"suite": {"tables": {"x": {"path": "a.csv"}}}}, "suite.tables.x.target must be a column name when the"),
        ({"suite": {"tables": {"x": {"source": "oj", "task": "rank"}}}}, "suite.tables.x.task must be one of"),
        ({"suite": {"tables": {"x": {"source": "oj", "metric": "auc"}}}}, "suite.tables.x.metric must be one of"),
        ({"suite": {"tables": {"x": {"source": "oj", "keep": "id"}}}}, "suite.tables.x.keep must be a list"),
        ({"data": {"missing_target": "impute"}}, "data.missing_target must be one of drop, error (got 'impute')"),
        ({"compare": {"models": ["logreg", "logreg"]}}, "compare.models must be a list naming each model once"),
        (
            {"compare": {"baselines": ["logreg"]}},  # its name until it listed the neural entrants too
            "compare.baselines is now compare.models; rename the key (its value is as before)",
        ),
        ({"tune": {"trials": -1}}, "tune.trials must be an integer from 0 (off) to 10000 (got -1)"),
        ({"tune": {"spaces": {"logreg": {"C": {"low": 0, "high": 1, "log": True}}}}}, "log: true only with low > 0"),
        ({"tune": {"spaces": {"logreg": {"C": {"low": 2, "high": 1}}}}}, "tune.spaces.logreg.C must be numbers with"),
        ({"tune": {"spaces": {"logreg": {"C": []}}}}, "tune.spaces.logreg.C must be a non-empty list of choices"),
        ({"learning": {"fractions": [0.5, 1.5]}}, "learning.fractions must be a list of fractions in (0, 1]"),
        (
            {"tune": {"storage": "postgresql+psycopg://quest:s3cret@db:5432/optuna"}},  # shown without it
            "tune.storage must be a URL without a password, which params.yaml (committed, logged to MLflow) must not "
            "hold: put it in PGPASSFILE or PGPASSWORD (docs/team.md) (got 'postgresql+psycopg://quest:***@db:5432/",
        ),
    ],
)
def test_bad_params_name_the_key_and_what_is_allowed(overrides, message):
    with pytest.raises(QuestError) as caught:
        params_from_dict(repo_params(**overrides))
    assert message in str(caught.value)


def test_missing_key_is_named():
    raw = repo_params()
    del raw["train"]["dropout_rate"]
    with pytest.raises(QuestError, match=r"missing key train\.dropout_rate"):
        params_from_dict(raw)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "the file is empty"), ("train: [unclosed\n", "invalid YAML at line 2"), ("- a\n- b\n", "must be a mapping")],
)
def test_unreadable_params_files(tmp_path: Path, text: str, message: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(QuestError, match=message):
        load_params(path)


def test_missing_params_file(tmp_path: Path):
    with pytest.raises(QuestError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_a_suite_table_runs_with_its_entry_its_profile_and_the_rest_of_params_yaml(tmp_path):
    raw = repo_params(train={"epochs": 7})
    raw["data"]["keep"] = ["top_level_only"]  # the single table's: a suite table keeps what its entry says
    raw["suite"]["tables"] = {"t": {"path": "data/raw/t.csv", "target": "y", "drop": ["id"], "keep": ["row"],
                              "split": {"kind": "group", "column": "who"}, "metric": "f1"},
                              "oj": {"source": "oj"}}  # fmt: skip
    raw["suite"]["profiles"]["lite"] = {"prepare": {"repeats": 1, "max_train_rows": 500}, "train": {"seeds": 2}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    params = load_params(path, table="t")
    assert (params.data.source, params.data.path, params.data.target, params.data.drop) == (
        "csv", "data/raw/t.csv", "y", ("id",))  # fmt: skip
    assert (params.data.keep, load_params(path, table="oj").data.keep) == (("row",), ())
    assert (params.prepare.split.kind, params.prepare.split.column) == ("group", "who")
    assert (params.prepare.repeats, params.prepare.max_train_rows, params.train.seeds) == (1, 500, 2)  # the profile
    assert params.train.epochs == 7 and params.compare.metric == "f1"
    assert (params.mlflow.experiment, params.mlflow.registered_model) == ("quest-suite", "")
    assert load_params(REPO / "params.yaml", table="ames").compare.metric == "tabarena"  # unless an entry says
    with pytest.raises(QuestError, match=r"^params.yaml: suite.tables has no table 'x'; it has oj, t$"):
        load_params(path, table="x")
    raw["suite"]["profiles"]["lite"] = {"prepare": {"repeats": 0}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(QuestError, match=r"^suite table t \(lite profile\): params.yaml: prepare.repeats must be"):
        load_params(path, table="t")
