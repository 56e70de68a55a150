"""The house's shape, kept by a test: imports run downward only, MLflow stays at the edge, no import circles.

top          cli, verify, predict, serve (the commands beside the pipeline, and the served model's code)
stages/      a thin main() per stage: the only code that writes stage outputs and calls MLflow
tuning/      spaces, the search, shared studies, the sweep
evaluation/  scoring, comparison, curves, metrics, statistics, plots, the report
learners/    the learner interface and registry, the MLP and its engines, the baselines
tracking/    MLflow's store, runs, provenance, registry and logged models (called from stages and top only)
data/        tables to arrays, and what prepare hands on
ground       params, paths, errors, files, timing, processes, compat
"""

from __future__ import annotations

from pathlib import Path

from tests.imports import REPO, Import, imports, module_name, sources

RANK = {"ground": 0, "data": 1, "tracking": 2, "learners": 3, "evaluation": 4, "tuning": 5, "stages": 6, "top": 7}
TOP = {"quest.cli", "quest.verify", "quest.predict", "quest.serve"}
EDGE = {"stages", "tracking", "top"}  # where MLflow may be imported, and what may import tracking/


def layer(module: str) -> str:
    parts = module.split(".")
    if module in TOP:
        return "top"
    return parts[1] if len(parts) > 1 and parts[1] in RANK else "ground"


def violations(importer: str, found: list[Import]) -> list[str]:
    """What breaks the layering in `found`, the imports of module `importer`, each naming its import."""
    here = layer(importer)
    problems = []
    for item in found:
        root = item.module.split(".")[0]
        if root == "mlflow" and here not in EDGE:
            problems.append(f"{item}: MLflow belongs in stages/, tracking/ or the top, not {here}")
        if root != "quest":
            continue
        there = layer(item.module)
        if there == "tracking" and here not in EDGE:
            problems.append(f"{item}: tracking/ is called from stages/ and the top only, not from {here}")
        elif there != here and RANK[there] >= RANK[here]:
            problems.append(f"{item}: {here} may import only layers below it, and {there} is not")
    return problems


def test_imports_run_downward_and_mlflow_stays_at_the_edge():
    problems = [problem for path in sources() for problem in violations(module_name(path), imports(path))]
    assert problems == []


def test_a_wrong_import_is_named_with_its_file_and_line():
    path = REPO / "src" / "quest" / "learners" / "base.py"
    found = [Import(path, 7, "quest.stages.train"), Import(path, 8, "mlflow"), Import(path, 9, "quest.tracking.runs")]
    assert violations("quest.learners.base", found) == [
        "src/quest/learners/base.py:7 imports quest.stages.train: learners may import only layers below it, "
        "and stages is not",
        "src/quest/learners/base.py:8 imports mlflow: MLflow belongs in stages/, tracking/ or the top, not learners",
        "src/quest/learners/base.py:9 imports quest.tracking.runs: tracking/ is called from stages/ and the top only, "
        "not from learners",
    ]
    assert violations("quest.data.splits", [Import(path, 1, "quest.tracking.tags")]) != []  # upward
    assert violations("quest.stages.train", [Import(path, 1, "quest.tracking.tags"), Import(path, 2, "mlflow")]) == []


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of `graph` (module -> modules it imports), as a path back to its start; [] if none."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_no_import_circle_anywhere():
    graph = {
        module_name(path): {i.module for i in imports(path) if i.module.startswith("quest.")} for path in sources()
    }
    assert " -> ".join(cycle(graph)) == ""


def test_a_circle_is_found_and_shown():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) == []


def test_every_package_is_in_the_picture():
    quest = REPO / "src" / "quest"
    packages = {path.parent.name for path in sources() if path.name == "__init__.py" and path.parent.parent == quest}
    assert packages == set(RANK) - {"ground", "top"}
    assert all((Path(REPO / "src" / "quest") / f"{name.split('.')[1]}.py").is_file() for name in TOP)


def test_stages_import_their_heavy_libraries_only_when_they_need_them():
    # Each stage is its own process: whatever its module imports at the top, every run pays for at start-up.
    import subprocess
    import sys

    heavy = ("pandas", "scipy", "sklearn", "matplotlib", "keras", "mlflow", "optuna", "tensorflow")
    code = (
        "import sys, quest.stages.train, quest.stages.learning, quest.stages.tune; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
