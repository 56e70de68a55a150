"""Optional stage, tune: an equal-budget random search (Optuna) for the MLP and every baseline.

Each model gets the same number of trials. A trial fits on an inner slice of the training split and is scored
on the rest of it (validation), which is all the search sees; the same fitted model is also scored on the test
split, only to draw the tabular benchmark's budget curve: the test score of the best-by-validation trial so
far, against trials spent. Off while tune.trials is 0.
"""

from __future__ import annotations

import sys

from quest import paths, timing
from quest.errors import run_cli
from quest.files import write_stage_off
from quest.params import load_params


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = paths.stage_parser("stages.tune", __doc__, "params", "data", "reports")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if params.tune.trials == 0:
        write_stage_off(args.reports / paths.TUNING_DIR.name, paths.SUMMARY)
        print("tune: off (tune.trials is 0); set tune.trials to run an equal-budget search", file=sys.stderr)
        return
    from quest.tuning import search  # its libraries take seconds to import: only when the stage is on

    search.run(args, params)


if __name__ == "__main__":
    run_cli("quest tune", main)
