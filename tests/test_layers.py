"""The house's shape, kept by a test: imports run downward only, MLflow stays at the edge, no import circles. A
module's layer is its folder under src/quest/ (a module at the root, params, is ground, as core/ is):

commands/    every quest verb and python -m entry point but the stages, and the served model's code
stages/      a thin main() per stage: the only code that writes stage outputs and calls MLflow
tuning/      spaces, the search, shared studies
evaluation/  scoring, comparison, curves, metrics, statistics, plots, the report
learners/    the learner interface and registry, the engine and what the families share; a folder per family
tracking/    MLflow's store, runs, provenance, registry and logged models (called from stages and commands only)
data/        tables to arrays, and what prepare hands on
core/        paths, errors, files, timing, processes, progress, interrupts, compat, cluster (and params, at the root)
"""

from __future__ import annotations

from tests.imports import REPO, Import, imports, module_name, sources

RANK = {"core": 0, "data": 1, "tracking": 2, "learners": 3, "evaluation": 4, "tuning": 5, "stages": 6, "commands": 7}
EDGE = {"stages", "tracking", "commands"}  # where MLflow may be imported, and what may import tracking/


def layer(module: str) -> str:
    """A module's folder under quest/ (test_every_package_is_in_the_picture keeps RANK to the folders); a module at
    quest's root is ground, as core/ is."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else "core"


def violations(importer: str, found: list[Import]) -> list[str]:
    """What breaks the layering in `found`, the imports of module `importer`, each naming its import."""
    here = layer(importer)
    problems = []
    for item in found:
        root = item.module.split(".")[0]
        if root == "mlflow" and here not in EDGE:
            problems.append(f"{item}: MLflow belongs in stages/, tracking/ or commands/, not {here}")
        if root != "quest":
            continue
        there = layer(item.module)
        if there == "tracking" and here not in EDGE:
            problems.append(f"{item}: tracking/ is called from stages/ and commands/ only, not from {here}")
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
        "src/quest/learners/base.py:8 imports mlflow: MLflow belongs in stages/, tracking/ or commands/, not learners",
        "src/quest/learners/base.py:9 imports quest.tracking.runs: tracking/ is called from stages/ and commands/ "
        "only, not from learners",
    ]
    assert violations("quest.data.splits", [Import(path, 1, "quest.tracking.tags")]) != []  # upward
    assert violations("quest.stages.train", [Import(path, 1, "quest.tracking.tags"), Import(path, 2, "mlflow")]) == []


LEARNERS = REPO / "src" / "quest" / "learners"
FAMILIES = {path.parent.name for path in LEARNERS.glob("*/__init__.py")}


def family(module: str) -> str | None:
    """The model family a module of learners/ belongs to (its folder), or None: what the families share."""
    parts = module.split(".")
    return parts[2] if len(parts) > 3 and parts[:2] == ["quest", "learners"] and parts[2] in FAMILIES else None


def family_violations(importer: str, found: list[Import]) -> list[str]:
    """learners/: a family imports what the families share and its own modules, never another family; what they
    share imports no family. The registry, the index of every learner, is the one module that knows them all."""
    if not importer.startswith("quest.learners.") or importer == "quest.learners.registry":
        return []
    mine = family(importer)
    problems = []
    for item in found:
        theirs = family(item.module)
        if theirs is None or theirs == mine:
            continue
        if mine is None:
            problems.append(f"{item}: what the families share imports none of them ({theirs}/ is one)")
        else:
            problems.append(f"{item}: the {mine} family may import what the families share, not the {theirs} family")
    return problems


def test_each_model_family_keeps_to_its_folder():
    assert {"mlp", "realmlp", "tabm", "gbdt", "classic"} == FAMILIES
    problems = [problem for path in sources() for problem in family_violations(module_name(path), imports(path))]
    assert problems == []


def test_an_import_across_families_is_named():
    path = LEARNERS / "tabm" / "network.py"
    found = [
        Import(path, 3, "quest.learners.realmlp.layers"),
        Import(path, 4, "quest.learners.layers"),
        Import(path, 5, "quest.learners.tabm.layers"),
    ]
    assert family_violations("quest.learners.tabm.network", found) == [
        "src/quest/learners/tabm/network.py:3 imports quest.learners.realmlp.layers: the tabm family may import what "
        "the families share, not the realmlp family"
    ]
    engine = [Import(LEARNERS / "engine.py", 9, "quest.learners.mlp.network")]
    assert family_violations("quest.learners.engine", engine) == [
        "src/quest/learners/engine.py:9 imports quest.learners.mlp.network: what the families share imports none of "
        "them (mlp/ is one)"
    ]
    assert family_violations("quest.learners.registry", [Import(path, 1, "quest.learners.mlp.learner")]) == []
    assert family_violations("quest.stages.train", [Import(path, 1, "quest.learners.mlp.learner")]) == []


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
    assert packages == set(RANK)


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


def test_no_test_imports_another_and_no_benchmark_imports_a_test():
    """What tests share lives in tests/support.py (and tests/conftest.py's fixtures): a test module is run by
    pytest, never imported, so that its own fixtures and marks stay its own."""
    files = [*(REPO / "tests").glob("*.py"), *(REPO / "benchmarks").glob("*.py")]
    found = [f"{path.name}: {line.strip()}" for path in files for line in path.read_text().splitlines()
             if line.strip().startswith(("from tests.test_", "import tests.test_"))]  # fmt: skip
    assert found == []
