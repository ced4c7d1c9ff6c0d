"""A run's training state (pipeline/training/state.py) on its own: a copy that training cannot change, every
part restored by `load`, and `unfit` naming what does not fit. Written to kill the mutants that the resume
tests let live (`make mutation`).
Run: .venv/bin/python -m pytest tests/test_state.py -q (tiny CPU tensors: seconds, most of it importing torch).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.training.state import CHECKPOINT_VERSION, Parts, training_state, unfit


def _parts(seed: int = 0, scale: float = 1024.0, device: str = "cpu") -> Parts:
    torch.manual_seed(seed)
    net = nn.Linear(3, 2).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    scaler = torch.amp.GradScaler(device, init_scale=scale)  # enabled, so that its state is not empty
    gen = torch.Generator(device).manual_seed(seed + 1)
    return Parts(net, optimizer, scheduler, scaler, gen, torch.device(device))


def _train_a_step(parts: Parts) -> None:
    """Draws from both random streams and uses the momentum and learning rate, as an epoch does."""
    x = torch.randn(4, 3, generator=parts.gen, device=parts.device) + torch.rand(1, device=parts.device)
    parts.optimizer.zero_grad()
    parts.net(x).sum().backward()
    parts.optimizer.step()
    parts.scheduler.step()


def test_the_state_is_a_copy_that_training_on_does_not_change():
    parts = _parts()
    _train_a_step(parts)  # momentum buffers exist
    state = training_state(parts, epoch=1, steps_per_epoch=3)
    weights = {k: v.clone() for k, v in state["model"].items()}
    momentum = [s["momentum_buffer"].clone() for s in state["optimizer"]["state"].values()]
    _train_a_step(parts)
    assert all(torch.equal(state["model"][k], v) for k, v in weights.items())
    assert all(torch.equal(s["momentum_buffer"], m) for s, m in zip(state["optimizer"]["state"].values(), momentum))
    assert state["version"] == CHECKPOINT_VERSION and state["epoch"] == 1 and state["steps_per_epoch"] == 3


def test_load_restores_every_part_so_training_goes_on_exactly():
    parts = _parts()
    _train_a_step(parts)
    state = training_state(parts, epoch=1, steps_per_epoch=3)
    _train_a_step(parts)  # the uninterrupted run goes on
    rng_after = torch.get_rng_state()

    resumed = _parts(seed=5, scale=2.0)
    assert resumed.load(state) is True  # rng=True by default
    assert resumed.scaler.get_scale() == 1024.0 and resumed.scheduler.last_epoch == 1
    _train_a_step(resumed)
    assert all(torch.equal(a, b) for a, b in zip(parts.net.parameters(), resumed.net.parameters()))
    assert torch.equal(torch.get_rng_state(), rng_after)
    assert torch.equal(resumed.gen.get_state(), parts.gen.get_state())


def test_load_without_rng_leaves_the_random_streams_alone():
    state = training_state(_parts(), epoch=1, steps_per_epoch=3)
    resumed = _parts(seed=5)
    torch.rand(7)
    before, gen_before = torch.get_rng_state(), resumed.gen.get_state()
    assert resumed.load(state, rng=False) is True  # nothing to say: no stream was asked for
    assert torch.equal(torch.get_rng_state(), before) and torch.equal(resumed.gen.get_state(), gen_before)
    assert all(torch.equal(a, b) for a, b in zip(resumed.net.state_dict().values(), state["model"].values()))


def test_unfit_names_the_version_and_steps_that_do_not_fit():
    fits = {"version": CHECKPOINT_VERSION, "steps_per_epoch": 8, "epoch": 3}
    assert unfit(fits, per_epoch=8, epochs=3) is None
    other_data = unfit({**fits, "steps_per_epoch": 7}, per_epoch=8, epochs=3)
    assert other_data.startswith(f"the checkpoint does not fit this run (version {CHECKPOINT_VERSION}, "
                                 "7 steps per epoch, not 8); resume it with the same data and processes, or start")
    assert "(version 0, 8 steps per epoch, not 8)" in unfit({**fits, "version": 0}, per_epoch=8, epochs=3)


def test_unfit_refuses_a_checkpoint_past_the_runs_epochs():
    state = {"version": CHECKPOINT_VERSION, "steps_per_epoch": 8, "epoch": 5}
    assert unfit(state, per_epoch=8, epochs=3) == "the checkpoint is of epoch 5, past the run's 3 epochs"


def test_a_gpu_checkpoint_resumes_on_a_cpu_worker():
    """A run checkpointed on a GPU node may be resumed on a CPU-only one (a Ray cluster mixes them). The device
    stream is kept in the file but not used; the global CPU stream comes back as saved; the augmentation stream,
    a CUDA generator's 16-byte state there, cannot go into a CPU generator, so it seeds it, the same way on every
    resume."""
    parts = _parts()
    state = training_state(parts, epoch=1, steps_per_epoch=3)
    state["rng"]["cuda"] = torch.zeros(16, dtype=torch.uint8)  # what a GPU run adds beside the CPU streams
    state["rng"]["augment"] = torch.arange(16, dtype=torch.uint8)  # a CUDA generator's state: seed and offset
    expected = torch.rand(3)
    draws = []
    for seed in (5, 6):
        resumed = _parts(seed=seed)
        assert resumed.load(state) is False  # not the same stream: the engine says so in its resume line
        assert torch.equal(torch.rand(3), expected)
        draws.append(torch.rand(4, generator=resumed.gen))
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], torch.rand(4, generator=_parts(seed=5).gen))
    assert "cuda" not in training_state(resumed, epoch=1, steps_per_epoch=3)["rng"]
    assert resumed.load(training_state(parts, epoch=1, steps_per_epoch=3)) is True  # a CPU checkpoint: exact


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_device_stream_is_saved_and_restored():
    """Dropout on the GPU draws from the device's own generator, which torch.get_rng_state does not cover."""
    parts = _parts(device="cuda")
    _train_a_step(parts)
    state = training_state(parts, epoch=1, steps_per_epoch=3)
    assert state["rng"]["cuda"].device.type == "cpu" and state["model"]["weight"].device.type == "cpu"
    expected = torch.rand(5, device="cuda")
    torch.rand(9, device="cuda")
    resumed = _parts(seed=5, device="cuda")
    resumed.load(state, rng=False)  # leaves the device stream where it is
    assert not torch.equal(torch.rand(5, device="cuda"), expected)
    assert resumed.load(state) is True
    assert torch.equal(torch.rand(5, device="cuda"), expected)
    cpu_checkpoint = training_state(_parts(), epoch=1, steps_per_epoch=3)
    assert resumed.load(cpu_checkpoint) is False  # a CPU run's: no device stream, a CPU generator's state
    assert all(p.is_cuda for p in resumed.net.parameters())
    other = _parts(seed=6, device="cuda")
    assert other.load(cpu_checkpoint) is False
    assert torch.equal(torch.rand(4, generator=other.gen, device="cuda"),  # seeded the same on every resume
                       torch.rand(4, generator=resumed.gen, device="cuda"))
