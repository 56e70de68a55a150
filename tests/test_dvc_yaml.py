"""dvc.yaml must list every quest module a stage runs, or DVC would reuse stale outputs after a change."""

import yaml

from tests.conftest import REPO
from tests.imports import files_run

# Code a stage runs without importing it: train logs quest.serve as the served model's code.
LOGGED_CODE = {"train": ["quest.serve"]}


def files_needed(stage: str) -> set[str]:
    """Every file of quest the stage runs, or logs as code that runs where the model is served."""
    found = set().union(*(files_run(module) for module in [f"quest.stages.{stage}", *LOGGED_CODE.get(stage, [])]))
    return {path.relative_to(REPO).as_posix() for path in found}


def test_every_stage_depends_on_every_module_it_runs():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        listed = {dep for dep in stage["deps"] if dep.startswith("src/")}
        needed = files_needed(name)
        assert listed == needed, f"stage {name}: dvc.yaml deps should be exactly {sorted(needed)}"


def test_the_stages_that_make_learners_track_every_learners_own_params_section():
    """A learner's own section (quest.learners.registry.sections) decides its rows: dvc must rerun the stages that
    make learners when it changes. DVC tracks params by top-level key, so each section is listed by name."""
    from quest.learners import registry

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in ("compare", "learning", "tune"):
        missing = sorted(set(registry.sections()) - set(stages[name]["params"]))
        assert missing == [], f"dvc.yaml: stage {name}'s params should list {', '.join(missing)}"
