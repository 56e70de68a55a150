import math

from quest.commands.verify import Row, format_table, from_clean_tree, share, split_sizes


def test_the_table_names_each_number_its_values_and_on_another_machine_its_bound():
    row = Row("reports/comparison.csv:logreg.test_score", 0.75, 0.74, 0.0)
    table = format_table([row]).splitlines()
    assert table[0].split() == ["metric", "committed", "fresh", "difference", "tolerance"]
    assert table[1].split() == ["reports/comparison.csv:logreg.test_score", "0.75", "0.74", "0.01", "0"]
    bounded = Row("reports/comparison.csv:realmlp.cv_mean", 0.97, 0.9707, 0.0028, "0.75 SE of a mean (0.00373)")
    lines = format_table([bounded], bounds=True).splitlines()
    assert lines[0].split()[-2:] == ["share", "bound"]
    assert lines[1].split()[5:] == ["0.25", "0.75", "SE", "of", "a", "mean", "(0.00373)"]


def test_share_of_the_bound():
    assert share(Row("k", 1.0, 1.0, 0.0)) == 0.0
    assert share(Row("k", 1.0, 1.5, 1.0)) == 0.5
    assert share(Row("k", 1.0, 1.5, 0.0)) == math.inf
    assert share(Row("k", math.nan, math.nan, 0.0)) == 0.0


def test_split_sizes_come_from_prepares_schema(tmp_path):
    (tmp_path / "schema.json").write_text('{"n_train": 455, "n_test": 114, "folds": 5}')
    assert split_sizes(tmp_path / "schema.json") == (91.0, 114.0)
    assert split_sizes(tmp_path / "missing.json") is None


def test_results_from_a_dirty_tree_are_refused_and_the_committed_ones_are_clean():
    assert from_clean_tree('{"git": {"commit": "abc", "dirty": false}}')
    assert not from_clean_tree('{"git": {"commit": "abc", "dirty": true}}')
    assert not from_clean_tree("not json") and from_clean_tree(None) is True  # nothing recorded: nothing to refuse
    from tests.conftest import REPO

    assert from_clean_tree((REPO / "models" / "environment.json").read_text()), (
        "models/environment.json records a dirty tree: run `make repro` on a clean checkout and commit the results"
    )
