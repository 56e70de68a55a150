"""Wide tables: past `compare.wide_threshold` model inputs (500 by default), the models whose cost grows with the
columns take a wide recipe, named in the comparison's table, its report and each model's MLflow run.

A gradient-boosted tree scores every column's candidate splits at every node, so its cost is columns x bins x
nodes, whatever the rows; RealMLP's periodic embedding turns each column into 4 inputs and 16 periodic features
before its first layer. On a 200 x 3 000 table that was 15 minutes of two cores for the comparison
(docs/performance.md, "Wide tables"). The wide recipes, each one of its library's documented speed levers:

- the histogram GBDTs quantise each column into 32 bins (`BINS`) instead of 255 or 256: XGBoost's `max_bin`,
  LightGBM's `max_bin`, histogram gradient boosting's `max_bins`, CatBoost's `border_count` (254 by default);
- CatBoost, whose symmetric trees cost the most a column, also looks at a tenth of the columns at each level
  (`SHARE`, its `rsm`), and exact gradient boosting, which has no bins, at each split (`max_features`), as a
  random forest does by default;
- RealMLP leaves out its numeric embeddings (RealMLP-TD-S's choice), TabM its piecewise-linear ones.

A tuning trial's values override them. Every other model trains as on any table.
"""

from __future__ import annotations

from quest.learners.base import Learner, Problem

BINS = 32  # a histogram GBDT's bins (CatBoost's borders) a column on a wide table
SHARE = 0.1  # of the columns CatBoost's levels and exact gradient boosting's splits look at on a wide table
SHARED = "a tenth of the columns"
SUMMARY = (
    f"the histogram-based gradient-boosted trees quantise each column into {BINS} bins (CatBoost also looks at "
    f"{SHARED} at each level), exact gradient boosting looks at {SHARED} at each split, and the networks leave "
    "out their numeric embeddings"
)


def described(text: str, learner: Learner, problem: Problem) -> str:
    """A row's description, with its wide recipe on a wide table."""
    recipe = learner.wide_recipe(problem)
    return f"{text}; wide table: {recipe}" if problem.wide and recipe else text
