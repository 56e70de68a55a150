"""dvc.yaml must list every quest module a stage runs, or DVC would reuse stale outputs after a change."""

import yaml

from tests.conftest import REPO
from tests.imports import files_run


def test_every_stage_depends_on_every_module_it_runs():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        listed = {dep for dep in stage["deps"] if dep.startswith("src/")}
        needed = {path.relative_to(REPO).as_posix() for path in files_run(f"quest.stages.{name}")}
        assert listed == needed, f"stage {name}: dvc.yaml deps should be exactly {sorted(needed)}"
