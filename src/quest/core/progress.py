"""How far each model of a long stage has got, for the stage's progress line: its fits done of all (the shared
splits and the final fit), a network's epochs, and what is left at that pace. The pool's workers are forked
processes, so the board is shared memory, opened before they fork; each process and thread says which model it
works on. Nothing here prints: the stage that opened the board reads it."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from quest.core.timing import duration_text

# A model's cells on the board: when it started and ended, its fits and epochs done of all, and when the first of
# them was done and how many were then (the pace after it leaves out what a start costs: a network's compiling).
STARTED, FITS, OF_FITS, EPOCHS, OF_EPOCHS, ENDED, FIRST_AT, FIRST_DONE = range(8)
CELLS = 8


class Board:
    """One row of numbers per model, in memory the forked workers share."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.cells = multiprocessing.get_context("fork").RawArray("d", len(self.names) * CELLS)

    def set(self, name: str, field: int, value: float) -> None:
        if name in self.names:
            self.cells[self.names.index(name) * CELLS + field] = value

    def get(self, name: str, field: int) -> float:
        return self.cells[self.names.index(name) * CELLS + field] if name in self.names else 0.0

    def at_work(self, now: float | None = None) -> list[str]:
        """Each model started and not ended: how far it is, how long it took so far, and what is left at its pace
        since its first fit or epoch was done (`forest 7 of 16 fits, 3m 10s, about 3m 40s left`)."""
        now = time.time() if now is None else now
        found = []
        for index, name in enumerate(self.names):
            started, fits, of_fits, epochs, of_epochs, ended, first_at, first_done = self.cells[
                index * CELLS : (index + 1) * CELLS
            ]
            if not started or ended:
                continue
            spent = now - started
            if of_epochs:  # a network trains its fits together: its epochs say how far
                done, total, how_far = epochs, of_epochs, f"{name} epoch {epochs:.0f} of {of_epochs:.0f}"
            else:
                done, total, how_far = fits, of_fits, f"{name} {fits:.0f} of {of_fits:.0f} fits"
            pace = (now - first_at) / (done - first_done) if first_at and done > first_done else spent / max(done, 1)
            left = f", about {duration_text(pace * (total - done))} left" if 0 < done < total else ""
            found.append(f"{how_far}, {duration_text(spent)}{left}")
        return found


_board: Board | None = None  # the open board: inherited by the workers forked while it is open
_working = threading.local()  # the model this thread works on


@contextmanager
def board(names: Sequence[str]) -> Iterator[Board]:
    """A board for `names`, open in the block (and in the processes forked inside it)."""
    global _board
    previous, _board = _board, Board(names)
    try:
        yield _board
    finally:
        _board = previous


@contextmanager
def working_on(name: str) -> Iterator[None]:
    """In the block, this thread's fits and epochs count as `name`'s; it is at work from now until the end."""
    _working.name = name
    if _board is not None:
        _board.set(name, STARTED, time.time())
    try:
        yield
    finally:
        _working.name = None
        if _board is not None:
            _board.set(name, ENDED, time.time())


def current() -> str | None:
    """The model this thread works on, if any: a network's training threads report under it."""
    return getattr(_working, "name", None)


def fits_done(done: int, total: int) -> None:
    """This thread's model has made `done` of its `total` fits."""
    _report(current(), FITS, done, OF_FITS, total)


def epochs_done(name: str | None, done: int, total: int) -> None:
    """Network `name` (every fit trained together) has run `done` of its `total` epochs."""
    _report(name, EPOCHS, done, OF_EPOCHS, total)


def _report(name: str | None, field: int, done: int, total_field: int, total: int) -> None:
    if _board is None or name is None:
        return
    _board.set(name, total_field, total)
    _board.set(name, field, done)
    if done and not _board.get(name, FIRST_AT):
        _board.set(name, FIRST_AT, time.time())
        _board.set(name, FIRST_DONE, done)
