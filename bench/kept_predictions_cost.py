"""The per-run cost of keeping predictions: predictions.npz, calibration.json (temperature fit) and the
curve metrics, against the training they follow and the evaluation artifacts every run already logs.

Side by side in one process: a short real run (digits, cnn) trained without MLflow, then into one real
(temporary) MLflow run the existing evaluation artifacts (confusion matrix, per-class, figures) and the
kept predictions; then the kept predictions' work for N synthetic test images (compute only, and the
file's size), as a bigger test split would cost.

    .venv/bin/python bench/kept_predictions_cost.py [--epochs 3] [--images 10000] [--classes 10 100]
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp()}/bench.db"

import numpy as np  # noqa: E402

from pipeline.config import RunConfig  # noqa: E402
from pipeline.runs import kept_predictions, tracking, train  # noqa: E402
from pipeline.training import calibration, curves, data, engine  # noqa: E402


def seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def synthetic(n: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)).astype(np.float32) * 2
    logits[np.arange(n), labels] += 4  # mostly right, overconfident
    return logits, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    args = parser.parse_args()

    config = RunConfig(dataset="digits", model="cnn", epochs=args.epochs, device="cpu")
    d = data.load(config)
    result = None

    def fit():
        nonlocal result
        result = engine.fit(config, d, engine.NullTracker(), progress=False)

    training = seconds(fit)
    client = tracking.connect()
    run_id = client.create_run(tracking.experiment_id(client, "bench-kept")).info.run_id
    tracker = tracking.MlflowTracker(client, run_id)
    existing = seconds(lambda: train.log_evaluation(client, run_id, result, d, tracker))
    kept = seconds(lambda: kept_predictions.log(client, run_id, result, d, tracker))  # imports sklearn, scipy.optimize
    again = client.create_run(tracking.experiment_id(client, "bench-kept")).info.run_id
    warm = seconds(lambda: kept_predictions.log(client, again, result, d, tracking.MlflowTracker(client, again)))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **kept_predictions.arrays(result, d))
    print(f"digits cnn, {args.epochs} epochs, {len(d.test)} test images, on this machine ({os.cpu_count()} CPUs):")
    print(f"  training (engine.fit, no MLflow)          {training:7.2f} s")
    print(f"  existing evaluation artifacts (logged)    {existing:7.2f} s  ({existing / training:.1%} of training)")
    print(f"  kept predictions + calibration (logged)   {kept:7.2f} s  ({kept / training:.1%} of training, "
          f"{kept / existing:.2f}x the existing artifacts); predictions.npz {buffer.tell() / 1024:.1f} KiB")
    print(f"  ...the same again, its imports done          {warm:7.2f} s  ({warm / training:.1%} of training)")
    for classes in args.classes:
        logits, labels = synthetic(args.images, classes)
        val_logits, val_labels = synthetic(args.images // 5, classes, seed=1)
        fit_s = seconds(lambda: calibration.calibration(logits, labels, val_logits, val_labels))
        probs = calibration.scaled(logits, 1.0)
        curve_s = seconds(lambda: curves.macro(curves.per_class(probs, labels, [str(c) for c in range(classes)])))
        buffer = io.BytesIO()
        save_s = seconds(lambda: np.savez_compressed(buffer, probabilities=probs, labels=labels,
                                                     predicted=probs.argmax(1), indices=np.arange(len(labels))))
        print(f"  {args.images:,} test images x {classes} classes (+{args.images // 5:,} validation): calibration "
              f"{fit_s:.2f} s, curves {curve_s:.2f} s, npz {save_s:.2f} s and {buffer.tell() / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
