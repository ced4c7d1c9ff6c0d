"""Latency of one prediction: the model cached (as the playground keeps it) vs loaded each time.

One prediction = one uploaded PNG through pipeline.predict: decode, prepare from the logged
preprocessing, normalize, forward pass, softmax and top-k. "Cached" reuses a loaded Predictor;
"loaded each time" also resolves the registry version, reads the model's metadata and loads its pt2
graph from the store first (what every prediction would cost without st.cache_resource). Samples
are interleaved in rounds so machine noise hits both. Prints p50/p95 of each and their ratio.

Without --model-uri it trains a digits cnn (3 epochs, ~1 min on 2 CPU cores) into a throwaway
store and registers it. Target: p50 under 20 ms with the model cached.

    .venv/bin/python bench/predict_latency.py [--model-uri models:/NAME@ALIAS] [--cached 500] [--loads 20]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if "--model-uri" not in sys.argv:  # a throwaway store, unless measuring a model of the user's store
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline import settings  # noqa: E402
from pipeline.runs import train  # noqa: E402
from pipeline.serving import predict  # noqa: E402
from pipeline.training import data  # noqa: E402
from pipeline.config import RunConfig  # noqa: E402


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000, q))


def sample_png() -> bytes:
    """The first digits test image, as a user would upload it."""
    test = data.load(RunConfig(dataset="digits")).test
    buffer = io.BytesIO()
    Image.fromarray(test.images[0, 0].numpy(), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", default="", help="measure this model instead of a fresh digits cnn")
    parser.add_argument("--cached", type=int, default=500, help="predictions timed with the model cached")
    parser.add_argument("--loads", type=int, default=20, help="predictions timed loading the model each time")
    parser.add_argument("--threads", type=int, default=settings.predict_threads(),
                        help="torch threads (default: RUNBOARD_PREDICT_THREADS, as the dashboard); 0: torch's own")
    args = parser.parse_args()

    uri = args.model_uri
    if not uri:
        print("training a 3-epoch digits cnn into a throwaway store ...", flush=True)
        train.run(RunConfig(dataset="digits", model="cnn", epochs=3, experiment="bench-predict",
                            register="bench-digits-cnn"), progress=False)
        uri = "models:/bench-digits-cnn/1"
    png = sample_png()
    if args.threads:  # after training, which picks its own thread count
        torch.set_num_threads(args.threads)

    model = predict.load(uri)
    label = model.predict([png])[0].label
    forward_input = model.prepare([png])
    for _ in range(20):  # warm-up: allocator, oneDNN primitives
        model.predict([png])

    cached, forward, loaded = [], [], []
    per_round = max(1, args.cached // max(1, args.loads))
    for _ in range(args.loads):  # interleaved: a load, then a batch of cached predictions
        loaded.append(timed(lambda: predict.load(uri).predict([png])))
        for _ in range(per_round):
            cached.append(timed(lambda: model.predict([png])))
            forward.append(timed(lambda: model.logits(forward_input)))

    print(f"model {model.ref.label} ({model.preprocessing.model} on {model.preprocessing.dataset}), "
          f"predicts {label!r} for the sample; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs")
    print(f"{'':38}{'p50 ms':>10}{'p95 ms':>10}{'n':>6}")
    rows = [("cached: decode + prepare + forward", cached), ("cached: forward pass only", forward),
            ("loaded each time: load + predict", loaded)]
    for name, samples in rows:
        print(f"{name:38}{percentile(samples, 50):10.2f}{percentile(samples, 95):10.2f}{len(samples):6d}")
    p50 = percentile(cached, 50)
    print(f"ratio loaded/cached at p50: {percentile(loaded, 50) / p50:,.0f}x; "
          f"target p50 < 20 ms cached: {'met' if p50 < 20 else 'MISSED'} ({p50:.2f} ms)")
    print(f"(median of all cached samples: {statistics.median(cached) * 1000:.2f} ms)")


if __name__ == "__main__":
    main()
