"""Learning curves: every model scored at growing training-set sizes on the shared folds, to show where (if
anywhere) the MLP overtakes the baselines as data grows — the lecture's "deep learning needs data", measured.

Each fold's training rows are subsampled (seeded, stratified, the same rows for every model) to each fraction
in `learning.fractions`; the fraction 1.0 point is the comparison's own fold scores, not a second computation.
"""

from __future__ import annotations

import sys

from quest import paths, timing
from quest.errors import run_cli
from quest.files import write_stage_off
from quest.params import load_params


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = paths.stage_parser("stages.learning", __doc__, "params", "data", "reports")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if not params.learning.fractions:
        write_stage_off(args.reports / paths.LEARNING_DIR.name, paths.SUMMARY)
        print("learning: off (learning.fractions is empty)", file=sys.stderr)
        return
    from quest.evaluation import curves  # its libraries take seconds to import: only when the stage is on

    curves.run(args, params)


if __name__ == "__main__":
    run_cli("quest learning", main)
