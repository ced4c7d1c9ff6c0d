"""Training and evaluation loops. Knows nothing about MLflow: it reports through a `Tracker`.

Speed comes from where the data sits: the whole uint8 dataset lives on the training device and is
shuffled, augmented and normalized there in batches; losses stay on the device and are read back
once per logging interval, so a GPU never waits on the host inside an epoch.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from pipeline import metrics, models
from pipeline.config import RunConfig
from pipeline.data import ImageData, Split

LOG_EVERY = 50          # optimizer steps between reads of the step losses (one host sync each)
EVAL_BATCH = 1024       # evaluation needs no gradients: big batches
SHIFT = 0.125           # random shift, as a fraction of the image side ("pad by 1/8, crop")
ROTATE_DEG, SCALE = 10.0, 0.1  # strong augmentation: rotation in degrees, relative scale change

# metric names (MLflow keys), defined once and imported wherever they are read
TRAIN_LOSS, TRAIN_ACCURACY = "train_loss", "train_accuracy"
VAL_LOSS, VAL_ACCURACY = "val_loss", "val_accuracy"
LR, EPOCH_SECONDS, THROUGHPUT = "lr", "epoch_seconds", "throughput_img_s"
TRAIN_LOSS_STEP = "train_loss_step"
TEST_LOSS, TEST_ACCURACY = "test_loss", "test_accuracy"
TEST_PRECISION, TEST_RECALL, TEST_F1 = "test_precision_macro", "test_recall_macro", "test_f1_macro"
EPOCH_METRICS = (TRAIN_LOSS, TRAIN_ACCURACY, VAL_LOSS, VAL_ACCURACY, LR, EPOCH_SECONDS, THROUGHPUT)
TEST_METRICS = (TEST_LOSS, TEST_ACCURACY, TEST_PRECISION, TEST_RECALL, TEST_F1)


class TrainingError(RuntimeError):
    """Training went wrong in a way the user can act on (diverged loss, out of memory)."""


class Tracker(Protocol):
    def log_metrics(self, values: dict[str, float], step: int) -> None: ...
    def flush(self) -> None: ...


class NullTracker:
    """Same signatures as the MLflow tracker, does nothing: for tests and benches."""

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        pass

    def flush(self) -> None:
        pass


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    labels: np.ndarray         # true class per image
    predictions: np.ndarray    # predicted class per image
    probabilities: np.ndarray  # (N, classes) softmax


@dataclass
class TrainResult:
    model: nn.Module
    test: Evaluation
    epochs_run: int
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# device and data on it

def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device cuda was asked for, but no CUDA GPU is available; use --device auto or cpu")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


class Normalizer:
    """uint8 (N, C, H, W) on the device -> float32 in [0, 1] -> standardized with the train mean/std."""

    def __init__(self, mean: list[float], std: list[float], device: torch.device):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def augment(x: torch.Tensor, mode: str, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random shift (+ flip, + rotation and scale for 'strong') of a float batch in one grid_sample."""
    if mode == "none":
        return x
    n, _, h, w = x.shape
    rand = lambda *shape: torch.rand(*shape, generator=gen, device=x.device)  # noqa: E731
    # whole-pixel shifts of up to SHIFT of the side, like pad-and-crop
    pixels = torch.tensor([w, h], device=x.device)
    shift = torch.round((rand(n, 2) * 2 - 1) * SHIFT * pixels) * 2 / pixels
    angle, scale = torch.zeros(n, device=x.device), torch.ones(n, device=x.device)
    if mode == "strong":
        angle = (rand(n) * 2 - 1) * math.radians(ROTATE_DEG)
        scale = 1 + (rand(n) * 2 - 1) * SCALE
    mirror = torch.where(rand(n) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=x.device)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * mirror, -sin, shift[:, 0]], 1),
                         torch.stack([sin * mirror, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest" if mode == "light" else "bilinear",
                         padding_mode="zeros", align_corners=False)


def batches(split: Split, batch_size: int, gen: torch.Generator | None = None):
    """(uint8 images, labels) slices of a device-resident split, shuffled when a generator is given."""
    n = len(split)
    order = torch.randperm(n, generator=gen, device=split.labels.device) if gen is not None else None
    for i in range(0, n, batch_size):
        if order is None:
            yield split.images[i:i + batch_size], split.labels[i:i + batch_size]
        else:
            idx = order[i:i + batch_size]
            yield split.images[idx], split.labels[idx]


# ---------------------------------------------------------------------------------------------
# optimisation

def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based) of `total`."""
    t = step / max(total, 1)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "onecycle":  # linear warm-up over the first 25 %, then cosine down to zero
        warm = 0.25
        return 0.1 + 0.9 * t / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / (1 - warm)))
    if schedule == "step":  # x0.1 at 50 % and again at 75 % of training
        return 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01
    return 1.0


def make_optimizer(model: nn.Module, config: RunConfig, device: torch.device) -> torch.optim.Optimizer:
    fused = {"fused": True} if device.type == "cuda" else {}
    params, lr, wd = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd, **fused)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **fused)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **fused)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (fp16 where bf16 is missing); plain fp32 on the CPU."""
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


# ---------------------------------------------------------------------------------------------
# loops

@torch.no_grad()
def evaluate(model: nn.Module, split: Split, normalize: Normalizer, device: torch.device) -> Evaluation:
    model.eval()
    logits = []
    for x, _ in batches(split, EVAL_BATCH):
        with autocast(device):
            logits.append(model(_prepare(x, normalize, device)).float())
    logits = torch.cat(logits)
    labels = split.labels
    loss = F.cross_entropy(logits, labels).item()
    probs = logits.softmax(1)
    preds = probs.argmax(1)
    return Evaluation(loss, (preds == labels).float().mean().item(), labels.cpu().numpy(),
                      preds.cpu().numpy(), probs.cpu().numpy())


def _memory_format(device: torch.device) -> torch.memory_format:
    """NHWC feeds tensor cores on CUDA; the CPU keeps NCHW (no reliable gain measured for these nets)."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def _prepare(x: torch.Tensor, normalize: Normalizer, device: torch.device) -> torch.Tensor:
    x = normalize(x.float().div_(255))
    return x.contiguous(memory_format=_memory_format(device))


class _StepLog:
    """Keeps step losses on the device and hands them to the tracker LOG_EVERY steps at a time."""

    def __init__(self, tracker: Tracker, bar):
        self.tracker, self.bar, self.pending, self.first_step = tracker, bar, [], 1

    def add(self, step: int, loss: torch.Tensor) -> None:
        if not self.pending:
            self.first_step = step
        self.pending.append(loss.detach())
        if len(self.pending) >= LOG_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        values = torch.stack(self.pending).float().cpu().tolist()  # the one host sync per interval
        self.pending = []
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise TrainingError(f"loss became {v} at step {self.first_step + i}; "
                                    "try a lower learning rate")
            self.tracker.log_metrics({TRAIN_LOSS_STEP: v}, step=self.first_step + i)
        self.bar.set_postfix(loss=f"{values[-1]:.4f}", refresh=False)


def train_one_epoch(model, optimizer, scheduler, scaler, criterion, data: ImageData, train: Split,
                    normalize: Normalizer, config: RunConfig, device, gen, step: int, step_log: _StepLog):
    """One pass over the training split; returns (global step, mean loss, accuracy)."""
    model.train()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for x, y in batches(train, config.batch_size, gen):
        x = augment(x.float().div_(255), config.augment, data.flip, gen)
        x = normalize(x).contiguous(memory_format=_memory_format(device))
        with autocast(device):
            logits = model(x)
            loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        total_loss += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        step_log.add(step, loss)
        step_log.bar.update(1)
    step_log.flush()
    n = len(train)
    return step, total_loss.item() / n, correct.item() / n


def fit(config: RunConfig, data: ImageData, tracker: Tracker | None = None, progress: bool = True) -> TrainResult:
    """Train `config.model` on `data`, reporting metrics to `tracker`; score the best model on test."""
    tracker = tracker or NullTracker()
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = models.build(config.model, data.channels, data.image_size, len(data.classes), config.weights)
    model = model.to(device, memory_format=_memory_format(device))
    on_device = {k: Split(s.images.to(device), s.labels.to(device)) for k, s in
                 (("train", data.train), ("val", data.val), ("test", data.test))}
    normalize = Normalizer(data.mean, data.std, device)
    gen = torch.Generator(device=device).manual_seed(config.seed)

    optimizer = make_optimizer(model, config, device)
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config.schedule, s, total))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    best_loss, best_epoch, best_state, history, step = math.inf, 0, None, [], 0
    with tqdm(total=total, desc=f"{config.model} on {config.dataset}", unit="step", disable=not progress,
              dynamic_ncols=True, mininterval=0.5) as bar:
        step_log = _StepLog(tracker, bar)
        for epoch in range(1, config.epochs + 1):
            bar.set_description(f"epoch {epoch}/{config.epochs}")
            lr = optimizer.param_groups[0]["lr"]
            start = time.perf_counter()
            step, train_loss, train_acc = train_one_epoch(
                model, optimizer, scheduler, scaler, criterion, data, on_device["train"], normalize,
                config, device, gen, step, step_log)
            seconds = time.perf_counter() - start
            val = evaluate(model, on_device["val"], normalize, device)
            row = {TRAIN_LOSS: train_loss, TRAIN_ACCURACY: train_acc, VAL_LOSS: val.loss,
                   VAL_ACCURACY: val.accuracy, LR: lr, EPOCH_SECONDS: seconds,
                   THROUGHPUT: len(data.train) / seconds}
            tracker.log_metrics(row, step=epoch)
            tracker.flush()
            history.append(row)
            if progress:
                bar.write(f"epoch {epoch}: train_loss {train_loss:.4f}  val_loss {val.loss:.4f}  "
                          f"val_accuracy {val.accuracy:.4f}  {row[THROUGHPUT]:,.0f} img/s")
            if val.loss < best_loss:
                best_loss, best_epoch = val.loss, epoch
                if config.patience:
                    best_state = copy.deepcopy(model.state_dict())
            elif config.patience and epoch - best_epoch >= config.patience:
                bar.write(f"early stop: val_loss has not improved for {config.patience} epochs")
                break
    if best_state is not None:  # early stopping keeps the best epoch's weights
        model.load_state_dict(best_state)
    test = evaluate(model, on_device["test"], normalize, device)
    return TrainResult(model.eval(), test, epochs_run=len(history), best_epoch=best_epoch, history=history)


def test_metrics(test: Evaluation, classes: list[str]) -> tuple[dict[str, float], np.ndarray, dict]:
    """Final metric values, the confusion matrix and per-class scores of a test evaluation."""
    matrix = metrics.confusion_matrix(test.labels, test.predictions, len(classes))
    per_class = metrics.per_class_metrics(matrix, classes)
    macro = metrics.macro_scores(per_class)
    values = {TEST_LOSS: test.loss, TEST_ACCURACY: test.accuracy, TEST_PRECISION: macro["precision"],
              TEST_RECALL: macro["recall"], TEST_F1: macro["f1"]}
    return values, matrix, per_class
