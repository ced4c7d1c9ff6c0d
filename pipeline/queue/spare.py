"""A pre-warmed training process: `python -m pipeline.queue.spare`, started by the local launcher ahead of need.

Importing torch, MLflow and the pipeline and opening the store take most of the ten seconds before
a new run logs anything on a small CPU. A spare pays that while the queue is empty, then waits on
stdin for one JSON line `{"run_id": ID, "log": PATH}`: it sends its output to the run's log and
trains the run in-process, exactly as `python -m pipeline train --run-id ID` would (both end
through errors.run_command). End of input (the worker stopped) makes it exit.
Its environment (store, GPU, threads) was fixed when it was started, for the slot it serves.
"""
from __future__ import annotations

import json
import os
import sys


def warm_up() -> None:
    """What every training run imports and opens first, done before it is needed."""
    import optuna  # noqa: F401  (a study's trial asks its pruner after every epoch)
    import torch._dynamo  # noqa: F401  (torch's optimizers import it on first use: ~2 s)

    from pipeline.runs import tracking, train  # noqa: F401
    from pipeline.training import data, engine  # noqa: F401

    try:
        tracking.connect()  # MLflow keeps the store object: the run's own connect() then costs nothing
    except tracking.TrackingError:
        pass  # the run reports it, in its log and its status


def main() -> int:
    from pipeline import errors

    warm_up()
    print(f"spare {os.getpid()} ready", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the worker stopped or replaced this spare
    job = json.loads(line)
    sys.stdout.flush(), sys.stderr.flush()
    log = os.open(job["log"], os.O_WRONLY | os.O_APPEND)
    os.dup2(log, 1), os.dup2(log, 2)
    os.close(log)
    from pipeline.queue import jobs

    errors.interrupt_on_stop_signals()
    return errors.run_command(jobs.queued_process, job["run_id"])


if __name__ == "__main__":
    sys.exit(main())
