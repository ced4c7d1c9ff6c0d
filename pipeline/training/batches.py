"""Training and evaluation batches, normalized and augmented on the training device.

In memory (the usual case) a split lives on the device as uint8. Each epoch's order is cut into
chunks of up to CHUNK_BYTES that are augmented and normalized in a few large kernels, then sliced
into batches, so a step only indexes (airbench does the same per epoch). A folder kept on disk
(`FileImages`) goes through a DataLoader instead: workers decode, batches land in pinned memory and
are copied without blocking, then get the same augmentation on the device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from pipeline.training import hardware
from pipeline.training.data import DataError, Split

SHIFT = 0.125           # random shift, as a fraction of the image side (at least 1 px)
ROTATE_DEG, SCALE = 10.0, 0.1  # strong augmentation: rotation in degrees, relative scale change
EVAL_BATCH = 1024       # evaluation needs no gradients: big batches
CHUNK_BYTES = 256 << 20  # float32 images augmented at once: a whole MNIST epoch, ~20 batches of 224 px
LOADER_WORKERS = 8      # decoding processes for folders on disk, at most one per available core


class Normalizer:
    """Float pixels in [0, 255] -> [0, 1] -> standardized with the train mean/std, in the device's layout.

    The same arithmetic as the logged preprocessing recipe, so predictions match evaluation exactly.
    """

    def __init__(self, mean: list[float], std: list[float], device: torch.device,
                 layout: torch.memory_format = torch.contiguous_format):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.layout = layout

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ((x / 255 - self.mean) / self.std).contiguous(memory_format=self.layout)


def augment(x: torch.Tensor, mode: str, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random shift (+ flip when asked, + rotation and scale for 'strong') of a float batch in one grid_sample."""
    if mode == "none":
        return x
    n, _, h, w = x.shape
    rand = lambda *shape: torch.rand(*shape, generator=gen, device=x.device)  # noqa: E731
    # sub-pixel shifts of up to SHIFT of the side (at least 1 px), resampled bilinearly: the slight
    # blur of resampling teaches the model what a resized upload looks like
    pixels = torch.tensor([w, h], device=x.device)
    reach = torch.clamp(SHIFT * pixels, min=1.0)
    shift = (rand(n, 2) * 2 - 1) * reach * 2 / pixels
    angle, scale = torch.zeros(n, device=x.device), torch.ones(n, device=x.device)
    if mode == "strong":
        angle = (rand(n) * 2 - 1) * math.radians(ROTATE_DEG)
        scale = 1 + (rand(n) * 2 - 1) * SCALE
    mirror = torch.where(rand(n) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=x.device)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * mirror, -sin, shift[:, 0]], 1),
                         torch.stack([sin * mirror, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_device(split: Split, device: torch.device) -> Split:
    """An in-memory split moved to `device` once; a split on disk stays there."""
    return Split(split.images.to(device), split.labels.to(device)) if split.in_memory else split


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's shuffle: the same on every rank (each then takes its shard)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def train_batches(split: Split, order: torch.Tensor, batch_size: int, mode: str, flip: bool,
                  gen: torch.Generator, normalize: Normalizer):
    """(images, labels) batches in `order`: augmented, normalized, on the generator's device."""
    device = gen.device
    if not split.in_memory:
        for x, y in _loader(split, order, batch_size, device):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            yield normalize(augment(x.float(), mode, flip, gen)), y
        return
    order = order.to(device, non_blocking=True)
    per_image = 4 * math.prod(split.images.shape[1:])
    chunk = max(1, CHUNK_BYTES // per_image // batch_size) * batch_size
    for start in range(0, len(order), chunk):
        idx = order[start:start + chunk]
        x, y = normalize(augment(split.images[idx].float(), mode, flip, gen)), split.labels[idx]
        for i in range(0, len(idx), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]


def eval_batches(split: Split, indices: torch.Tensor | None, device: torch.device, normalize: Normalizer):
    """(images, labels) of `indices` (all of the split when None) in big batches, normalized on the device."""
    if not split.in_memory:
        for x, y in _loader(split, torch.arange(len(split)) if indices is None else indices, EVAL_BATCH, device):
            yield normalize(x.to(device, non_blocking=True).float()), y.to(device, non_blocking=True)
        return
    n = len(split) if indices is None else len(indices)
    for i in range(0, n, EVAL_BATCH):
        idx = slice(i, i + EVAL_BATCH) if indices is None else indices[i:i + EVAL_BATCH].to(device)
        yield normalize(split.images[idx].float()), split.labels[idx]


# ---------------------------------------------------------------------------------------------
# folders on disk

class _Files(Dataset):
    def __init__(self, split: Split):
        self.images, self.labels = split.images, split.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.images[i]), self.labels[i]


def _loader(split: Split, indices: torch.Tensor, batch_size: int, device: torch.device):
    """uint8 batches of the files at `indices`, decoded by worker processes into pinned memory."""
    workers = min(LOADER_WORKERS, hardware.available_cores())
    loader = DataLoader(_Files(split), batch_size=batch_size, sampler=indices.tolist(), num_workers=workers,
                        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None)
    try:
        yield from loader
    except DataError as e:  # from a worker: keep the message, drop the worker's traceback around it
        raise DataError(str(e).strip().splitlines()[-1].split("DataError: ", 1)[-1]) from None
