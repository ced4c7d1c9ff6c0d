"""The cost of MLflow logging: the same training with the MLflow tracker and with the null one.

Runs are interleaved (off, on, off, on, ...) so that machine noise hits both; prints the median
wall time of each and the overhead in percent (target: under 5 %).

    .venv/bin/python bench/logging_overhead.py [--repeats 3] [--epochs 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp()}/bench.db"

from pipeline.runs import tracking  # noqa: E402
from pipeline.training import data, engine  # noqa: E402
from pipeline.config import RunConfig  # noqa: E402


def timed_fit(config: RunConfig, d: data.ImageData, log: bool) -> float:
    tracker = engine.NullTracker()
    if log:
        client = tracking.connect()
        run = client.create_run(tracking.experiment_id(client, "bench-logging"))
        tracker = tracking.MlflowTracker(client, run.info.run_id)
    start = time.perf_counter()
    engine.fit(config, d, tracker, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32, help="smaller batches mean more step metrics")
    args = parser.parse_args()
    config = RunConfig(epochs=args.epochs, batch_size=args.batch_size, device="cpu")
    d = data.load(config)
    tracking.connect()
    timed_fit(config, d, log=True)  # warm-up: imports, database tables, allocator
    off, on = [], []
    for _ in range(args.repeats):
        off.append(timed_fit(config, d, log=False))
        on.append(timed_fit(config, d, log=True))
    steps = args.epochs * -(-len(d.train) // args.batch_size)
    print(f"{config.model} on digits, {args.epochs} epochs, {steps} steps -> {steps + 7 * args.epochs} metric points")
    print(f"logging off : median {statistics.median(off):6.2f} s  {[round(t, 2) for t in off]}")
    print(f"logging on  : median {statistics.median(on):6.2f} s  {[round(t, 2) for t in on]}")
    print(f"overhead    : {100 * (statistics.median(on) / statistics.median(off) - 1):+6.1f} %")


if __name__ == "__main__":
    main()
