"""The cost of checkpoints: their size, and the time they take against the epoch's, per model.

Trains each model for a few epochs into a real (temporary) MLflow run with the checkpoint writer on,
and prints per epoch: the training time, what training waits for (the CPU copy of the state) and
what runs beside it in a thread (torch.save and the upload; an epoch that ends while the previous
upload still runs skips its checkpoint).
The target: training waits at most 2 % of its epoch time. With `--every S` it also checkpoints
within epochs every S seconds (RUNBOARD_CHECKPOINT_SECONDS) and prints the waits of all of them.

    .venv/bin/python bench/checkpoint_overhead.py [--epochs 2] [--models cnn resnet18@64] [--every S]
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

from pipeline import names  # noqa: E402
from pipeline.config import RunConfig  # noqa: E402
from pipeline.runs import checkpoints, tracking  # noqa: E402
from pipeline.training import data, engine  # noqa: E402


def measure(model: str, image_size: int, epochs: int, batch_size: int, every: int | None = None) -> None:
    config = RunConfig(model=model, image_size=image_size, epochs=epochs, batch_size=batch_size, device="cpu",
                       optimizer="adamw")
    d = data.load(config)
    client = tracking.connect()
    run_id = client.create_run(tracking.experiment_id(client, "bench-checkpoints")).info.run_id
    copies: list[float] = []
    snapshot = engine.training_state

    def timed_state(*args, **kwargs):  # the part training waits for
        t0 = time.perf_counter()
        state = snapshot(*args, **kwargs)
        copies.append(time.perf_counter() - t0)
        return state

    engine.training_state = timed_state
    writer = checkpoints.CheckpointWriter(client, run_id)
    try:
        result = engine.fit(config, d, tracking.MlflowTracker(client, run_id), progress=False, checkpoint=writer,
                            checkpoint_every=every)
    finally:
        writer.close()
        engine.training_state = snapshot
    epoch_s = [h[names.EPOCH_SECONDS] for h in result.history]
    if every:
        print(f"{model} at {image_size or 8} px, a checkpoint every {every} s within epochs: {len(copies)} "
              f"checkpoints ({writer.skipped} skipped: previous upload still going) in {sum(epoch_s):.1f} s of "
              f"training; training waited {1000 * sum(copies):.0f} ms in all ({100 * sum(copies) / sum(epoch_s):.2f} %)")
        return
    waits = copies
    side = [t["save_s"] + t["upload_s"] for t in writer.timings] + [0.0] * writer.skipped  # skipped: nothing
    size = writer.timings[-1]["bytes"] / 2 ** 20
    label = f"{model} on digits at {image_size or 8} px, batch {batch_size}, AdamW"
    print(f"{label}: checkpoint {size:.1f} MiB; {writer.skipped} epoch(s) skipped (previous upload still going)")
    for i, (e, w, s) in enumerate(zip(epoch_s, waits, side), 1):
        print(f"  epoch {i}: train {e:7.2f} s | training waits {1000 * w:7.1f} ms ({100 * w / e:5.2f} %) | "
              f"save+upload in the background {s:6.2f} s ({100 * s / e:5.1f} %)")
    print(f"  median: waits {100 * statistics.median(w / e for w, e in zip(waits, epoch_s)):.2f} % of the epoch")


def hook_cost(repeats: int = 3) -> None:
    """The per-step check for a mid-epoch checkpoint that is not due, against training without it, interleaved."""
    config = RunConfig(model="cnn", epochs=3, batch_size=16, device="cpu", optimizer="adamw")
    d = data.load(config)
    times: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(repeats):
        for mode, every in (("off", None), ("on", 10 ** 9)):
            result = engine.fit(config, d, progress=False, checkpoint=lambda state: None, checkpoint_every=every)
            times[mode].append(sum(h[names.EPOCH_SECONDS] for h in result.history))
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(f"per-step check (cnn, digits, batch 16, {repeats} interleaved repeats): {on:.2f} s with it, "
          f"{off:.2f} s without; ratio {on / off:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["cnn", "resnet18@64"], help="MODEL or MODEL@SIZE")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--every", type=int, default=None, help="also checkpoint within epochs every S seconds")
    parser.add_argument("--hook", action="store_true", help="only measure the per-step check, against none")
    args = parser.parse_args()
    if args.hook:
        return hook_cost()
    for spec in args.models:
        model, _, size = spec.partition("@")
        measure(model, int(size or 0), args.epochs, args.batch_size, args.every)


if __name__ == "__main__":
    main()
