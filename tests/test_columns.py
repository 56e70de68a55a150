"""Columns typed as the field types them (quest.data.columns), what each becomes (quest.data.preprocess), the
columns left out, and prepare's memory guard."""

import json

import numpy as np
import pandas as pd
import pytest

from quest.core import paths
from quest.core.errors import QuestError
from quest.data.artifacts import OTHER_CATEGORY, Column, Preprocessing, date_part, date_seconds
from quest.data.columns import MANY_VALUES, LeftOut, type_columns
from quest.data.preprocess import fit_preprocessing
from quest.data.sources import Dataset
from quest.stages.prepare import prepare

ROWS = 200
COUNTY_SHARES = 1 / np.arange(1, 91) / (1 / np.arange(1, 91)).sum()  # a few large, many small


def stops(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """A table as a police-stops export holds it: a row number, a unique identifier, an ISO time stamp, a
    county with many values, a few-valued category, a constant column and a number."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2019-01-01T00:00:00")
    return pd.DataFrame({
        "row": rng.permutation(rows),
        "stop_id": [f"ST-{i:06d}" for i in rng.permutation(rows) * 7],
        "stopped_at": [f"{start + np.timedelta64(int(s), 's')}Z" for s in rng.integers(0, 3e7, rows)],
        "county": [f"county {c}" for c in rng.choice(90, rows, p=COUNTY_SHARES)],
        "race": rng.choice(["a", "b", "c"], rows),
        "state": ["CT"] * rows,
        "age": rng.integers(16, 90, rows).astype(float),
    })  # fmt: skip


def test_a_table_as_exported_is_typed_as_the_field_types_it():
    frame = stops()
    columns, left_out = type_columns(frame, rows=len(frame))
    assert [(c.name, c.kind, c.grouped) for c in columns] == [
        ("stopped_at", "datetime", False),
        ("county", "categorical", True),
        ("race", "categorical", False),
        ("age", "numeric", False),
    ]
    assert columns[0].date_format == "ISO8601"
    assert left_out == (  # fmt: skip
        LeftOut(
            "row",
            f"is unique per row and counts the rows (whole numbers from 0 to {ROWS - 1})",
            "numeric, whole numbers",
        ),
        LeftOut(
            "stop_id",
            f"is unique per row ({ROWS} distinct values in as many rows): an identifier",
            "categorical, many values",
        ),
        LeftOut("state", "holds one value only in the training split", "categorical"),
    )


def test_data_keep_keeps_a_column_that_would_be_left_out():
    frame = stops()
    columns, left_out = type_columns(frame, rows=len(frame), keep=("row", "stop_id"))
    assert [c.name for c in columns][:2] == ["row", "stop_id"]
    assert [c.name for c in left_out] == ["state"]
    # A kept identifier is a many-valued category, never one input per value: every value here is rare.
    kept = fit_preprocessing(frame, columns)
    assert [f.name for f in kept.features if f.column == "stop_id"] == [f"categorical__stop_id_{OTHER_CATEGORY}"]


def test_a_many_valued_column_keeps_its_frequent_values_and_groups_the_rest():
    values = [f"v{i}" for i in range(3) for _ in range(20)] + [f"rare{i}" for i in range(MANY_VALUES + 5)]
    train = pd.DataFrame({"city": values, "x": np.arange(len(values), dtype=float) % 7})
    columns, _ = type_columns(train, rows=len(train))
    assert columns[0] == Column("city", "categorical", ("v0", "v1", "v2"), grouped=True)
    preprocessing = fit_preprocessing(train, columns)
    assert [f.name for f in preprocessing.features] == [
        "numeric__x",
        "categorical__city_v0",
        "categorical__city_v1",
        "categorical__city_v2",
        f"categorical__city_{OTHER_CATEGORY}",
    ]
    rows = pd.DataFrame({"city": ["v1", "rare3", "never seen", None], "x": [0.0] * 4})
    np.testing.assert_array_equal(preprocessing.apply(rows)[:, 1:], [[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1],
                                                                     [0, 0, 0, 1]])  # fmt: skip
    stored = Preprocessing.from_dict(json.loads(json.dumps(preprocessing.to_dict(), allow_nan=False)))
    np.testing.assert_array_equal(stored.apply(rows), preprocessing.apply(rows))


def test_free_text_is_left_out_and_said_so():
    words = ["the", "officer", "noted", "a", "broken", "tail", "light", "on", "the", "vehicle", "near", "the", "exit"]
    rng = np.random.default_rng(1)
    notes = [" ".join(rng.choice(words, 8)) for _ in range(ROWS)]
    train = pd.DataFrame({"note": notes, "x": rng.normal(size=ROWS)})
    columns, left_out = type_columns(train, rows=ROWS)
    assert [c.name for c in columns] == ["x"]
    assert left_out[0].name == "note" and left_out[0].why.startswith("is free text (")


@pytest.mark.parametrize(
    ("text", "date_format"),
    [
        ("2019-03-15T10:30:00Z", "ISO8601"),
        ("2019-03-15 10:30", "ISO8601"),
        ("03/15/2019 10:30", "%m/%d/%Y %H:%M"),
        ("15 Mar 2019", "%d %b %Y"),
    ],
)
def test_dates_in_common_formats_become_their_parts(text, date_format):
    train = pd.DataFrame({"when": [text, "2019-01-01T00:00:00Z" if date_format == "ISO8601" else text, None]})
    column = type_columns(train, rows=3, keep=("when",))[0][0]
    assert (column.kind, column.date_format) == ("datetime", date_format)
    seconds = date_seconds(pd.Series([text]), date_format)
    parts = {part: date_part(seconds, part)[0] for part in ("year", "month", "day", "weekday", "hour")}
    hour = 0.0 if date_format == "%d %b %Y" else 10.0
    assert parts == {"year": 2019, "month": 3, "day": 15, "weekday": 4, "hour": hour}  # a Friday


def test_a_date_column_becomes_the_parts_that_vary_and_the_time_itself():
    train = pd.DataFrame({"when": ["2019-01-07", "2019-03-15", None, "2019-03-16"], "x": [1.0, 2.0, 3.0, 4.0]})
    preprocessing = fit_preprocessing(train, type_columns(train, rows=4)[0])
    assert [f.name for f in preprocessing.features] == [
        "numeric__x",
        "datetime__when_month",
        "datetime__when_day",
        "datetime__when_weekday",
        "datetime__when_seconds",
    ]  # one year and midnight only: no year, no hour
    inputs = preprocessing.apply(pd.DataFrame({"when": ["2019-03-15", "not a date"], "x": [1.0, 1.0]}))
    month = preprocessing.features[1]
    assert inputs[0, 1] == np.float32((3 - month.mean) / month.scale)
    assert inputs[1, 1] == np.float32((month.median - month.mean) / month.scale)  # unreadable: imputed
    with pytest.raises(QuestError, match=r"column 'when' takes dates \(ISO8601\) but row 2 holds 'not a date'"):
        preprocessing.check(pd.DataFrame({"when": ["2019-03-15", "not a date"], "x": [1.0, 1.0]}), label="rows")


def test_a_year_or_a_month_alone_is_no_time_stamp():
    train = pd.DataFrame({"period": ["2019-01", "2019-02", "2019-01"], "x": [1.0, 2.0, 3.0]})
    assert type_columns(train, rows=3)[0][0].kind == "categorical"


def dataset(frame: pd.DataFrame) -> Dataset:
    target = pd.Series(np.arange(len(frame)) % 2, name="y")
    return Dataset(frame, target, "stops", "stops.csv", "classification")


def test_prepare_names_every_column_it_leaves_out_and_records_them():
    result = prepare(dataset(stops()), test_size=0.25, folds=3, seed=0)
    left_out = [n for n in result["notices"] if "left out" in n]
    assert left_out[1] == (
        f"column 'stop_id' is unique per row ({ROWS * 3 // 4} distinct values in as many rows): an identifier: "
        "left out of the model inputs, as it cannot generalise; data.keep: [stop_id] keeps it"
    )
    assert [name for name, _ in result["schema"].left_out] == ["row", "stop_id", "state"]
    assert any("column 'stopped_at' looks like a time stamp" in n for n in result["notices"])
    assert result["schema"].features[0] == "numeric__age"


def test_prepare_refuses_inputs_that_would_not_fit_in_memory_naming_the_widest_column(monkeypatch):
    frame = stops().assign(beat=[f"b{i % 38}" for i in range(ROWS)])  # 38 values: one-hot, 38 inputs
    monkeypatch.setenv("QUEST_MEMORY_LIMIT", "10K")
    with pytest.raises(QuestError) as caught:
        prepare(dataset(frame), test_size=0.25, folds=3, seed=0)
    message = str(caught.value)
    assert message.startswith("stops.csv: the model inputs, 200 rows x ")
    assert "column 'beat' makes 38 of the inputs" in message and "prepare.max_train_rows" in message
    monkeypatch.setenv("QUEST_MEMORY_LIMIT", "10G")
    prepare(dataset(frame), test_size=0.25, folds=3, seed=0)


def test_prepare_says_what_each_column_was_read_as_and_became_and_the_report_shows_it():
    from quest.evaluation.report import columns_section

    frame = stops()
    frame.loc[:9, "age"] = np.nan
    result = prepare(dataset(frame), test_size=0.25, folds=3, seed=0)
    columns = {row["column"]: row for row in result["columns"]["columns"]}
    assert columns["stop_id"] == {
        "column": "stop_id",
        "read_as": "categorical, many values",
        "became": f"left out: is unique per row ({ROWS * 3 // 4} distinct values in as many rows): an identifier",
        "inputs": 0,
        "missing": 0,
        "distinct": ROWS * 3 // 4,
    }
    assert columns["race"]["became"] == "one-hot: 3 inputs (a value unseen in training: all zeros)"
    assert columns["stopped_at"]["read_as"] == "date and time (ISO8601)"
    assert columns["age"]["missing"] == int(frame["age"].drop(index=result[paths.TEST_ROWS]).isna().sum())
    assert sum(row["inputs"] for row in columns.values()) == len(result["schema"].features)
    assert result["columns"]["target"] == {"name": "y", "classes": {"0": ROWS * 3 // 8, "1": ROWS * 3 // 8}}
    section = "\n".join(columns_section(result["columns"]))
    assert f"the target `y`: `0` {ROWS * 3 // 8} (50.0%), `1` {ROWS * 3 // 8} (50.0%)" in section
    assert "| stopped_at | date and time (ISO8601) | " in section
