"""The README is a front door and docs/ the rooms behind it: every link, path, make target, module, stage and
params key they name must exist, so a renamed module or target cannot leave a stale command behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from quest.commands.cli import MODULES
from tests.conftest import REPO
from tests.imports import module_file

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), flags=re.MULTILINE))
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def ids(paths: list[Path]) -> list[str]:
    return [path.relative_to(REPO).as_posix() for path in paths]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_readme_is_a_front_door():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for page in (REPO / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in text, f"README.md does not link {page.name}"


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_links_lead_somewhere(page: Path):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: link to {target} leads nowhere"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: {resolved.name} has no heading #{anchor}"


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_commands_name_what_exists(page: Path):
    text = page.read_text()
    for target in re.findall(r"(?:^|`)make ([a-z][a-z-]*)", text, flags=re.MULTILINE):
        assert target in TARGETS, f"{page.name}: `make {target}` is not a Makefile target"
    for module in re.findall(r"python -m (quest[\w.]*)", text):
        if not module.endswith(".STAGE"):  # the placeholder for any stage
            assert module_file(module), f"{page.name}: `python -m {module}`: no such module"
    for stage in re.findall(r"`quest ([a-z]+)\b", text):
        assert stage in MODULES, f"{page.name}: `quest {stage}` is not a command"
    for key in re.findall(r"-S ['\"]?([a-z_.]+)=", text):
        node = PARAMS
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{page.name}: -S {key}: no such params key"
            node = node[part]


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_paths_named_exist(page: Path):
    for path in re.findall(r"`((?:src|tests|scripts|benchmarks|docs|\.ci|\.github)/[\w./-]+)`", page.read_text()):
        if "<" in path or "{" in path:
            continue
        assert (REPO / path.rstrip("/")).exists(), f"{page.name}: `{path}` does not exist"


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_no_history_narration(page: Path):
    # The docs say what is, not how it came to be: history lives in git.
    found = re.findall(
        r"the issue|issue's|than the last|last time|busier machine|before the fast|used to be", page.read_text()
    )
    assert found == []
