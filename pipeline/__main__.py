"""Command line: `python -m pipeline train|seed ...`. A thin caller of the library.

Exit codes: 0 success; 2 a bad value or dataset (one line naming it, nothing written);
1 training failed (the run ends FAILED); 130 interrupted or cancelled (the run ends KILLED).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from pipeline import config as cfg


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

    seed = commands.add_parser("seed", help="train a first digits run when the store has no runs yet")
    seed.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _train(args) -> int:
    from pipeline import data, engine, tracking, train

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after mlflow's import configured it
    try:
        config = cfg.from_args(args)
        run_id = train.run(config, run_id=args.run_id, progress=not args.quiet)
    except (cfg.ConfigError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except tracking.TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except engine.TrainingError as e:
        print(f"error: training failed: {e}", file=sys.stderr)
        return 1
    print(f"run {run_id} finished; browse it with: mlflow ui --backend-store-uri {tracking.settings.tracking_uri()}")
    return 0


def _seed(args) -> int:
    from pipeline import tracking

    client = tracking.connect()
    if client.search_runs(client.search_experiments() and [e.experiment_id for e in client.search_experiments()],
                          max_results=1):
        print("the store already has runs; nothing to seed")
        return 0
    print("empty store: training a first digits run")
    args = _parser().parse_args(["train", "--dataset", "digits", "--model", "cnn", "--epochs", "5",
                                 "--run-name", "first-digits-run"] + (["--quiet"] if args.quiet else []))
    return _train(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # a cancel from the worker ends the run KILLED
    try:
        return {"train": _train, "seed": _seed}[args.command](args)
    except KeyboardInterrupt:
        print("interrupted: the run ends KILLED", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
