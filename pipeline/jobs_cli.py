"""The queue's commands for `python -m pipeline`: submit, cancel, queue, worker. Thin callers of jobs/worker.

Exit codes: 0 done; 2 a bad value or unknown run (one line naming it); 1 the store cannot be reached.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from pipeline import config as cfg


def add_parsers(commands) -> None:
    """Add the queue's subcommands to the `python -m pipeline` parser."""
    submit = commands.add_parser("submit", help="queue a training run for the worker; prints its run id",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cfg.add_arguments(submit)

    cancel = commands.add_parser("cancel", help="cancel queued or running runs (they end KILLED)")
    cancel.add_argument("run_ids", metavar="RUN_ID", nargs="+", help="run ids, as `submit` printed them")

    commands.add_parser("queue", help="list queued and running runs, oldest first")

    worker = commands.add_parser("worker", help="train queued runs, each in its own process, until stopped")
    worker.add_argument("--concurrency", type=int, default=None, metavar="N",
                        help="runs trained at once (default: RUNBOARD_WORKER_CONCURRENCY, else one per GPU, "
                             "one on a CPU-only machine)")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty and every run ended")
    worker.add_argument("--max-jobs", type=int, default=None, metavar="N", help="exit after starting N runs")


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _submit(args) -> int:
    try:
        config = cfg.from_args(args)  # before the heavy imports: a typo answers at once
    except cfg.ConfigError as e:
        return _fail(str(e), 2)
    from pipeline import jobs, tracking

    try:
        run_id = jobs.submit(config)
    except cfg.ConfigError as e:
        return _fail(str(e), 2)
    except tracking.TrackingError as e:
        return _fail(str(e), 1)
    print(run_id)
    return 0


def _cancel(args) -> int:
    from pipeline import jobs, tracking

    try:
        client = tracking.connect()
        for run_id in args.run_ids:
            print(jobs.cancel(run_id, client))
    except jobs.JobError as e:
        return _fail(str(e), 2)
    except tracking.TrackingError as e:
        return _fail(str(e), 1)
    return 0


def _queue(args) -> int:
    from pipeline import jobs, tracking

    try:
        client = tracking.connect()
        runs = jobs.unfinished(client)
    except tracking.TrackingError as e:
        return _fail(str(e), 1)
    runs.sort(key=lambda r: (r.info.status != "RUNNING", float(r.data.tags.get(jobs.TAG_QUEUED) or 0)))
    for r in runs:
        tags, waited = r.data.tags, time.time() - float(r.data.tags.get(jobs.TAG_QUEUED) or 0)
        where = f"on {tags[jobs.TAG_WORKER]}" if jobs.TAG_WORKER in tags else f"queued {waited:.0f} s ago"
        print(f"{r.info.run_id}  {r.info.status:<9}  {r.info.run_name}  {where}")
    if not runs:
        print("the queue is empty")
    return 0


def _worker(args) -> int:
    from pipeline import tracking, worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    if args.concurrency is not None and args.concurrency < 1:
        return _fail(f"--concurrency must be at least 1, got {args.concurrency}", 2)
    try:
        w = worker.Worker(concurrency=args.concurrency)
    except (tracking.TrackingError, ValueError) as e:
        return _fail(str(e), 1 if isinstance(e, tracking.TrackingError) else 2)
    w.work(burst=args.burst, max_jobs=args.max_jobs)
    return 0


COMMANDS = {"submit": _submit, "cancel": _cancel, "queue": _queue, "worker": _worker}
