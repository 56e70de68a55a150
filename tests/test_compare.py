import numpy as np
import pandas as pd
import pytest

from quest.evaluation.comparison import COLUMNS, comparison_table, report_markdown, verdict
from quest.evaluation.scoring import ModelResult
from quest.evaluation.stats import corrected_ttest, mean_interval


def results():
    return [
        ModelResult("mlp", {"accuracy": [0.9, 0.8, 0.9, 0.8]}, {"accuracy": 0.85}),
        ModelResult("logreg", {"accuracy": [0.7, 0.7, 0.8, 0.6]}, {"accuracy": 0.75}),
        ModelResult("forest", {"accuracy": [0.8, 0.6, 0.9, 0.8]}, {"accuracy": 0.70}),
    ]


def test_table_has_mean_std_interval_test_and_the_mlp_vs_baseline_test():
    table = comparison_table(results(), "accuracy", n_train=30, n_test=10)
    assert list(table.columns) == COLUMNS
    assert table["model"].tolist() == ["mlp", "logreg", "forest"]
    rows = table.set_index("model")
    assert rows.loc["mlp", "cv_mean"] == pytest.approx(0.85)
    assert rows.loc["mlp", "cv_std"] == pytest.approx(0.05)
    assert (rows.loc["mlp", "ci_low"], rows.loc["mlp", "ci_high"]) == pytest.approx(
        mean_interval(np.array([0.9, 0.8, 0.9, 0.8]), n_train=30, n_test=10)
    )
    assert rows.loc["logreg", "p_value"] == pytest.approx(
        corrected_ttest(np.array([0.2, 0.1, 0.1, 0.2]), n_train=30, n_test=10)[1]
    )
    assert np.isnan(rows.loc["mlp", "p_value"]) and pd.isna(rows.loc["mlp", "wins"])
    assert (rows.loc["logreg", "wins"], rows.loc["logreg", "ties"], rows.loc["logreg", "losses"]) == (4, 0, 0)
    assert (rows.loc["forest", "wins"], rows.loc["forest", "ties"], rows.loc["forest", "losses"]) == (2, 2, 0)
    assert table.to_csv(index=False, na_rep="").splitlines()[1].endswith("0.85,,,,")  # the MLP's own row: empty


def test_verdict_and_report_say_whether_the_gap_is_significant():
    table = comparison_table(results(), "accuracy", n_train=30, n_test=10)
    outcome = verdict(table, "accuracy", alpha=0.05)
    assert outcome["winner"] == "mlp"
    assert outcome["best_baseline"] == "forest"  # 0.775 beats logreg's 0.70
    assert outcome["mlp_minus_best_baseline"] == pytest.approx(0.075)
    assert outcome["p_value_vs_best_baseline"] > 0.05
    assert outcome["mlp_is"] == "indistinguishable from"
    descriptions = {"mlp": "Keras MLP", "logreg": "logistic regression", "forest": "random forest"}
    report = report_markdown(table, "accuracy", "toy", "classification", outcome, "4 folds", descriptions=descriptions)
    assert "At α = 0.05 the MLP is **indistinguishable from** forest" in report
    assert "| **mlp** | Keras MLP | 0.8500 ± 0.0500 |" in report
    assert verdict(table, "accuracy", alpha=0.9)["mlp_is"] == "better than"


def test_lower_is_better_metrics_rank_and_count_the_other_way():
    rows = [
        ModelResult("mlp", {"rmse": [2.0, 2.1, 2.0]}, {"rmse": 2.0}),
        ModelResult("tree", {"rmse": [1.0, 1.1, 1.05]}, {"rmse": 1.0}),
    ]
    table = comparison_table(rows, "rmse", n_train=20, n_test=10)
    outcome = verdict(table, "rmse", alpha=0.05)
    assert outcome["winner"] == "tree"
    assert outcome["mlp_minus_best_baseline"] == pytest.approx(-(6.1 / 3 - 3.15 / 3), rel=1e-9)
    assert outcome["mlp_is"] == "worse than"
    assert tuple(table.set_index("model").loc["tree", ["wins", "ties", "losses"]]) == (0, 0, 3)


PARALLEL_EQUALS_SERIAL = """
import json, sys
from pathlib import Path
from quest.data.sources import load_dataset
from quest.evaluation.scoring import evaluate_all
from quest.learners.base import Problem
from quest.learners.baselines import Baseline
from quest.params import params_from_dict
from quest.stages.prepare import prepare, write_prepared
from quest.data.artifacts import read_prepared
import yaml
params = yaml.safe_load(Path("params.yaml").read_text())
params["data"].update(source="synthetic")
params["data"]["synthetic"].update(kind="moons", n_samples=120)
params = params_from_dict(params)
out = Path(sys.argv[1])
write_prepared(prepare(load_dataset(params.data, seed=1, root=Path(".")), test_size=0.25, folds=3, seed=1), out)
prepared = read_prepared(out)
learners = [Baseline(name) for name in ("logreg", "tree", "forest", "knn5")]
problem = Problem.of(prepared)
runs = {w: [(r.name, r.folds, r.test) for r in evaluate_all(learners, prepared, problem, seed=1, workers=w)]
        for w in (1, 2)}
print(json.dumps({"same": runs[1] == runs[2], "names": [name for name, _, _ in runs[2]], "jax": "jax" in sys.modules}))
"""


def test_baselines_spread_over_processes_give_what_one_process_gives(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    # In a fresh process: this one may run JAX's threads, and then evaluate_all rightly will not fork.
    done = subprocess.run(
        [sys.executable, "-c", PARALLEL_EQUALS_SERIAL, str(tmp_path / "prepared")],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "same": True,
        "names": ["logreg", "tree", "forest", "knn5"],
        "jax": False,
    }
