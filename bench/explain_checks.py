"""Explanations: latency per image with the explainer cached, and the two faithfulness checks.

Latency: one image (what the playground asks for) and per image in a batch of 64, for the cnn on
8x8 digits (Grad-CAM) and resnet18 on 64x64 RGB (Grad-CAM on layer4); the weights do not change the
cost, so resnet18 keeps its random ones. Faithfulness (pipeline.serving.faithfulness): a cnn
(3 epochs) and an mlp (5 epochs) trained on digits without MLflow; randomization on the first 100
test images, deletion of 20 % of the pixels over the whole test split (359 images).

    .venv/bin/python bench/explain_checks.py [--threads 1] [--runs 200]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.config import RunConfig  # noqa: E402
from pipeline.serving import explain, faithfulness, predict  # noqa: E402
from pipeline.training import data, engine, models  # noqa: E402


def preprocessing(arch: str, channels: int, side: int) -> predict.Preprocessing:
    return predict.Preprocessing(tuple(str(i) for i in range(10)), channels, (side, side), (0.5,) * channels,
                                 (0.25,) * channels, model=arch)


def latency(explainer: explain.Explainer, batch: np.ndarray, runs: int) -> tuple[float, float, float]:
    """p50, p95 ms for one image; ms per image in a batch of len(batch)."""
    explainer.explain(batch[:1])
    one = []
    for _ in range(runs):
        started = time.perf_counter()
        explainer.explain(batch[:1])
        one.append((time.perf_counter() - started) * 1000)
    many = []
    for _ in range(max(3, runs // 20)):
        started = time.perf_counter()
        explainer.explain(batch)
        many.append((time.perf_counter() - started) * 1000 / len(batch))
    return statistics.median(one), float(np.percentile(one, 95)), statistics.median(many)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a loaded machine)")
    parser.add_argument("--runs", type=int, default=200, help="single-image explanations timed per model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    digits = data.load(RunConfig(dataset="digits"))
    images = digits.test.images.numpy()

    print("latency (explainer cached):")
    cases = [("cnn", "digits 8x8", 1, 8, images[:64]),
             ("resnet18", "64x64 RGB", 3, 64, rng.integers(0, 256, (64, 3, 64, 64), dtype=np.uint8))]
    for arch, what, channels, side, batch in cases:
        torch.manual_seed(0)
        net = models.build(arch, channels, (side, side), 10)
        explainer = explain.Explainer(net, preprocessing(arch, channels, side))
        p50, p95, per_image = latency(explainer, batch, args.runs if arch == "cnn" else args.runs // 10)
        print(f"  {arch:9} {what:11} {explainer.method}: 1 image p50 {p50:.1f} ms, p95 {p95:.1f} ms; "
              f"{per_image:.2f} ms per image in a batch of {len(batch)}")

    print("faithfulness (digits test split):")
    for arch, epochs in (("cnn", 3), ("mlp", 5)):
        config = RunConfig(dataset="digits", model=arch, epochs=epochs, batch_size=64)
        result = engine.fit(config, digits, progress=False)
        pre = predict.Preprocessing(tuple(digits.classes), digits.channels, digits.image_size, tuple(digits.mean),
                                    tuple(digits.std), model=arch)
        trained = explain.Explainer(result.model, pre)
        torch.manual_seed(1)
        random = explain.Explainer(models.build(arch, 1, digits.image_size, 10), pre)
        correlation = faithfulness.randomization(trained, random, images[:100])
        salient, chance = faithfulness.deletion(trained, images)
        accuracy = float((result.test.predictions == result.test.labels).mean())
        print(f"  {arch} ({epochs} epochs, test accuracy {accuracy:.3f}, {trained.method}): rank correlation with "
              f"random weights {correlation:.2f}; deleting the 20% most salient pixels drops p(predicted) by "
              f"{salient:.3f}, 20% random pixels by {chance:.3f} ({salient / chance:.1f}x)")


if __name__ == "__main__":
    main()
