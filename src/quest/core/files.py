"""Small, careful file I/O: atomic writes (no half-written output is ever visible), deterministic JSON, hashes."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from quest.core import interrupts
from quest.core.errors import QuestError, first_line


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success it replaces `path`, on failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The suffix survives so that writers which check it (Keras wants `.keras`) accept the temporary name.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_umask())
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces directory `path` only when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    temporary.chmod(0o777 & ~_umask())
    try:
        yield temporary
        _swap_in(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _swap_in(directory: Path, path: Path) -> None:
    """Rename `directory` to `path`, retiring the directory `path` held, if any."""
    if not path.exists():
        os.replace(directory, path)
        return
    retired = path.with_name(f".{path.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    os.replace(path, retired)
    os.replace(directory, path)
    shutil.rmtree(retired)


@contextmanager
def staged_into(directory: Path) -> Iterator[Path]:
    """Yield an empty staging directory inside `directory`. When the block succeeds, each file and directory
    in it replaces its namesake in `directory` (a directory as a whole) and nothing else there changes; when
    the block fails (the MLflow store refused the logging, the disk filled up), nothing there changes at all."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".staged.", suffix=".tmp"))
    staging.chmod(0o777 & ~_umask())
    try:
        with interrupts.cleanup(functools.partial(shutil.rmtree, staging, ignore_errors=True)):
            yield staging
            with interrupts.publishing():  # a signal now waits for every output to be in place
                for entry in sorted(staging.iterdir()):
                    if entry.is_dir():
                        _swap_in(entry, directory / entry.name)
                    else:
                        os.replace(entry, directory / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# Zip's earliest representable time; Keras stamps the weights entry with "now" and metadata with a date.
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FIXED_DATE_SAVED = "1980-01-01@00:00:00"


def normalise_keras_archive(path: Path) -> None:
    """Rewrite a `.keras` zip so identical weights give an identical file (and DVC hash): fixed timestamps, and
    the memory addresses Keras writes as `shared_object_id` renumbered in order of first appearance."""
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for info, data in entries:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata["date_saved"] = FIXED_DATE_SAVED
                data = json.dumps(metadata).encode("utf-8")
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode("utf-8")
            fixed = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
            target.writestr(fixed, data)


def _renumber_shared_objects(node: Any, numbers: dict[int, int]) -> Any:
    if isinstance(node, dict):
        renumbered = {key: _renumber_shared_objects(value, numbers) for key, value in node.items()}
        if "shared_object_id" in node:
            renumbered["shared_object_id"] = numbers.setdefault(node["shared_object_id"], len(numbers) + 1)
        return renumbered
    if isinstance(node, list):
        return [_renumber_shared_objects(item, numbers) for item in node]
    return node


def dumps_json(data: Any) -> str:
    """Stable JSON: sorted keys, numpy scalars as Python numbers, a trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_json(path: Path, data: Any) -> None:
    write_text(path, dumps_json(data))


def read_json(path: Path) -> Any:
    """A JSON file the pipeline wrote; one that is damaged (cut short, edited by hand) is a QuestError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise QuestError(f"{path}: not valid JSON ({first_line(error)}); rebuild it with `dvc repro`") from None


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dvc_md5(path: Path) -> str:
    """The hash DVC 3 records for `path` in dvc.lock: md5 of a file, or of a directory's sorted listing + `.dir`."""
    if path.is_file():
        return file_md5(path)
    entries = sorted(
        (
            {"md5": file_md5(item), "relpath": item.relative_to(path).as_posix()}
            for item in path.rglob("*")
            if item.is_file()
        ),
        key=lambda entry: entry["relpath"],
    )
    listing = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(listing).hexdigest() + ".dir"


def history_csv(history: dict[str, list[float]]) -> str:
    """A network's per-epoch curves as CSV: `epoch` (from 1), then one column per curve, sorted by name."""
    names = sorted(history)
    rows = [",".join(["epoch", *names])]
    for epoch in range(len(history[names[0]])):
        rows.append(",".join([str(epoch + 1), *(repr(history[name][epoch]) for name in names)]))
    return "\n".join(rows) + "\n"


def read_history(path: Path) -> dict[str, list[float]]:
    """What history_csv wrote, read back; {} when there is no file."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").strip().splitlines()
    names = lines[0].split(",")[1:]
    rows = [list(map(float, line.split(",")[1:])) for line in lines[1:]]
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


def require(path: Path, stage: str) -> Path:
    """`path`, which the pipeline stage `stage` writes; a QuestError saying to run it when it is missing."""
    if not path.exists():
        raise QuestError(f"{path}: not found; run `dvc repro {stage}` first")
    return path


def write_logged(path: Path, *, experiment: str, outputs: list[Path]) -> None:
    """A stage's record that MLflow has its outputs: the experiment, and each output's DVC hash.

    dvc.yaml declares it a DVC-cached output, so it is not in git: a clone without the DVC remote lacks it
    and reruns the stage, whose runs then land in the clone's store too; with the remote, `dvc pull` brings
    it, and the runs are on the team server already. Its bytes depend only on the outputs."""
    write_json(path, {"experiment": experiment, "logged": {p.name: dvc_md5(p) for p in sorted(outputs)}})


def write_stage_off(directory: Path, summary_name: str) -> None:
    """An optional stage that is off still replaces its output directory, with a summary saying it was off."""
    with atomic_dir(directory) as staging:
        write_json(staging / summary_name, {"enabled": False})
