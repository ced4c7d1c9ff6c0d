"""A run's training state, for checkpoints: plain data and tensors only, so torch.load(weights_only=True) reads it back.

The engine snapshots it at every epoch end (`training_state`) and loads it to resume (`Parts.load`);
runs/checkpoints.py stores it as the run's checkpoints/a.pt or b.pt, in turn.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Parts:
    """What training changes as it goes, besides the counters: weights, optimizer, schedule, RNG streams."""
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    gen: torch.Generator   # augmentation, on the training device
    device: torch.device

    def state(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "augment": self.gen.get_state()}
        if self.device.type == "cuda":  # dropout on the GPU draws from the device's default generator
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng}

    def load(self, state: dict, rng: bool = True) -> bool:
        """Restore `state` (its random streams too unless `rng` is False); False only when its augmentation
        stream was drawn on another kind of device and so could not be restored."""
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if not rng:
            return True
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        return set_augment_state(self.gen, state["rng"]["augment"])


def set_augment_state(gen: torch.Generator, saved: torch.Tensor) -> bool:
    """Continue the augmentation stream `saved` in `gen`; False when it was drawn on another kind of device.

    CPU and CUDA generators keep states of different sizes (5,056 and 16 bytes), so a run moved between them
    (resumed on a mixed Ray cluster) goes on with `gen` seeded from the saved state: the same on every such
    resume, but not the draws the first device would have made.
    """
    if saved.numel() == gen.get_state().numel():
        gen.set_state(saved)
        return True
    gen.manual_seed(zlib.crc32(saved.numpy().tobytes()))
    return False


CHECKPOINT_VERSION = 1


def training_state(parts: Parts, **counters) -> dict:
    """A copy on the CPU of everything needed to continue exactly: the caller may save it while training goes on."""
    return _to_cpu({"version": CHECKPOINT_VERSION, **counters, **parts.state()})


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def unfit(state: dict, per_epoch: int, epochs: int) -> str | None:
    """Why `state` cannot continue a run of `epochs` epochs of `per_epoch` steps, or None when it can."""
    if state.get("version") != CHECKPOINT_VERSION or state.get("steps_per_epoch") != per_epoch:
        return (f"the checkpoint does not fit this run (version {state.get('version')}, "
                f"{state.get('steps_per_epoch')} steps per epoch, not {per_epoch}); "
                "resume it with the same data and processes, or start a new run")
    if state["epoch"] > epochs:
        return f"the checkpoint is of epoch {state['epoch']}, past the run's {epochs} epochs"
    return None
