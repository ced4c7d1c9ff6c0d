"""The two kinds of errors people meet, and the one table of exit codes the command line uses.

Every error a user can cause or meet derives from one of two bases, so a caller catches them once:
`UserError` (a bad value, dataset, run id or model: exit 2, nothing written) and `ServiceError`
(the tracking store cannot be used, or training failed: exit 1). Messages are written for people.
"""
from __future__ import annotations

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130  # exit codes; 130 = 128 + SIGINT, as shells report Ctrl-C


class UserError(ValueError):
    """Something the user gave cannot be used; the message names it and what is allowed."""


class ServiceError(RuntimeError):
    """A service (the tracking store) or the training itself failed; the message says which."""


def exit_code(error: BaseException) -> int:
    """The exit code for an error that ends a command."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(error, UserError):
        return USAGE
    return FAILED


def message(error: BaseException) -> str:
    """The one line a command prints for an error that ends it."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted: the run ends KILLED"
    text = str(error) or type(error).__name__
    return f"error: {text}"


STORE_CODE = ("sqlalchemy", "sqlite3", "mlflow.store", "mlflow.utils.rest_utils")  # modules that hold the store
RETRY_SECONDS = 0.02  # how often a stop that arrived inside the store's code looks again


def inside_store_call(frame) -> bool:
    """Whether this stack is in the tracking store's client code (a write may hold SQLite's lock)."""
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(STORE_CODE):
            return True
        frame = frame.f_back
    return False


def interrupt_on_stop_signals() -> None:
    """SIGTERM (a cancel from the worker, a stop from a cluster) or Ctrl-C raises KeyboardInterrupt: the run
    ends KILLED. Never inside a store call, though: raised in the middle of a write, it left SQLite's lock
    held by a connection nobody would close, so the run could not record its end and the worker had to
    SIGKILL it 30 s later (seen in CI: "database is locked" for 20 s after a Cancel). Such a stop waits
    until the main thread has left the store's code, looking again every RETRY_SECONDS (SIGALRM)."""
    import signal

    pending: list[int] = []

    def interrupt(signum, frame):
        if signum != signal.SIGALRM:
            pending[:] = [signum]
        if not pending:
            return
        if inside_store_call(frame):
            signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)
            return
        raise KeyboardInterrupt(f"signal {pending.pop()}")

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(signum, interrupt)


def run_command(command, *args) -> int:
    """Call `command(*args)`, which returns an exit code; an error ends it with one line and its exit code.

    The one place where errors become exit codes: the command line and the worker's spare processes
    both end through it.
    """
    import sys

    try:
        return command(*args)
    except (UserError, ServiceError, KeyboardInterrupt) as e:
        print(message(e), file=sys.stderr)
        return exit_code(e)
