"""The progress board (quest.core.progress): how far each model is, read by the stage, written by forked workers."""

import subprocess
import sys

from quest.core import progress


def test_the_board_says_how_far_each_model_is_and_what_is_left_at_its_pace_since_its_first_step():
    with progress.board(["knn5", "forest", "realmlp", "tree"]) as board:
        board.set("knn5", progress.STARTED, 1000.0)
        board.set("knn5", progress.OF_FITS, 16)
        board.set("knn5", progress.FITS, 4)
        board.set("realmlp", progress.STARTED, 940.0)
        board.set("realmlp", progress.OF_EPOCHS, 256)
        board.set("realmlp", progress.EPOCHS, 64)
        board.set("realmlp", progress.FIRST_AT, 1000.0)  # 60 s to compile and run 4 epochs, then 2 s an epoch
        board.set("realmlp", progress.FIRST_DONE, 4)
        board.set("tree", progress.STARTED, 900.0)
        board.set("tree", progress.ENDED, 950.0)  # done: no longer at work
        assert board.at_work(now=1120.0) == [
            "knn5 4 of 16 fits, 2m 00s, about 6m 00s left",
            "realmlp epoch 64 of 256, 3m 00s, about 6m 24s left",
        ]


FORKED = """
import multiprocessing
from quest.core import progress

def work():
    with progress.working_on("forest"):
        progress.fits_done(3, 16)

with progress.board(["forest"]) as board:
    child = multiprocessing.get_context("fork").Process(target=work)
    child.start()
    child.join()
    started, fits, of_fits, _, _, ended = board.cells[:6]
    print(fits, of_fits, 0 < started <= ended)
"""


def test_a_forked_worker_writes_the_board_the_stage_reads():
    # In a fresh interpreter: this one may run JAX's threads, which a fork must not copy.
    done = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["3.0", "16.0", "True"]


def test_without_a_board_reports_go_nowhere():
    with progress.working_on("forest"):
        progress.fits_done(1, 2)
        progress.epochs_done("forest", 1, 2)
    assert progress.current() is None
