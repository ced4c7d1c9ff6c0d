"""Training and evaluation loops. Knows nothing about MLflow: it reports through a `Tracker`.

Speed comes from where the data sits: the whole uint8 dataset lives on the training device and is
shuffled, augmented and normalized there (batches.py); losses stay on the device and are read back
once per logging interval, so a GPU never waits on the host inside an epoch. Under torchrun each
process trains on its shard of every epoch with DistributedDataParallel; sums are added up across
processes, so every rank reports the same numbers and only rank 0's tracker needs to write them.
"""
from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline import names
from pipeline.config import RunConfig
from pipeline.errors import ServiceError
from pipeline.training import distributed, hardware, models
from pipeline.training.batches import Normalizer, epoch_order, to_device, train_batches
from pipeline.training.data import ImageData
from pipeline.training.evaluation import Evaluation, evaluate, skipped, validate
from pipeline.training.state import Parts, set_augment_state, training_state, unfit

LOG_EVERY = 50          # optimizer steps between reads of the step losses (one host sync each)
SGD_MOMENTUM = 0.9      # with Nesterov: the torchvision reference recipe's, good from digits to ImageNet
ONECYCLE_WARMUP = 0.25  # share of the steps spent warming up: short runs need a real share, not 5 %
ONECYCLE_START = 0.1    # the warm-up starts at this fraction of the peak learning rate


class TrainingError(ServiceError):
    """Training went wrong in a way the user can act on (diverged loss, out of memory)."""

    retriable = False  # another attempt from the checkpoint would fail the same way


class Tracker(Protocol):
    def log_metrics(self, values: dict[str, float], step: int) -> None: ...
    def flush(self) -> None: ...


class NullTracker:
    """Same signatures as the MLflow tracker, does nothing: for tests, benches and ranks other than 0."""

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        pass

    def flush(self) -> None:
        pass


@dataclass
class TrainResult:
    model: nn.Module
    test: Evaluation
    epochs_run: int
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    val: Evaluation | None = None  # the validation split scored by the final model (rank 0): fits a temperature


# ---------------------------------------------------------------------------------------------
# device

def pick_device(name: str) -> torch.device:
    """The training device; under torchrun each process on a machine takes its own GPU (LOCAL_RANK)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device cuda was asked for, but no CUDA GPU is available; use --device auto or cpu")
    if name not in ("auto", "cuda") or not torch.cuda.is_available():
        return torch.device("cpu")
    count, local = torch.cuda.device_count(), distributed.local_rank()
    if local >= count:
        raise TrainingError(f"torchrun started more processes on this machine than it has GPUs ({count}); "
                            f"use --nproc-per-node {count}, or --device cpu")
    return torch.device("cuda", local)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def steps_per_epoch(images: int, batch_size: int, world: int = 1) -> int:
    """Optimizer steps per epoch: each of `world` processes takes an equal shard and batch_size / world."""
    return math.ceil(math.ceil(images / world) / math.ceil(batch_size / world))


def batch_sizes(images: int, batch: int, world: int = 1) -> list[int]:
    """The batch sizes one process's epoch feeds (full ones, then its shard's last, smaller one): what
    --compile builds a graph for before the clock starts."""
    shard = math.ceil(images / world)
    return [min(batch, shard)] + ([shard % batch] if shard > batch and shard % batch else [])


# ---------------------------------------------------------------------------------------------
# optimisation

def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based) of `total`."""
    t = step / max(total, 1)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "onecycle":  # linear warm-up, then cosine down to zero
        warm, start = ONECYCLE_WARMUP, ONECYCLE_START
        return start + (1 - start) * t / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / (1 - warm)))
    if schedule == "step":  # x0.1 at 50 % and again at 75 % of training
        return 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01
    return 1.0


def make_optimizer(model: nn.Module, config: RunConfig, device: torch.device) -> torch.optim.Optimizer:
    fused = hardware.fused_optimizer(device)
    params, lr, wd = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, nesterov=True, weight_decay=wd, **fused)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **fused)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **fused)


# ---------------------------------------------------------------------------------------------
# loops

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
        losses = distributed.all_sum(torch.stack(self.pending).float()) / distributed.world_size()
        values = losses.cpu().tolist()  # the one host sync per interval
        self.pending = []
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise TrainingError(f"loss became {v} at step {self.first_step + i}; "
                                    "try a lower learning rate")
            self.tracker.log_metrics({names.TRAIN_LOSS_STEP: v}, step=self.first_step + i)
        self.bar.set_postfix(loss=f"{values[-1]:.4f}", refresh=False)


def train_one_epoch(model, optimizer, scheduler, scaler, criterion, batches, device, dtype,
                    step: int, step_log: _StepLog, start: dict | None = None,
                    midway: Callable[..., None] | None = None) -> tuple[int, float, float]:
    """One pass over this rank's batches; returns (global step, mean loss, accuracy) over all ranks.

    `start` continues an epoch cut off midway (its running sums: loss, correct, seen); `midway` is
    called after every step with the global step and those sums, to checkpoint within the epoch.
    """
    model.train()
    start = start or {}
    total_loss = start.get("loss", torch.zeros(())).to(device).clone()  # a copy: the resume state stays as it was
    correct = start.get("correct", torch.zeros((), dtype=torch.long)).to(device).clone()
    seen = int(start.get("seen", 0))
    for x, y in batches:
        with hardware.autocast(device, dtype):
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
        seen += len(y)
        step_log.add(step, loss)
        step_log.bar.update(1)
        if midway is not None:
            midway(step, total_loss, correct, seen)
    step_log.flush()
    sums = torch.stack([total_loss.double(), correct.double(), torch.tensor(seen, device=device).double()])
    loss, right, n = distributed.all_sum(sums).tolist()
    return step, loss / n, right / n


def fit(config: RunConfig, data: ImageData, tracker: Tracker | None = None, progress: bool = True,
        resume: dict | None = None, checkpoint: Callable[[dict], None] | None = None,
        checkpoint_every: float | None = None, should_stop: Callable[[int], bool] | None = None,
        model: nn.Module | None = None) -> TrainResult:
    """Train `config.model` on `data`, reporting metrics to `tracker`; score the best model on test.

    `checkpoint` receives a copy of the training state (see `training_state`) after every epoch and,
    with one process, also within an epoch once `checkpoint_every` seconds have passed since the last
    one (long epochs lose minutes, not hours). `resume` is such a state: training continues after its
    epoch, or from the middle of one, exactly as it would have. `should_stop(epoch)`, asked after each
    epoch but the last (a study's pruner), ends training there when it answers True. `model`, when given,
    is trained instead of a fresh `config.model` (fine-tuning a pruned network: its shapes are its own).
    """
    tracker = tracker or NullTracker()
    device = pick_device(config.device)
    hardware.configure(device)
    rank, world = distributed.rank(), distributed.world_size()
    dtype, layout = hardware.amp_dtype(device), hardware.memory_format(device)
    torch.manual_seed(config.seed)
    net = model if model is not None else models.build(config.model, data.channels, data.image_size,
                                                       len(data.classes), config.weights)
    net = net.to(device, memory_format=layout)
    torch.manual_seed(config.seed + 1000 * rank)  # dropout masks differ between ranks
    model = net if world == 1 else nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None)
    model = hardware.compile_model(model) if config.compile else model
    train, val, test = (to_device(s, device) for s in (data.train, data.val, data.test))
    normalize = Normalizer(data.mean, data.std, device, layout)
    gen = torch.Generator(device=device).manual_seed(config.seed + 7919 * rank)

    optimizer = make_optimizer(net, config, device)
    batch = math.ceil(config.batch_size / world)  # images per step in all: batch_size, as with one process
    per_epoch = steps_per_epoch(len(train), config.batch_size, world)
    total = per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config.schedule, s, total))
    scaler = hardware.grad_scaler(device, dtype)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    if config.compile:
        seconds = hardware.warm_up(model, net, criterion, batch_sizes(len(train), batch, world),
                                   tuple(data.train.images.shape[1:]), len(data.classes), device, dtype, layout)
        tracker.log_metrics({names.COMPILE_SECONDS: seconds}, step=0)

    parts = Parts(net, optimizer, scheduler, scaler, gen, device)
    best_loss, best_epoch, best_state, history, step, first = math.inf, 0, None, [], 0, 1
    partial = None  # an epoch cut off midway: where it stopped, its augmentation stream and running sums
    same_stream = True  # False: the checkpoint's augmentation stream was drawn on another kind of device
    if resume is not None:  # last: the set-up above drew from the generators too
        if reason := unfit(resume, per_epoch, config.epochs):
            raise TrainingError(reason)
        same_stream = parts.load(resume, rng=rank == 0)  # other ranks keep fresh streams: statistically the same
        best_loss, best_epoch, best_state = resume["best_loss"], resume["best_epoch"], resume["best_model"]
        history, step = list(resume["history"]), resume["step"]
        first = config.epochs + 1 if resume["stopped"] else resume["epoch"] + 1
        partial = resume.get("partial")
    saved = time.monotonic()

    def snapshot(**counters) -> None:
        """Hand the training state to `checkpoint` (a CPU copy: it may be saved while training goes on)."""
        nonlocal saved
        checkpoint(training_state(parts, best_loss=best_loss, best_epoch=best_epoch, best_model=best_state,
                                  history=history, steps_per_epoch=per_epoch, **counters))
        saved = time.monotonic()

    with tqdm(total=total, initial=step, desc=f"{config.model} on {config.dataset}", unit="step",
              disable=not progress or rank != 0, dynamic_ncols=True, mininterval=0.5) as bar:
        step_log = _StepLog(tracker, bar)
        if resume is not None and progress and rank == 0:
            where = f"within epoch {partial['epoch']}" if partial else f"of epoch {resume['epoch']}"
            bar.write(f"resumed from the checkpoint {where} (step {step})" + ("" if same_stream else
                      f"; it was written on another kind of device than {device.type}, so augmentation goes on "
                      "from a stream seeded by the saved one"))
        for epoch in range(first, config.epochs + 1):
            bar.set_description(f"epoch {epoch}/{config.epochs}")
            if config.freeze_epochs:  # fine-tuning: the new classifier first, then the whole network
                models.freeze_backbone(net, epoch <= config.freeze_epochs)
            lr = optimizer.param_groups[0]["lr"]
            start, before, skip, sums = time.perf_counter(), 0.0, 0, None
            if partial is not None and partial["epoch"] == epoch:  # go on from where the epoch was cut off
                lr, before, skip = partial["lr"], partial["seconds"], partial["steps"]
                if rank == 0:  # the epoch's augmentation draws replay from its start; its sums go on
                    set_augment_state(gen, partial["augment"])
                    sums = partial["sums"]
            augment_state, epoch_first_step = gen.get_state(), step - skip
            order = distributed.shard(epoch_order(len(train), config.seed, epoch))
            batches = itertools.islice(train_batches(train, order, batch, config.augment, data.flip, gen, normalize),
                                       skip, None)

            def midway(at: int, loss: torch.Tensor, correct: torch.Tensor, seen: int) -> None:
                """Checkpoint within the epoch once `checkpoint_every` seconds have passed since the last one."""
                if time.monotonic() - saved < checkpoint_every:
                    return
                step_log.flush()  # every step the state holds is stored first: a resumed attempt repeats none
                tracker.flush()
                snapshot(epoch=epoch - 1, step=at, stopped=False,
                         partial={"epoch": epoch, "steps": at - epoch_first_step, "augment": augment_state, "lr": lr,
                                  "seconds": before + time.perf_counter() - start,
                                  "sums": {"loss": loss, "correct": correct, "seen": seen}})

            within = checkpoint is not None and checkpoint_every is not None and world == 1
            step, train_loss, train_acc = train_one_epoch(model, optimizer, scheduler, scaler, criterion, batches,
                                                          device, dtype, step, step_log, sums,
                                                          midway if within else None)
            seconds = before + time.perf_counter() - start
            val_loss, val_acc = validate(net, val, normalize, device)
            row = {names.TRAIN_LOSS: train_loss, names.TRAIN_ACCURACY: train_acc, names.VAL_LOSS: val_loss,
                   names.VAL_ACCURACY: val_acc, names.LR: lr, names.EPOCH_SECONDS: seconds,
                   names.THROUGHPUT: len(train) / seconds}
            tracker.log_metrics(row, step=epoch)
            tracker.flush()
            history.append(row)
            if progress and rank == 0:
                bar.write(f"epoch {epoch}: train_loss {train_loss:.4f}  val_loss {val_loss:.4f}  "
                          f"val_accuracy {val_acc:.4f}  {row[names.THROUGHPUT]:,.0f} img/s")
            stop = False
            if val_loss < best_loss:
                best_loss, best_epoch = val_loss, epoch
                if config.patience:
                    best_state = copy.deepcopy(net.state_dict())
            elif config.patience and epoch - best_epoch >= config.patience:
                stop = True
            pruned = not stop and epoch < config.epochs and should_stop is not None and should_stop(epoch)
            stop = stop or pruned
            if checkpoint is not None and rank == 0:
                snapshot(epoch=epoch, step=step, stopped=stop or epoch == config.epochs)
            if stop:
                if progress and rank == 0:
                    bar.write(f"pruned: the study's pruner stopped this trial after epoch {epoch}" if pruned else
                              f"early stop: val_loss has not improved for {config.patience} epochs")
                break
    if best_state is not None:  # early stopping keeps the best epoch's weights
        net.load_state_dict(best_state)
    # only rank 0 reports the test split; the others skip the work
    test_eval = evaluate(net, test, normalize, device) if rank == 0 else skipped()
    val_eval = evaluate(net, val, normalize, device) if rank == 0 and len(val) else None
    return TrainResult(net.eval(), test_eval, epochs_run=len(history), best_epoch=best_epoch, history=history,
                       val=val_eval)
