"""quest's own imports, read from its source (function-level imports too): what dvc.yaml's deps and the
layering test check against."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

SRC = REPO / "src"


@dataclass(frozen=True)
class Import:
    path: Path  # the importing file
    line: int
    module: str  # the module imported, dotted: quest.learners.base, mlflow, numpy, ...

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line} imports {self.module}"


def module_file(name: str) -> Path | None:
    """The file that defines module `name` (`quest.stages.train`), a package's `__init__.py`, or None."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[Import]:
    """Every module `path` imports: `from a.b import c` counts as a.b, and as a.b.c when that is a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            names += [f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.extend(Import(path, node.lineno, name) for name in names)
    return found


def quest_imports(path: Path) -> set[str]:
    """The modules of the quest package that `path` imports."""
    return {i.module for i in imports(path) if i.module.split(".")[0] == "quest" and module_file(i.module)}


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


def sources() -> list[Path]:
    return sorted((SRC / "quest").rglob("*.py"))
