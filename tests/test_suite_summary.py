"""The summary across tables (quest.evaluation.suite), on cases worked by hand: Elo as TabArena computes it
(Bradley–Terry, the forest at 1000), the average rank, the normalised score and the verdict counts."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from quest.evaluation import suite


def results(rows: list[tuple[str, str, float]], lower: dict[str, bool]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["table", "model", "score"])
    frame["lower_is_better"] = frame["table"].map(lower)
    return frame


# Three tables on three metrics: t1 ROC AUC (higher is better), t2 log loss and t3 RMSE (lower is better).
LOWER = {"t1": False, "t2": True, "t3": True}
THREE = results(
    [
        ("t1", "mlp", 0.90), ("t1", "forest", 0.80), ("t1", "logreg", 0.70),
        ("t2", "mlp", 0.50), ("t2", "forest", 0.30), ("t2", "logreg", 0.30),
        ("t3", "mlp", 2.0), ("t3", "forest", 1.0), ("t3", "logreg", 4.0),
    ],
    LOWER,
)  # fmt: skip


def test_ranks_and_normalised_scores_by_hand():
    # Ranks: t1 mlp 1, forest 2, logreg 3; t2 forest and logreg share 1.5, mlp 3; t3 forest 1, mlp 2, logreg 3.
    ranks = suite.average_ranks(THREE)
    assert ranks.to_dict() == pytest.approx({"forest": 4.5 / 3, "mlp": 2.0, "logreg": 7.5 / 3})
    # Rescaled within each table, best 1, worst 0: t1 mlp 1, forest 0.5, logreg 0; t2 forest and logreg 1,
    # mlp 0; t3 forest 1, mlp 2/3, logreg 0.
    scores = suite.normalised_scores(THREE)
    assert scores.to_dict() == pytest.approx({"forest": 2.5 / 3, "mlp": (5 / 3) / 3, "logreg": 1 / 3})


def test_elo_is_bradley_terry_calibrated_to_the_forest():
    # mlp beats the forest on 3 of 4 tables: P(win) = 3/4 = 1 / (1 + 10^(-d/400)), so d = 400 log10(3).
    rows = [(f"t{t}", "mlp", 0.1 if t < 3 else 0.3) for t in range(4)] + [(f"t{t}", "forest", 0.2) for t in range(4)]
    table = suite.elo(results(rows, {f"t{t}": True for t in range(4)}), rounds=50)
    assert table.loc["forest", "elo"] == pytest.approx(1000.0)
    assert table.loc["mlp", "elo"] == pytest.approx(1000 + 400 * math.log10(3), abs=0.01)  # 1190.85
    assert list(table.index) == ["mlp", "forest"]
    assert (table["low"] <= table["elo"]).all() and (table["elo"] <= table["high"]).all()
    again = suite.elo(results(rows, {f"t{t}": True for t in range(4)}), rounds=50)
    pd.testing.assert_frame_equal(table, again)  # the bootstrap is seeded


def test_elo_orders_by_wins_across_metrics():
    table = suite.elo(THREE, rounds=50)
    assert table.loc["forest", "elo"] == pytest.approx(1000.0)
    assert table.index[0] == "forest" and table.index[-1] == "logreg"


def test_verdict_counts():
    counts = suite.verdict_counts({"a": "better", "b": "unclear", "c": "unclear", "d": "worse"})
    assert counts == {"better": 1, "equivalent": 0, "worse": 1, "unclear": 2}
    with pytest.raises(ValueError, match="verdicts must be better, equivalent, worse, unclear"):
        suite.verdict_counts({"a": "won"})


def test_pairwise_wilcoxon_holm_by_hand(tmp_path):
    # Six tables; a is better than b on all six (exact two-sided p = 2/64 = 0.03125), b and c trade places.
    rows = []
    for t in range(6):
        rows += [(f"t{t}", "a", 0.1 + t / 100), (f"t{t}", "b", 0.2 + t / 100), (f"t{t}", "c", 0.2 + t / 100 + (
            0.01 if t % 2 else -0.01 - t / 1000))]  # fmt: skip
    found = results(rows, {f"t{t}": True for t in range(6)})
    p = suite.pairwise_wilcoxon(found)
    raw = {("a", "b"): 2 / 64, ("a", "c"): 2 / 64}
    assert p.loc["a", "b"] == pytest.approx(raw[("a", "b")] * 3)  # Holm: the smallest of 3 p-values times 3
    assert p.loc["a", "b"] == p.loc["b", "a"] and p.loc["a", "a"] == 1
    assert p.loc["b", "c"] > 0.05  # no difference shown
    suite.critical_difference(found, tmp_path / "cd.png")
    suite.critical_difference(found, tmp_path / "again.png")
    assert (tmp_path / "cd.png").read_bytes() == (tmp_path / "again.png").read_bytes()  # the same bytes


def test_network_against_trees_is_a_point_per_table(tmp_path):
    points = suite.network_against_trees(
        THREE, {"t1": 500, "t2": 1000, "t3": 4000}, networks={"mlp"}, trees={"forest"}, path=tmp_path / "s.png"
    )
    # Rescaled within each table (above): t1 mlp 1, forest 0.5; t2 mlp 0, forest 1; t3 mlp 2/3, forest 1.
    assert points["networks"].to_dict() == pytest.approx({"t1": 1.0, "t2": 0.0, "t3": 2 / 3})
    assert points["trees"].to_dict() == pytest.approx({"t1": 0.5, "t2": 1.0, "t3": 1.0})
    assert (tmp_path / "s.png").stat().st_size > 1000
