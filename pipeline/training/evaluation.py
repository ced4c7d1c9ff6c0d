"""Scoring a model on a split: the test evaluation a run logs, and the per-epoch validation.

Both run in large batches on the training device; under torchrun validation scores each rank's shard
and adds the sums up, so every rank sees the same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline import names
from pipeline.training import distributed, hardware, metrics
from pipeline.training.batches import Normalizer, eval_batches
from pipeline.training.data import Split


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    labels: np.ndarray         # true class per image
    predictions: np.ndarray    # predicted class per image
    probabilities: np.ndarray  # (N, classes) softmax
    logits: np.ndarray | None = None  # (N, classes) float32: what a temperature divides


@torch.no_grad()
def _logits(model: nn.Module, split: Split, indices, normalize: Normalizer, device: torch.device):
    model.eval()
    dtype, logits, labels = hardware.amp_dtype(device), [], []
    for x, y in eval_batches(split, indices, device, normalize):
        with hardware.autocast(device, dtype):
            logits.append(model(x).float())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def evaluate(model: nn.Module, split: Split, normalize: Normalizer, device: torch.device) -> Evaluation:
    """Scores of every image of `split`, in large batches on the device."""
    logits, labels = _logits(model, split, None, normalize, device)
    probs = logits.softmax(1)
    preds = probs.argmax(1)
    return Evaluation(F.cross_entropy(logits, labels).item(), (preds == labels).float().mean().item(),
                      labels.cpu().numpy(), preds.cpu().numpy(), probs.cpu().numpy(), logits.cpu().numpy())


def validate(model: nn.Module, split: Split, normalize: Normalizer, device: torch.device) -> tuple[float, float]:
    """(loss, accuracy) of `split`: each rank scores its shard, the sums are added up across ranks."""
    shard = distributed.shard(torch.arange(len(split)), pad=False) if distributed.world_size() > 1 else None
    logits, labels = _logits(model, split, shard, normalize, device)
    sums = torch.stack([F.cross_entropy(logits, labels, reduction="sum").double(),
                        (logits.argmax(1) == labels).sum().double(), torch.tensor(len(labels), device=device).double()])
    loss, correct, n = distributed.all_sum(sums).tolist()
    return loss / n, correct / n


def skipped() -> Evaluation:
    """The empty test result of a rank that leaves the test split to rank 0."""
    empty = np.zeros(0, dtype=np.int64)
    return Evaluation(math.nan, math.nan, empty, empty, np.zeros((0, 0), dtype=np.float32))


def test_metrics(test: Evaluation, classes: list[str]) -> tuple[dict[str, float], np.ndarray, dict]:
    """Final metric values, the confusion matrix and per-class scores of a test evaluation."""
    matrix = metrics.confusion_matrix(test.labels, test.predictions, len(classes))
    per_class = metrics.per_class_metrics(matrix, classes)
    macro = metrics.macro_scores(per_class)
    values = {names.TEST_LOSS: test.loss, names.TEST_ACCURACY: test.accuracy,
              names.TEST_PRECISION: macro["precision"], names.TEST_RECALL: macro["recall"], names.TEST_F1: macro["f1"]}
    return values, matrix, per_class


@torch.no_grad()
def features(model: nn.Module, split: Split, mean: list[float], std: list[float]) -> np.ndarray:
    """The penultimate layer's output (what the classifier sees) for every image of `split`, float32 (N, D)."""
    from pipeline.training import models
    from pipeline.training.batches import to_device

    device = next(model.parameters()).device
    normalize, found = Normalizer(mean, std, device), []
    hook = models.classifier(model).register_forward_pre_hook(lambda module, args: found.append(args[0].float().cpu()))
    try:
        model.eval()
        dtype = hardware.amp_dtype(device)
        for x, _ in eval_batches(to_device(split, device), None, device, normalize):
            with hardware.autocast(device, dtype):
                model(x)
    finally:
        hook.remove()
    return torch.cat(found).flatten(1).numpy() if found else np.zeros((0, 0), dtype=np.float32)
