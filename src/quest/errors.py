"""User-facing errors and the wrapper that turns them into one line and a non-zero exit."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from quest import timing


class QuestError(Exception):
    """A problem with the user's input (params, data, environment): reported in one line, no traceback."""


class Terminated(BaseException):  # noqa: N818 (a signal, like KeyboardInterrupt, not an error)
    """SIGTERM, raised in the main thread so that cleanup runs: staging directories go, MLflow runs end KILLED."""


EXIT_USER_ERROR = 2


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def run_cli(prog: str, main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's main(); user errors become `prog: error: message` on stderr and exit code 2."""
    startup = timing.process_age()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main(argv)
    except QuestError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing half-written was kept", file=sys.stderr)
        raise SystemExit(130) from None
    except Terminated:
        print(f"{prog}: terminated; nothing half-written was kept", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        timing.record(prog, startup)
