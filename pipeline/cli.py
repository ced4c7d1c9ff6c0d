"""The command line: `python -m pipeline train|init|predict|submit|cancel|resume|queue|worker ...`.

Thin callers of the library. Each command returns its exit code; errors end it through
errors.run_command, the one table of exit codes: 0 success; 2 a bad value, dataset, run or model
(one line naming it, nothing written); 1 the tracking store cannot be used or training failed (the
run ends FAILED); 130 interrupted or cancelled (the run ends KILLED).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from pipeline import config as cfg
from pipeline import errors, settings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + line
        self.exit(errors.USAGE, f"error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m pipeline", description="Train and track image classifiers in MLflow.")
    commands = parser.add_subparsers(dest="command", required=True)

    # --- training ---
    train = commands.add_parser("train", help="train one run and log it to MLflow",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cfg.add_arguments(train)
    train.add_argument("--run-id", default=None, help=argparse.SUPPRESS)  # a queued run: its config is in MLflow
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    commands.add_parser("init", help="create a new tracking store's tables (before several processes open it)")

    # --- models in use ---
    predict = commands.add_parser("predict", help="print the top classes of images under a logged model")
    predict.add_argument("model_uri", metavar="MODEL_URI",
                         help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model")
    predict.add_argument("images", metavar="IMAGE", nargs="+", help="image files (png, jpg, webp, bmp, gif, ...)")
    predict.add_argument("--json", action="store_true", help="one JSON object per image and line")
    predict.add_argument("--top", type=int, default=3, metavar="K", help="classes to show per image (default: 3)")

    # --- the queue ---
    submit = commands.add_parser("submit", help="queue a training run for the worker; prints its run id",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cfg.add_arguments(submit)
    cancel = commands.add_parser("cancel", help="cancel queued or running runs (they end KILLED)")
    cancel.add_argument("run_ids", metavar="RUN_ID", nargs="+", help="run ids, as `submit` printed them")
    resume = commands.add_parser("resume", help="queue FAILED or KILLED runs again: a worker continues each "
                                                "from its last checkpoint, in the same MLflow run")
    resume.add_argument("run_ids", metavar="RUN_ID", nargs="+", help="run ids")
    commands.add_parser("queue", help="list queued and running runs, oldest first")
    worker = commands.add_parser("worker", help="train queued runs, each in its own process, until stopped")
    worker.add_argument("--concurrency", type=int, default=None, metavar="N",
                        help="runs trained at once (default: RUNBOARD_WORKER_CONCURRENCY, else one per GPU, "
                             "one on a CPU-only machine)")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty and every run ended")
    worker.add_argument("--max-jobs", type=int, default=None, metavar="N", help="exit after starting N runs")
    return parser


def _quiet_mlflow() -> None:
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after mlflow's import configured it


# --- training ------------------------------------------------------------------------------------
def train(args) -> int:
    if args.run_id:  # started by the queue: the run holds its config
        from pipeline.runs import train as training

        return training.queued_process(args.run_id, progress=not args.quiet)
    config = cfg.from_args(args)  # before the heavy imports: a typo answers at once
    from pipeline.runs import train as training

    _quiet_mlflow()
    run_id = training.run(config, progress=not args.quiet)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0, not one per process
        print(f"run {run_id} finished; browse it with: mlflow ui --backend-store-uri {settings.tracking_uri()}")
    return errors.OK


def init(args) -> int:
    from pipeline.runs import tracking

    tracking.connect()
    print(f"tracking store ready: {settings.tracking_uri()}")
    return errors.OK


# --- models in use -------------------------------------------------------------------------------
def predict(args) -> int:
    """0; 2 for a bad --top or model URI (nothing predicted); 1 when some image could not be read."""
    if args.top < 1:
        raise errors.UserError(f"--top must be at least 1, got {args.top}")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from pipeline.serving import predict as predictions

    _quiet_mlflow()
    model = predictions.load(args.model_uri)
    results = predictions.predict_many(model, [(path, path) for path in args.images], top=args.top)
    for r in results:
        if args.json:
            print(json.dumps({"image": r.name, "error": r.error.removeprefix(f"{r.name}: ")} if r.error
                             else r.prediction.to_json(r.name)))
        elif r.error:
            print(f"error: {r.error}", file=sys.stderr)
        else:
            top = ", ".join(f"{label} {p:.1%}" for label, p in r.prediction.top)
            print(f"{r.name}: {r.prediction.label} ({r.prediction.probability:.1%})  top: {top}")
    return errors.FAILED if any(r.error for r in results) else errors.OK


# --- the queue -----------------------------------------------------------------------------------
def submit(args) -> int:
    config = cfg.from_args(args)  # before the heavy imports: a typo answers at once
    from pipeline.queue import jobs

    print(jobs.submit(config))
    return errors.OK


def cancel(args) -> int:
    from pipeline.queue import jobs
    from pipeline.runs import tracking

    client = tracking.connect()
    for run_id in args.run_ids:
        print(jobs.cancel(run_id, client))
    return errors.OK


def resume(args) -> int:
    from pipeline.queue import jobs
    from pipeline.runs import tracking

    client = tracking.connect()
    for run_id in args.run_ids:
        print(jobs.resume(run_id, client))
    return errors.OK


def queue(args) -> int:
    from pipeline import names
    from pipeline.queue import jobs
    from pipeline.runs import tracking

    runs = jobs.unfinished(tracking.connect())
    runs.sort(key=lambda r: (r.info.status != names.RUNNING, float(r.data.tags.get(names.TAG_QUEUED) or 0)))
    for r in runs:
        tags, waited = r.data.tags, time.time() - float(r.data.tags.get(names.TAG_QUEUED) or 0)
        where = f"on {tags[names.TAG_WORKER]}" if names.TAG_WORKER in tags else f"queued {waited:.0f} s ago"
        attempt = f"  (attempt {tags[names.TAG_ATTEMPT]})" if names.TAG_ATTEMPT in tags else ""
        print(f"{r.info.run_id}  {r.info.status:<9}  {r.info.run_name}  {where}{attempt}")
    if not runs:
        print("the queue is empty")
    return errors.OK


def worker(args) -> int:
    from pipeline.queue import worker as workers

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    _quiet_mlflow()
    if args.concurrency is not None and args.concurrency < 1:
        raise errors.UserError(f"--concurrency must be at least 1, got {args.concurrency}")
    workers.Worker(concurrency=args.concurrency).work(burst=args.burst, max_jobs=args.max_jobs)
    return errors.OK


COMMANDS = {"train": train, "init": init, "predict": predict, "submit": submit, "cancel": cancel,
            "resume": resume, "queue": queue, "worker": worker}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    errors.interrupt_on_sigterm()  # a cancel from the worker ends the run KILLED
    return errors.run_command(COMMANDS[args.command], args)
