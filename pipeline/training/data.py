"""Dataset registry: every dataset becomes uint8 tensors (N, C, H, W) split into train/val/test.

Small datasets live whole in memory (and on the training device, see engine.py) so that no image
is decoded twice. An image folder over the memory budget (RUNBOARD_MEMORY_BUDGET_MB) stays on disk
as `FileImages`, decoded per item by DataLoader workers. The test split never depends on the seed,
so runs with different seeds are scored on the same images; the validation split does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline import settings
from pipeline.serving import images
from pipeline.config import IMAGEFOLDER_SIZE, RunConfig
from pipeline.errors import UserError
from pipeline.names import IMAGE_SUFFIXES

TEST_SPLIT_SEED = 20_240_601  # fixed: the held-out test split is the same for every run
TEST_FRACTION = 0.2           # for datasets without an official test split
STATS_SAMPLE = 512            # images decoded to estimate mean/std of a folder that stays on disk
CHANNELS_SAMPLE = 256         # images looked at to decide grayscale or RGB for such a folder


class DataError(UserError):
    """A dataset that cannot be loaded; the message says what to do."""


class FileImages:
    """Image files decoded one at a time to uint8 (C, H, W): a folder too big to hold in memory."""

    def __init__(self, files: list[Path], channels: int, size: int):
        self.files, self.channels, self.size = files, channels, size
        self._stats: tuple[list[float], list[float]] | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), self.channels, self.size, self.size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        try:
            return images.to_array(images.open_image(self.files[i]), self.channels, (self.size, self.size))
        except images.ImageError as e:  # found only now: the folder was never decoded as a whole
            raise DataError(f"image folder: unreadable file: {e}") from None

    def subset(self, idx: torch.Tensor) -> "FileImages":
        return FileImages([self.files[i] for i in idx.tolist()], self.channels, self.size)

    def stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std in [0, 1], estimated from an evenly spread sample."""
        if self._stats is None:
            step = max(1, len(self) // STATS_SAMPLE)
            x = torch.from_numpy(np.stack([self[i] for i in range(0, len(self), step)])).float() / 255
            self._stats = x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist()
        return self._stats


@dataclass
class Split:
    images: torch.Tensor | FileImages  # uint8 (N, C, H, W), in memory or decoded per item
    labels: torch.Tensor               # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        return isinstance(self.images, torch.Tensor)


@dataclass
class ImageData:
    name: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    flip: bool  # horizontal flips keep the label (natural images yes, digits no)

    @property
    def channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.train.images.shape[2:])

    @property
    def mean(self) -> list[float]:
        if not self.train.in_memory:  # a sample's
            return self.train.images.stats()[0]
        return (self.train.images.float().mean(dim=(0, 2, 3)) / 255).tolist()

    @property
    def std(self) -> list[float]:
        if not self.train.in_memory:
            std = self.train.images.stats()[1]
        else:
            std = (self.train.images.float().std(dim=(0, 2, 3)) / 255).tolist()
        return [max(s, 1e-3) for s in std]


def load(config: RunConfig) -> ImageData:
    """Load the config's dataset, resized to config.image_size when that is set."""
    if config.is_imagefolder:
        x, y, classes = _imagefolder(config.imagefolder_path(), config.image_size or IMAGEFOLDER_SIZE)
        (x, y), test = _split(x, y, TEST_FRACTION, TEST_SPLIT_SEED)
        flip = True
    elif config.dataset == "digits":
        x, y, classes = _digits()
        (x, y), test = _split(x, y, TEST_FRACTION, TEST_SPLIT_SEED)
        flip = False
    else:
        (x, y), test, classes = _torchvision(config.dataset)
        flip = config.dataset == "cifar10"
    train, val = _split(x, y, config.val_fraction, config.seed)
    splits = [Split(*_resize(s, config.image_size)) for s in (train, val, test)]
    return ImageData(config.dataset, classes, *splits, flip=flip)


def _split(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int):
    """Stratified split: `fraction` of every class goes to the second part, chosen by `seed`."""
    rng = np.random.default_rng(seed)
    labels = y.numpy()
    held = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = int(round(len(idx) * fraction))
        held[rng.choice(idx, size=n, replace=False)] = True
    keep, out = torch.from_numpy(np.flatnonzero(~held)), torch.from_numpy(np.flatnonzero(held))
    take = (lambda idx: x[idx]) if isinstance(x, torch.Tensor) else x.subset
    return (take(keep), y[keep]), (take(out), y[out])


def _resize(split: tuple[torch.Tensor, torch.Tensor], size: int):
    x, y = split
    if not isinstance(x, torch.Tensor):  # decoded at its size already
        return x, y
    if size and tuple(x.shape[2:]) != (size, size):
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x.contiguous(), y


def _digits():
    """scikit-learn's bundled 8x8 digits, read straight from its CSV (importing sklearn.datasets costs ~2 s)."""
    import importlib.util

    csv = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(csv, delimiter=",", dtype=np.float64)
    x = np.round(table[:, :64] * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 1, 8, 8)  # 0..16 ink -> 0..255
    return torch.from_numpy(x), torch.from_numpy(table[:, 64].astype(np.int64)), [str(c) for c in range(10)]


_TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def _torchvision(name: str):
    import torchvision

    cls = getattr(torchvision.datasets, _TORCHVISION[name])
    root = settings.data_root() / name
    try:
        parts = [cls(str(root), train=train, download=True) for train in (True, False)]
    except Exception as e:  # URLError, socket errors, checksum failures: all mean "not here yet"
        reason = " ".join(str(e).split())[:300]  # one line, however chatty the downloader was
        raise DataError(f"dataset {name} is not in {root} and could not be downloaded ({reason}); "
                        "connect to the internet once, or use digits or imagefolder:PATH") from None
    out = []
    for part in parts:
        x = torch.as_tensor(np.asarray(part.data))
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
        out.append((x.contiguous(), torch.as_tensor(np.asarray(part.targets), dtype=torch.int64)))
    return out[0], out[1], list(parts[0].classes)


def _imagefolder(root: Path, size: int):
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).rglob("*"))
             if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
    counts = np.bincount([i for _, i in files], minlength=len(classes)) if classes else []
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if len(classes) < 2:
        raise DataError(f"image folder {root} needs at least 2 class subfolders with images, found {classes}")
    if empty:
        raise DataError(f"image folder {root}: class folders without images: {', '.join(empty)}")
    labels = torch.tensor([i for _, i in files])
    if len(files) * 3 * size * size > settings.memory_budget_mb() * 2**20:  # stays on disk
        try:
            sample = [images.open_image(f) for f, _ in files[::max(1, len(files) // CHANNELS_SAMPLE)]]
        except images.ImageError as e:
            raise DataError(f"image folder {root}: unreadable file: {e}") from None
        channels = 1 if all(images.is_grayscale(img) for img in sample) else 3
        return FileImages([f for f, _ in files], channels, size), labels, classes
    decoded, bad = [], []
    for f, _ in files:
        try:
            decoded.append(images.open_image(f))
        except images.ImageError as e:
            bad.append(str(e))
    if bad:
        raise DataError(f"image folder {root}: {len(bad)} unreadable file(s), e.g. {'; '.join(bad[:3])}")
    channels = 1 if all(images.is_grayscale(img) for img in decoded) else 3
    x = np.stack([images.to_array(img, channels, (size, size)) for img in decoded])
    return torch.from_numpy(x), labels, classes
