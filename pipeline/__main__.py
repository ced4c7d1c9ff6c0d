"""Command line: `python -m pipeline train|predict|submit|cancel|worker ...`. A thin caller of the library.

Exit codes: 0 success; 2 a bad value or dataset (one line naming it, nothing written);
1 training failed (the run ends FAILED); 130 interrupted or cancelled (the run ends KILLED).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

# Idle OpenMP threads sleep instead of spinning: spinning ones collapse when another process holds a
# core (measured on a busy 2-core box: 2 threads 4-10x slower than 1; passive ones on par). Before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pipeline import config as cfg  # noqa: E402
from pipeline import jobs_cli  # noqa: E402


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + line
        self.exit(2, f"error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m pipeline", description="Train and track image classifiers in MLflow.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one run and log it to MLflow",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cfg.add_arguments(train)
    train.add_argument("--run-id", default=None, help=argparse.SUPPRESS)  # the worker's queued run
    train.add_argument("--quiet", action="store_true", help="no progress bar")


    commands.add_parser("init", help="create a new tracking store's tables (before several processes open it)")

    predict = commands.add_parser("predict", help="print the top classes of images under a logged model")
    predict.add_argument("model_uri", metavar="MODEL_URI",
                         help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model")
    predict.add_argument("images", metavar="IMAGE", nargs="+", help="image files (png, jpg, webp, bmp, gif, ...)")
    predict.add_argument("--json", action="store_true", help="one JSON object per image and line")
    predict.add_argument("--top", type=int, default=3, metavar="K", help="classes to show per image (default: 3)")
    jobs_cli.add_parsers(commands)  # submit, cancel, queue, worker
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _train(args) -> int:
    try:
        config = cfg.from_args(args)  # before the heavy imports: a typo answers at once
    except cfg.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from pipeline import data, engine, settings, tracking, train

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after mlflow's import configured it
    try:
        run_id = train.run(config, run_id=args.run_id, progress=not args.quiet)
    except data.DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except tracking.TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except engine.TrainingError as e:
        print(f"error: training failed: {e}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0, not one per process
        print(f"run {run_id} finished; browse it with: mlflow ui --backend-store-uri {settings.tracking_uri()}")
    return 0


def _init(args) -> int:
    from pipeline import settings, tracking

    try:
        tracking.connect()
    except tracking.TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"tracking store ready: {settings.tracking_uri()}")
    return 0


def _predict(args) -> int:
    """Exit 0; 2 for a bad --top or model URI (nothing predicted); 1 when some image could not be read."""
    import json

    if args.top < 1:
        print(f"error: --top must be at least 1, got {args.top}", file=sys.stderr)
        return 2
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from pipeline import predict, tracking

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        model = predict.load(args.model_uri)
    except predict.ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except tracking.TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    results = predict.predict_many(model, [(path, path) for path in args.images], top=args.top)
    for r in results:
        if args.json:
            print(json.dumps({"image": r.name, "error": r.error.removeprefix(f"{r.name}: ")} if r.error
                             else r.prediction.to_json(r.name)))
        elif r.error:
            print(f"error: {r.error}", file=sys.stderr)
        else:
            top = ", ".join(f"{label} {p:.1%}" for label, p in r.prediction.top)
            print(f"{r.name}: {r.prediction.label} ({r.prediction.probability:.1%})  top: {top}")
    return 1 if any(r.error for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # a cancel from the worker ends the run KILLED
    try:
        return {"train": _train, "init": _init, "predict": _predict, **jobs_cli.COMMANDS}[args.command](args)
    except KeyboardInterrupt:
        print("interrupted: the run ends KILLED", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
