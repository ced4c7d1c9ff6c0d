"""What the embedding map costs: PCA (scikit-learn) against UMAP (umap-learn) for N test images' features,
side by side in one process, against a short run's training time measured in the same script.

UMAP's first call compiles its numba kernels: it is timed first (cold, JIT included) and then again (warm).
Features are synthetic (10 Gaussian clusters in D dimensions, like a small CNN's 128 penultimate units).

    .venv/bin/pip install umap-learn==0.5.12   # not in requirements.txt: runs use PCA
    .venv/bin/python bench/embedding_map.py [--images 10000] [--dim 128] [--epochs 3] [--skip-umap]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-umap", action="store_true", help="PCA only (what every run does; no umap-learn)")
    args = parser.parse_args()
    from pipeline.config import RunConfig
    from pipeline.training import data, embedding, engine

    config = RunConfig(dataset="digits", model="cnn", epochs=args.epochs, device="cpu")
    d = data.load(config)
    training = seconds(lambda: engine.fit(config, d, engine.NullTracker(), progress=False))
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, args.dim)) * 3
    x = (centres[rng.integers(0, 10, args.images)] + rng.normal(size=(args.images, args.dim))).astype(np.float32)
    pca = seconds(lambda: embedding.reduce(x, "pca"))
    again = seconds(lambda: embedding.reduce(x, "pca"))
    umap = [] if args.skip_umap else [("UMAP, first call (numba JIT)", seconds(lambda: embedding.reduce(x, "umap"))),
                                      ("UMAP, warm", seconds(lambda: embedding.reduce(x, "umap")))]
    print(f"{args.images:,} images x {args.dim} features, this machine ({os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}); a {args.epochs}-epoch digits cnn trains in {training:.1f} s here")
    for name, s in (("PCA, first call (import)", pca), ("PCA, again", again), *umap):
        print(f"  {name:<30} {s:7.2f} s  ({s / training:.1%} of that run)")


if __name__ == "__main__":
    main()
