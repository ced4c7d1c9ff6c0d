"""Smith's learning-rate range test (as fastai's `lr_find`): a short run whose lr grows exponentially.

Starting from the config's model, optimizer and data (augmented like training), every step raises
the learning rate by a constant factor from START_LR to END_LR; the loss is smoothed with an
exponential moving average (debiased) and the test stops once it exceeds DIVERGE times its best.
Suggestion: the learning rate at the smoothed minimum divided by 10 (fastai's `lr_min / 10`, a
value safely before the loss blows up); the steepest descent point is reported too.
No MLflow here: pipeline/runs/lr_find.py logs the result as its own small run.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from pipeline.config import RunConfig
from pipeline.training import engine, hardware, models
from pipeline.training.batches import Normalizer, epoch_order, to_device, train_batches
from pipeline.training.data import ImageData

START_LR, END_LR = 1e-6, 1.0  # the range searched
STEPS = 100                   # optimizer steps at most
SMOOTHING = 0.9               # weight of the past in the loss's moving average
DIVERGE = 4.0                 # stop once the smoothed loss is this many times its best
SKIP_START, SKIP_END = 5, 3   # points ignored at each end when choosing (noise, divergence)


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float   # lr at the smoothed minimum / 10
    steepest: float     # lr where the smoothed loss falls fastest (per log lr)
    min_lr: float       # lr at the smoothed minimum
    stopped_early: bool  # the loss diverged before END_LR

    def to_json(self) -> dict:
        return asdict(self)


def lr_at(step: int, steps: int, start: float = START_LR, end: float = END_LR) -> float:
    return start * (end / start) ** (step / max(steps - 1, 1))


def range_test(config: RunConfig, data: ImageData, steps: int = STEPS,
               start: float = START_LR, end: float = END_LR) -> RangeTest:
    """Train `steps` batches with an exponentially growing lr; the losses and the suggested lr."""
    device = engine.pick_device(config.device)
    hardware.configure(device)
    dtype = hardware.amp_dtype(device)
    torch.manual_seed(config.seed)
    net = models.build(config.model, data.channels, data.image_size, len(data.classes), config.weights).to(device)
    if config.freeze_epochs:  # the lr the head alone is trained with first
        models.freeze_backbone(net, True)
    optimizer = engine.make_optimizer(net, config, device)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    train = to_device(data.train, device)
    normalize = Normalizer(data.mean, data.std, device)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    lrs, losses, smoothed, average, best = [], [], [], 0.0, math.inf
    net.train()
    for step, (x, y) in enumerate(_batches(train, config, data.flip, gen, normalize)):
        if step >= steps:
            break
        lr = lr_at(step, steps, start, end)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with hardware.autocast(device, dtype):
            loss = criterion(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        if not math.isfinite(value):
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * value
        smooth = average / (1 - SMOOTHING ** (step + 1))
        lrs.append(lr), losses.append(value), smoothed.append(smooth)
        best = min(best, smooth)
        if step > SKIP_START and smooth > DIVERGE * best:
            break
    return _suggest(lrs, losses, smoothed, stopped_early=len(lrs) < steps)


def _batches(train, config: RunConfig, flip: bool, gen: torch.Generator, normalize: Normalizer):
    """Training batches for as many epochs as the test needs."""
    for epoch in range(1, 10_000):
        yield from train_batches(train, epoch_order(len(train), config.seed, epoch), config.batch_size,
                                 config.augment, flip, gen, normalize)


def _suggest(lrs: list[float], losses: list[float], smoothed: list[float], stopped_early: bool) -> RangeTest:
    if len(lrs) < SKIP_START + SKIP_END + 3:
        raise engine.TrainingError(f"the range test stopped after {len(lrs)} steps: the loss diverged at once; "
                                   "check the data or try another model")
    lo, hi = SKIP_START, len(lrs) - SKIP_END
    window = np.asarray(smoothed[lo:hi])
    at_min = lo + int(window.argmin())
    slopes = np.gradient(window, np.log(np.asarray(lrs[lo:hi])))
    steepest = lo + int(slopes[: at_min - lo + 1].argmin())  # the descent before the minimum
    return RangeTest(lrs, losses, smoothed, suggestion=lrs[at_min] / 10, steepest=lrs[steepest],
                     min_lr=lrs[at_min], stopped_early=stopped_early)
