"""dvc.yaml must list every quest module a stage runs, or DVC would reuse stale outputs after a change."""

import ast
from pathlib import Path

import yaml

from tests.conftest import REPO

SRC = REPO / "src" / "quest"


def quest_imports(module: str) -> set[str]:
    """Modules of the quest package that `module` imports anywhere in its body (function-level imports too)."""
    tree = ast.parse((SRC / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "quest":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("quest."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("quest."))
    return {name for name in found if (SRC / f"{name}.py").is_file()}


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(quest_imports(current))
    return seen


def test_every_stage_depends_on_every_module_it_runs():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        listed = {Path(dep).stem for dep in stage["deps"] if dep.startswith("src/quest/")}
        assert closure(name) == listed, f"stage {name}: dvc.yaml deps should be exactly {sorted(closure(name))}"
