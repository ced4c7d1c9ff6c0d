"""What a class-per-folder dataset holds, read from file headers only: no pixels decoded, no torch.

The trainer (data.py) and the dashboard (the launch form's summary, the playground's samples) share
it, so they agree on the classes, the files, the size a run will use and the held-out test split.

Size rule with image_size 0 (`resolve_size`): ImageNet weights get 224 px; images that are all the
same size and at most NATIVE_MAX px a side keep it (28x28 stays 28x28); anything else (large or
mixed sizes) goes to the median of the images' shorter sides, clamped to [MIN_SIDE, MAX_SIDE] and
rounded to a multiple of 8, square.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import UserError
from pipeline.names import IMAGE_SUFFIXES
from pipeline.imaging import images

TEST_SPLIT_SEED = 20_240_601  # fixed: the held-out test split is the same for every run
TEST_FRACTION = 0.2           # for datasets without an official test split
NATIVE_MAX = 64               # uniform images up to this side keep their own size
MIN_SIDE, MAX_SIDE = 32, 224  # the side chosen for large or mixed sizes stays in this range
IMAGENET_SIDE = 224           # what torchvision's ImageNet weights were trained on
MAX_BAD_SHARE = 0.01          # a folder with more unreadable files than this is refused
NAMED_BAD = 5                 # unreadable files named in a refusal


class DataError(UserError):
    """A dataset that cannot be loaded; the message says what to do."""


@dataclass
class FolderScan:
    root: Path
    classes: list[str]
    files: list[Path] = field(default_factory=list)   # readable by their header, class by class
    labels: list[int] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of each file
    modes: list[str] = field(default_factory=list)             # PIL mode of each file
    skipped: list[str] = field(default_factory=list)           # "path: why" of each unreadable file

    @property
    def counts(self) -> dict[str, int]:
        per = Counter(self.labels)
        return {c: per[i] for i, c in enumerate(self.classes)}

    @property
    def grayscale(self) -> bool:
        return bool(self.modes) and all(m in images.GRAY_MODES for m in self.modes)

    def summary(self) -> dict:
        """Plain numbers for a page: images per class, sizes seen, grayscale or RGB, skipped files."""
        widths, heights = [w for w, _ in self.sizes], [h for _, h in self.sizes]
        common = Counter(self.sizes).most_common(3)
        return {"images": len(self.files), "counts": self.counts,
                "min_size": [min(widths, default=0), min(heights, default=0)],
                "max_size": [max(widths, default=0), max(heights, default=0)],
                "common_sizes": [[w, h, n] for (w, h), n in common], "grayscale": self.grayscale,
                "skipped": list(self.skipped)}


def scan(root: Path) -> FolderScan:
    """Classes, files and their header sizes; unreadable headers are kept aside in `skipped`."""
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = FolderScan(root, classes)
    for label, name in enumerate(classes):
        for f in sorted((root / name).rglob("*")):
            if f.suffix.lower() not in IMAGE_SUFFIXES or not f.is_file():
                continue
            try:
                width, height, mode = images.read_header(f)
            except images.ImageError as e:
                found.skipped.append(str(e))
                continue
            found.files.append(f)
            found.labels.append(label)
            found.sizes.append((width, height))
            found.modes.append(mode)
    if len(classes) < 2:
        raise DataError(f"image folder {root} needs at least 2 class subfolders with images, found {classes}")
    return found


def check(found: FolderScan) -> None:
    """Refuse a folder with an empty class, or with more than MAX_BAD_SHARE unreadable files."""
    total = len(found.files) + len(found.skipped)
    if found.skipped and len(found.skipped) > MAX_BAD_SHARE * total:
        named = "; ".join(found.skipped[:NAMED_BAD])
        more = f" and {len(found.skipped) - NAMED_BAD} more" if len(found.skipped) > NAMED_BAD else ""
        raise DataError(f"image folder {found.root}: {len(found.skipped)} of {total} files are unreadable, over "
                        f"the {MAX_BAD_SHARE:.0%} a run skips: {named}{more}")
    empty = [c for c, n in found.counts.items() if n == 0]
    if empty:
        raise DataError(f"image folder {found.root}: class folders without images: {', '.join(empty)}")


def resolve_size(sizes: list[tuple[int, int]], imagenet: bool = False) -> tuple[int, int]:
    """(height, width) a folder trains at with image_size 0: the rule in this module's docstring."""
    if imagenet:
        return IMAGENET_SIDE, IMAGENET_SIDE
    distinct = set(sizes)
    if len(distinct) == 1:
        width, height = next(iter(distinct))
        if max(width, height) <= NATIVE_MAX:
            return height, width
    side = float(np.median([min(w, h) for w, h in sizes])) if sizes else MIN_SIDE
    side = int(round(min(max(side, MIN_SIDE), MAX_SIDE) / 8) * 8)
    return side, side


def held_out(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Stratified split mask: `fraction` of every class is True (held out), chosen by `seed`."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = int(round(len(idx) * fraction))
        held[rng.choice(idx, size=n, replace=False)] = True
    return held


def test_files(root: Path) -> list[tuple[Path, str]]:
    """The held-out test split of a folder as (file, class), the same files data.load tests on
    (unless a file's pixels, not its header, are damaged: the trainer skips those later)."""
    found = scan(root)
    held = held_out(np.asarray(found.labels), TEST_FRACTION, TEST_SPLIT_SEED)
    return [(found.files[i], found.classes[found.labels[i]]) for i in np.flatnonzero(held)]
