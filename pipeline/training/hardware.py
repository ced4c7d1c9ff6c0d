"""How the training device is used: CPU threads, mixed precision, memory layout, torch.compile.

One function per decision, each chosen by the device, so the engine reads the same on a GPU and on
the CPU (and tests can run the GPU recipe on the CPU by swapping `amp_dtype` and `memory_format`).
"""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import torch
from torch import nn

_configured: set[str] = set()


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:  # cgroup v2 "max 100000" (no quota) or "200000 100000" (2 CPUs)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def cpu_threads() -> int:
    """Intra-op threads: the available cores shared among the processes torchrun started on this machine.

    torch's default counts every core in the affinity mask, ignoring a container's CPU quota, and
    each of N local ranks would start that many: more OpenMP threads than cores wait on each other
    at every op (measured on a busy 2-core box: 2 spinning threads 4-10x slower than 1; see
    OMP_WAIT_POLICY in __main__.py). OMP_NUM_THREADS, when set, wins (torchrun sets 1).
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    return max(1, available_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def configure(device: torch.device) -> None:
    """Once per process: thread counts on the CPU; cuDNN autotuning and TF32 matmuls on CUDA."""
    if device.type in _configured:
        return
    _configured.add(device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True      # input shapes repeat: pick the fastest conv once
        torch.set_float32_matmul_precision("high")  # TF32 for what autocast leaves in fp32
        return
    torch.set_num_threads(cpu_threads())
    try:  # eager training never runs ops side by side; one inter-op thread is all it uses
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already fixed by earlier parallel work in this process
        pass


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16 on CUDA (fp16, with a grad scaler, where bf16 is missing); fp32 on the CPU.

    The CPU here has no AVX512-BF16/AMX: bf16 there is emulated and slower than fp32.
    """
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none (a disabled scaler)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def memory_format(device: torch.device) -> torch.memory_format:
    """NHWC feeds tensor cores on CUDA; the CPU keeps NCHW (no reliable gain measured for these nets)."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def fused_optimizer(device: torch.device) -> dict:
    """One fused kernel for the whole optimizer step instead of a few per parameter.

    On the CPU too: an AdamW step of the cnn takes 0.7 ms fused, 2.5 ms in torch's default loop.
    """
    return {"fused": True} if device.type in ("cuda", "cpu") else {}


def compile_model(model: nn.Module) -> nn.Module:
    """torch.compile: fuses the elementwise ops (batch norm, ReLU, ...) around each conv and matmul.

    Static shapes: the full batch and the epoch's last, smaller one get a graph each, both built
    by `warm_up`. No CUDA graphs ("reduce-overhead") or autotuning ("max-autotune"): both multiply
    the warm-up, which on this 2-core CPU is already about a minute per graph.
    """
    return torch.compile(model, dynamic=False)


def warm_up(model: nn.Module, net: nn.Module, criterion, sizes: list[int], shape: tuple, classes: int,
            device: torch.device, dtype, layout) -> float:
    """Compile before the clock starts: a forward and backward pass per batch size an epoch will see.

    Returns the seconds it took; the weights, batch-norm statistics, gradients and random state
    are left as they were, so a compiled run trains like an eager one.
    """
    state = copy.deepcopy(net.state_dict())
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model.train()
        for n in sizes:
            x = torch.zeros(n, *shape, device=device).contiguous(memory_format=layout)
            with autocast(device, dtype):
                loss = criterion(model(x), torch.arange(n, device=device) % classes)
            loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    net.zero_grad(set_to_none=True)
    net.load_state_dict(state)
    return seconds
