"""A pre-warmed training process: `python -m pipeline.spare`, started by the local launcher ahead of need.

Importing torch, MLflow and the pipeline and opening the store take most of the ten seconds before
a new run logs anything on a small CPU. A spare pays that while the queue is empty, then waits on
stdin for one JSON line `{"args": [...], "log": PATH}`: it sends its output to the run's log and
runs `python -m pipeline <args>` in-process. End of input (the worker stopped) makes it exit.
Its environment (store, GPU, threads) was fixed when it was started, for the slot it serves.
"""
from __future__ import annotations

import json
import os
import sys


def warm_up() -> None:
    """What every training run imports and opens first, done before it is needed."""
    import pipeline.__main__  # noqa: F401  (first: it sets the environment torch must start with)
    import torch._dynamo  # noqa: F401  (torch's optimizers import it on first use: ~2 s)

    from pipeline import data, engine, tracking, train  # noqa: F401

    try:
        tracking.connect()  # MLflow keeps the store object: the run's own connect() then costs nothing
    except tracking.TrackingError:
        pass  # the run reports it, in its log and its status


def main() -> int:
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
    from pipeline.__main__ import main as pipeline_main

    sys.argv = ["python -m pipeline", *job["args"]]
    return pipeline_main(job["args"])


if __name__ == "__main__":
    sys.exit(main())
