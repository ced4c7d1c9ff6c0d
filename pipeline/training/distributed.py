"""Several training processes under torchrun: ranks, the process group, shards and sums across ranks.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE. Without a process group every
function here is the one-process answer (rank 0 of 1, sums unchanged), so the engine calls them
unconditionally, the way the trainer calls its tracker.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.distributed as dist


def launched() -> bool:
    """True in a process torchrun started with more than one process in all."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0: the one process that talks to MLflow and prints."""
    return rank() == 0


@contextmanager
def process_group(device: torch.device):
    """Join torchrun's process group for the body: nccl between GPUs, gloo on the CPU."""
    if not launched() or dist.is_initialized():
        yield
        return
    if device.type == "cuda":  # before any collective: NCCL otherwise puts every rank on GPU 0
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None)
    try:
        yield
        dist.barrier()  # leave together: a rank tearing gloo down while another still runs aborted it (1 in 3 here)
    finally:
        dist.destroy_process_group()


@contextmanager
def main_first():
    """Rank 0 runs the body before the others (a dataset download happens once, not N times at once)."""
    if world_size() > 1 and not is_main():
        dist.barrier()
    yield
    if world_size() > 1 and is_main():
        dist.barrier()


def share(text: str | None) -> str:
    """Rank 0's `text` (a run id) on every rank."""
    if world_size() == 1:
        return text
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over all ranks, in place (the same tensor back)."""
    if world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def shard(order: torch.Tensor, pad: bool = True) -> torch.Tensor:
    """This process's share of `order` (all of it for one process)."""
    return deal(order, rank(), world_size(), pad)


def deal(order: torch.Tensor, rank: int, world: int, pad: bool = True) -> torch.Tensor:
    """Every world-th item of `order` from position `rank`, as DistributedSampler deals them.

    With `pad`, `order` first wraps around to a multiple of `world`, so that every rank runs the
    same number of steps (a rank with one step more would wait forever for the others).
    """
    if world == 1:
        return order
    if pad and len(order) % world:
        order = torch.cat([order, order.repeat(world)[:world - len(order) % world]])
    return order[rank::world]
