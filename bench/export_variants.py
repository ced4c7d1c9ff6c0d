"""Size and latency of a registered model vs its ONNX and int8 variants, side by side in one process.

For each model: train it tiny into a throwaway store (cnn on digits, 3 epochs; resnet18 on digits resized to
64 px, 1 epoch: what the figures need is the architecture at that input size, not a good model), register
it, then `pipeline.serving.export.export` it: ONNX (torch dynamo exporter) and int8 (onnxruntime static QDQ).
Every variant is timed in this same process, one thread each, one after the other: the original in
PyTorch (the pt2 graph MLflow loads), the variants in onnxruntime. Prints export.summary's table: test
accuracy, agreement, largest differences, size, p50/p95 for 1 image and a batch of 64, and ratios to
the original.

    .venv/bin/python bench/export_variants.py [--models cnn resnet18] [--runs 40]
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
STORE = tempfile.mkdtemp(prefix="runboard-bench-export-")  # a throwaway store, removed at exit (resnet18: ~100 MB)
atexit.register(shutil.rmtree, STORE, True)
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{STORE}/bench.db"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from pipeline.config import RunConfig  # noqa: E402
from pipeline.runs import train  # noqa: E402
from pipeline.serving import export  # noqa: E402

SETUPS = {  # what each model is trained as: the input size decides the figures
    "cnn": dict(dataset="digits", model="cnn", epochs=3),
    "resnet18": dict(dataset="digits", model="resnet18", epochs=1, image_size=64),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--runs", type=int, default=export.LATENCY_RUNS, help="timed calls of one image per variant")
    args = parser.parse_args()
    for model in args.models:
        started = time.perf_counter()
        train.run(RunConfig(**SETUPS[model], experiment="bench", register=f"bench-{model}"), progress=False)
        trained = time.perf_counter() - started
        report = export.export(f"models:/bench-{model}/1", runs=args.runs)
        print(f"\n{model}: trained in {trained:.0f} s, exported + quantized + evaluated in "
              f"{time.perf_counter() - started - trained:.0f} s")
        print(export.summary(report))


if __name__ == "__main__":
    main()
