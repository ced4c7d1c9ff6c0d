"""Dataset registry: every dataset becomes uint8 tensors (N, C, H, W) split into train/val/test.

Small datasets live whole in memory (and on the training device, see engine.py) so that no image
is decoded twice. An image folder over the memory budget (RUNBOARD_MEMORY_BUDGET_MB) stays on disk
as `FileImages`, decoded per item by DataLoader workers. The test split never depends on the seed,
so runs with different seeds are scored on the same images; the validation split does.

Sizes: image_size N resizes every image to N x N; 0 keeps a built-in dataset's size and lets an image
folder's files choose (folders.resolve_size). Every resize is images.resize, the one prediction uses.
Weights trained on ImageNet (models.imagenet_weights) bring their own preprocessing: RGB, 224 px
unless image_size says otherwise, ImageNet's resize (shorter side to 256, centre 224) and its mean and std.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline import settings
from pipeline.config import RunConfig
from pipeline.imaging import folders, images, lineage
from pipeline.training import models
from pipeline.imaging.folders import TEST_FRACTION, TEST_SPLIT_SEED, DataError  # noqa: F401 (re-exported)

STATS_SAMPLE = 512            # images decoded to estimate mean/std of a folder that stays on disk
CHANNELS_SAMPLE = 256         # images looked at to decide grayscale or RGB for such a folder
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # what torchvision's weights expect
log = logging.getLogger(__name__)


class FileImages:
    """Image files decoded one at a time to uint8 (C, H, W): a folder too big to hold in memory."""

    def __init__(self, files: list[Path], channels: int, size: tuple[int, int], crop: bool = False):
        self.files, self.channels, self.size, self.crop = files, channels, tuple(size), crop
        self._stats: tuple[list[float], list[float]] | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), self.channels, *self.size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        try:
            return images.to_array(images.open_image(self.files[i]), self.channels, self.size, self.crop)
        except images.ImageError as e:  # found only now: the folder was never decoded as a whole
            raise DataError(f"image folder: unreadable file: {e}") from None

    def subset(self, idx: torch.Tensor) -> "FileImages":
        return FileImages([self.files[i] for i in idx.tolist()], self.channels, self.size, self.crop)

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
class Lineage:
    """The dataset as MLflow's log_input records it: name (the spec), source, content digest, profile."""
    name: str
    source: str    # the folder relative to the data root, or the built-in's name
    digest: str    # lineage.Digest: 32 hex digits
    profile: dict
    excluded: list[str] = field(default_factory=list)  # files left out on purpose (relative to the folder)
    excluded_reason: str = ""


@dataclass
class ImageData:
    name: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    flip: bool  # horizontal flips keep the label (natural images yes, digits no)
    normalization: tuple[list[float], list[float]] | None = None  # fixed mean/std (pretrained weights'), else the data's
    skipped: list[str] = field(default_factory=list)  # "path: why" of each unreadable file left out
    test_ids: np.ndarray | None = None  # a stable id per test image: a folder's relative paths, else indices
    lineage: "Lineage | None" = None  # what the run trained on: digest and profile (lineage.py)

    @property
    def crop(self) -> bool:
        """ImageNet's resize (shorter side to size / 0.875, then the centre): it comes with ImageNet's weights."""
        return self.normalization is not None

    @property
    def channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.train.images.shape[2:])

    @property
    def mean(self) -> list[float]:
        if self.normalization:
            return list(self.normalization[0])
        if not self.train.in_memory:  # a sample's
            return self.train.images.stats()[0]
        return (self.train.images.float().mean(dim=(0, 2, 3)) / 255).tolist()

    @property
    def std(self) -> list[float]:
        if self.normalization:
            return list(self.normalization[1])
        if not self.train.in_memory:
            std = self.train.images.stats()[1]
        else:
            std = (self.train.images.float().std(dim=(0, 2, 3)) / 255).tolist()
        return [max(s, 1e-3) for s in std]


def load(config: RunConfig) -> ImageData:
    """Load the config's dataset at the size config.image_size asks for (0: see the module docstring)."""
    imagenet = bool(config.weights) and models.imagenet_weights(config.model, Path(config.weights))
    size = (config.image_size, config.image_size) if config.image_size else None
    skipped: list[str] = []
    if config.is_imagefolder:
        folder = load_folder(config, size, imagenet)
        x, y, classes, skipped, seen = folder.images, folder.labels, folder.classes, folder.skipped, folder.lineage
        root = config.imagefolder_path()
        test_ids = _held_ids(y, np.array([lineage.relative(root, f) for f in folder.files], dtype=str))
        (x, y), test = _split(x, y, TEST_FRACTION, TEST_SPLIT_SEED)
    elif config.dataset == "digits":
        x, y, classes = _digits()
        seen = _builtin_lineage(config.dataset, classes, [("x", x), ("y", y)])
        test_ids = _held_ids(y, np.arange(len(y)))
        (x, y), test = _split(x, y, TEST_FRACTION, TEST_SPLIT_SEED)
    else:
        (x, y), test, classes = _torchvision(config.dataset)
        seen = _builtin_lineage(config.dataset, classes, [("x", x), ("y", y), ("test_x", test[0]),
                                                          ("test_y", test[1])])
        test_ids = np.arange(len(test[1]))
    if imagenet:
        size = size or (folders.IMAGENET_SIDE, folders.IMAGENET_SIDE)
    train, val = _split(x, y, config.val_fraction, config.seed)
    crop = imagenet and not config.is_imagefolder  # a folder's files were cropped as they were decoded
    splits = [Split(*_prepare(s, size, imagenet, crop)) for s in (train, val, test)]
    flip = config.flip or config.dataset == "cifar10"  # cifar10's classes all survive a mirror
    return ImageData(config.dataset, classes, *splits, flip=flip,
                     normalization=(IMAGENET_MEAN, IMAGENET_STD) if imagenet else None, skipped=skipped,
                     test_ids=test_ids, lineage=seen)


def _held_ids(y: torch.Tensor, ids: np.ndarray) -> np.ndarray:
    """The ids of the test split `_split` holds out, in its order: what two runs' predictions are matched by."""
    return ids[folders.held_out(y.numpy(), TEST_FRACTION, TEST_SPLIT_SEED)]


def _builtin_lineage(name: str, classes: list[str], arrays) -> Lineage:
    digest = lineage.Digest()
    for key, array in arrays:
        digest.add_array(key, array.numpy())
    labels = arrays[1][1].numpy()
    counts = np.bincount(labels, minlength=len(classes)).tolist()
    profile = {"classes": classes, "files": int(len(labels)), "files_per_class": dict(zip(classes, counts)),
               "size": list(arrays[0][1].shape[1:]), "skipped": 0, "excluded": 0}
    return Lineage(name, name, digest.hexdigest(), profile)


def _split(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int):
    """Stratified split: `fraction` of every class goes to the second part, chosen by `seed`."""
    held = folders.held_out(y.numpy(), fraction, seed)
    keep, out = torch.from_numpy(np.flatnonzero(~held)), torch.from_numpy(np.flatnonzero(held))
    take = (lambda idx: x[idx]) if isinstance(x, torch.Tensor) else x.subset
    return (take(keep), y[keep]), (take(out), y[out])


def _prepare(split: tuple[torch.Tensor, torch.Tensor], size: tuple[int, int] | None, rgb: bool,
             crop: bool = False):
    """In-memory images brought to `size` by the one shared resize (and to 3 channels for `rgb`);
    with `crop`, ImageNet's resize, which prediction applies to every upload, same size or not."""
    x, y = split
    if not isinstance(x, torch.Tensor):  # decoded at its size already
        return x, y
    if size and (crop or tuple(x.shape[2:]) != tuple(size)):
        x = torch.from_numpy(np.stack([images.resize_array(a, size, crop) for a in x.numpy()])) if len(x) else \
            x.new_zeros((0, x.shape[1], *size))
    if rgb and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
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


@dataclass
class Folder:
    """Every readable file of an image folder (before any split), as the trainer and the audit read it."""
    images: torch.Tensor | FileImages
    labels: torch.Tensor
    classes: list[str]
    skipped: list[str]
    files: list[Path]
    lineage: Lineage


def load_folder(config: RunConfig, size: tuple[int, int] | None = None, imagenet: bool = False) -> Folder:
    """The config's image folder without the files its exclusion list names, digested as it is read."""
    root = config.imagefolder_path()
    listed = config.exclude_path()
    excluded = lineage.read_excluded(listed) if listed else []
    reason = lineage.excluded_reason(listed) if listed else ""
    x, y, classes, skipped, files, digest, found = _imagefolder(root, size, imagenet, set(excluded))
    source = lineage.relative(settings.data_root().resolve(), root) or "."
    seen = Lineage(config.dataset, source, digest, lineage.profile(found, excluded), excluded, reason)
    return Folder(x, y, classes, skipped, files, seen)


def _imagefolder(root: Path, size: tuple[int, int] | None, imagenet: bool, excluded: set[str] = frozenset()):
    """(images, labels, classes, skipped, files, digest, scan): readable files decoded at `size` (None: the
    folder's rule), the digest fed with the bytes as they are read."""
    found = folders.scan(root)
    if excluded:
        keep = [i for i, f in enumerate(found.files) if lineage.relative(root, f) not in excluded]
        found.files, found.labels = [found.files[i] for i in keep], [found.labels[i] for i in keep]
        found.sizes, found.modes = [found.sizes[i] for i in keep], [found.modes[i] for i in keep]
    folders.check(found)
    size = size or folders.resolve_size(found.sizes, imagenet)
    if len(found.files) * 3 * size[0] * size[1] > settings.memory_budget_mb() * 2**20:  # stays on disk
        sample = []
        for f in found.files[::max(1, len(found.files) // CHANNELS_SAMPLE)]:
            try:
                sample.append(images.open_image(f))
            except images.ImageError:
                continue  # named when the trainer reaches it
        channels = 3 if imagenet or not all(images.is_grayscale(img) for img in sample) else 1
        _warn(root, found.skipped)
        digest = lineage.folder_digest(root, found.files, sorted(excluded))  # streamed: one extra read
        return (FileImages(found.files, channels, size, crop=imagenet), torch.tensor(found.labels), found.classes,
                found.skipped, found.files, digest, found)
    decoded, files, labels, digest = [], [], [], lineage.Digest()
    for f, label in zip(found.files, found.labels):
        raw = f.read_bytes()  # read once: decoded and digested from the same bytes
        try:
            decoded.append(images.open_image(raw, name=str(f)))
        except images.ImageError as e:  # the header was fine, the pixels are not
            found.skipped.append(str(e))
            continue
        digest.add_file(lineage.relative(root, f), raw)
        files.append(f)
        labels.append(label)
    if excluded:
        digest.add_excluded(sorted(excluded))
    found.files, found.labels = files, labels
    folders.check(found)
    _warn(root, found.skipped)
    channels = 3 if imagenet or not all(images.is_grayscale(img) for img in decoded) else 1
    x = np.stack([images.to_array(img, channels, size, crop=imagenet) for img in decoded])
    return torch.from_numpy(x), torch.tensor(labels), found.classes, found.skipped, files, digest.hexdigest(), found


def _warn(root: Path, skipped: list[str]) -> None:
    if skipped:
        log.warning("image folder %s: skipped %d unreadable file(s):\n  %s", root, len(skipped),
                    "\n  ".join(skipped))
