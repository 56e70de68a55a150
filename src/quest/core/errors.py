"""User-facing errors and the wrapper that turns them into one line and a non-zero exit."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from quest.core import interrupts, timing
from quest.core.interrupts import Terminated  # raised on SIGTERM; commands that must clean up catch it from here


class QuestError(Exception):
    """A problem with the user's input (params, data, environment): reported in one line, no traceback."""


class TrainingDiverged(QuestError):
    """A network's loss became non-finite while it trained: which network, at which epoch, and what to try."""


class TooLarge(QuestError):
    """A model that would not fit in the memory available: skipped, with this reason, before it trains."""


class StoreFailure(Exception):
    """The tracking store or the disk failed mid-stage (locked, full, gone): one line, exit 75, and what was
    kept of the stage's work."""


EXIT_USER_ERROR = 2
EXIT_STORE_FAILURE = 75  # sysexits' EX_TEMPFAIL: the tracking store failed; try again once it is back


def first_line(error: BaseException) -> str:
    """An exception's message in one line: its first non-empty line, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def shown_uri(uri: str) -> str:
    """`uri` with any password replaced, fit for a message or a log."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def store_failure(error: BaseException) -> str | None:
    """One line saying what went wrong when `error` came from the tracking store or the disk (locked, full,
    unreachable); None for anything else, which is a bug and keeps its traceback."""
    import errno

    cause = error  # the database driver's own words, not SQLAlchemy's or MLflow's wrapping of them
    while (inner := getattr(cause, "orig", None) or cause.__cause__) is not None and inner is not cause:
        cause = inner
    reason = first_line(cause)
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
        return f"{reason} ({error.filename})" if error.filename else reason
    if type(error).__module__.startswith(("sqlalchemy.", "sqlite3", "mlflow.", "requests.", "urllib3.")):
        if re.search(r"error code 403\b", reason):  # a secured server (make server AUTH=1) this user may not write to
            user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "this user"
            return (
                f"the tracking server refused {user} (403): logging runs needs EDIT on the experiment, which its "
                f"admin grants (`quest team add-user {user} EDIT`, docs/team.md)"
            )
        return reason
    return None


def run_cli(prog: str, main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a command's main(); user errors become `prog: error: message` on stderr and exit code 2, a signal one
    line and exit 130 or 143 at whatever moment it comes (quest.core.interrupts)."""
    startup = timing.process_age()
    interrupts.arm(prog)
    try:
        main(argv)
        interrupts.completed()
    except (KeyboardInterrupt, Terminated):
        raise SystemExit(interrupts.finish()) from None
    except QuestError as error:
        _unless_stopped()
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except StoreFailure as error:
        _unless_stopped()
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_STORE_FAILURE) from None
    except Exception as error:
        _unless_stopped()
        reason = store_failure(error)
        if reason is None:
            raise
        # Every stage that logs publishes its outputs only after MLflow has everything (quest.core.files.staged_into).
        print(f"{prog}: error: the MLflow store or the disk failed: {reason}; the outputs are as they were",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(EXIT_STORE_FAILURE) from None
    finally:
        timing.record(prog, startup)


def _unless_stopped() -> None:
    """An error raised after a signal came is the signal's doing (a worker it killed, a store it interrupted)."""
    if interrupts.received() is not None:
        raise SystemExit(interrupts.finish()) from None
