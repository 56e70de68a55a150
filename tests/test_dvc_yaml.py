"""dvc.yaml must list every quest module a stage runs, or DVC would reuse stale outputs after a change."""

import yaml

from tests.conftest import REPO
from tests.imports import files_run

# Code a stage runs without importing it: train logs quest.commands.serve as the served model's code.
LOGGED_CODE = {"train": ["quest.commands.serve"]}


def files_needed(stage: str) -> set[str]:
    """Every file of quest the stage runs, or logs as code that runs where the model is served."""
    found = set().union(*(files_run(module) for module in [f"quest.stages.{stage}", *LOGGED_CODE.get(stage, [])]))
    return {path.relative_to(REPO).as_posix() for path in found}


def stages_of(pipeline: str) -> dict:
    """A dvc.yaml's stages by name, a foreach stage's by the `do` every table's instance runs."""
    stages = yaml.safe_load((REPO / pipeline).read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def test_every_stage_depends_on_every_module_it_runs():
    for pipeline in ("dvc.yaml", "suite/dvc.yaml"):
        for name, stage in stages_of(pipeline).items():
            listed = {dep for dep in stage["deps"] if dep.startswith("src/")}
            needed = files_needed(name)
            assert listed == needed, f"stage {name}: {pipeline} deps should be exactly {sorted(needed)}"


def test_a_suite_table_runs_the_stages_of_the_single_table_pipeline_with_its_params():
    """Each table's stage is the top pipeline's, with --table and the suite's keys besides the params it reads."""
    top, suite = stages_of("dvc.yaml"), stages_of("suite/dvc.yaml")
    for name in ("prepare", "train", "evaluate", "compare"):
        assert suite[name]["cmd"].startswith(f"python -m quest.stages.{name} --params params.yaml --table ${{key}}")
        own = [key for key in top[name]["params"] if key != "data"]  # the table's entry says where its data is
        assert suite[name]["params"] == [*own, "suite.profile", "suite.profiles", "suite.tables.${key}"]


def test_the_stages_that_make_learners_track_every_learners_own_params_section():
    """A learner's own section (quest.learners.registry.sections) decides its rows: dvc must rerun the stages that
    make learners when it changes. DVC tracks params by top-level key, so each section is listed by name."""
    from quest.learners import registry

    stages = stages_of("dvc.yaml")
    for name in ("compare", "learning", "tune"):
        missing = sorted(set(registry.sections()) - set(stages[name]["params"]))
        assert missing == [], f"dvc.yaml: stage {name}'s params should list {', '.join(missing)}"


def test_what_either_pipeline_rewrites_is_not_a_dirty_tree():
    """provenance records uncommitted code as dirty (and CI refuses it), but not what `dvc repro` itself rewrites:
    either pipeline's lock and outputs, a suite table's included, or a second `make suite` would refuse itself."""
    from quest.tracking.provenance import dvc_managed_paths

    managed = dvc_managed_paths(REPO)
    assert {
        "dvc.lock",
        "suite/dvc.lock",
        "models/environment.json",
        "suite/tables",
        "reports/suite/summary.json",
    } <= set(managed)
    assert not any("${" in path for path in managed)
