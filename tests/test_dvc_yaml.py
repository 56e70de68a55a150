"""dvc.yaml must list every quest module a stage runs, or DVC would reuse stale outputs after a change."""

import ast
from pathlib import Path

import yaml

from tests.conftest import REPO

SRC = REPO / "src"


def module_file(name: str) -> Path | None:
    """The file that defines module `name` (`quest.stages.train`), a package's `__init__.py`, or None."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def quest_imports(path: Path) -> set[str]:
    """Modules of the quest package that the file imports anywhere in its body (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] == "quest" and module_file(name))
    return found


def files_run(module: str) -> set[Path]:
    """Every file of quest that running `module` executes: its imports' closure and their packages' __init__."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__, then c
            path = module_file(".".join(parts[:depth]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(quest_imports(path))
    return seen


def test_every_stage_depends_on_every_module_it_runs():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        listed = {dep for dep in stage["deps"] if dep.startswith("src/")}
        needed = {path.relative_to(REPO).as_posix() for path in files_run(f"quest.stages.{name}")}
        assert listed == needed, f"stage {name}: dvc.yaml deps should be exactly {sorted(needed)}"
