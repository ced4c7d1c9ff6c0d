"""What a run trained on: a content digest and a profile of its dataset, without torch or MLflow.

The digest is fed while the files are read for training (`Digest.add_file` with the bytes already in
hand), so it costs a hash pass over bytes that are in memory anyway, not a second read. It covers each
file's path relative to the folder and its bytes, in scan order, and the list of files left out on
purpose: renaming, adding, changing or excluding one file changes it. Built-in datasets digest their
arrays. `short` is what pages show (the first DIGEST_SHOWN hex digits).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pipeline.imaging import folders

DIGEST_SHOWN = 6   # hex digits a page shows: "digest 3f2a91"
DIGEST_CHARS = 32  # hex digits kept (128 bits): MLflow's dataset digest holds at most 36 characters


class Digest:
    """sha256 (first DIGEST_CHARS hex digits) over (relative path, length, bytes) of each file, then the exclusion list."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.files = 0

    def add_file(self, relative: str, data: bytes) -> None:
        name = relative.replace("\\", "/").encode()
        self._hash.update(len(name).to_bytes(4, "little") + name + len(data).to_bytes(8, "little"))
        self._hash.update(data)
        self.files += 1

    def add_array(self, name: str, array: np.ndarray) -> None:
        """A built-in dataset's tensor: its dtype, shape and bytes."""
        array = np.ascontiguousarray(array)
        self._hash.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        self._hash.update(array.data)

    def add_excluded(self, excluded: list[str]) -> None:
        self._hash.update(b"excluded\0" + "\n".join(sorted(excluded)).encode())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()[:DIGEST_CHARS]


def folder_digest(root: Path, files: list[Path], excluded: list[str] = ()) -> str:
    """The digest of files read from disk now (a folder that streams, benches, tests)."""
    digest = Digest()
    for f in files:
        digest.add_file(relative(root, f), f.read_bytes())
    if excluded:
        digest.add_excluded(list(excluded))
    return digest.hexdigest()


def relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def short(digest: str) -> str:
    return digest[:DIGEST_SHOWN]


def profile(found: folders.FolderScan, excluded: list[str] = ()) -> dict:
    """Classes, files per class, sizes, grayscale or RGB, skipped and excluded files: MLflow's profile."""
    summary = found.summary()
    return {"classes": found.classes, "files": summary["images"], "files_per_class": summary["counts"],
            "min_size": summary["min_size"], "max_size": summary["max_size"],
            "common_sizes": summary["common_sizes"], "color": "grayscale" if summary["grayscale"] else "RGB",
            "skipped": len(found.skipped), "excluded": len(excluded)}


def read_excluded(path: Path) -> list[str]:
    """Relative paths, one a line; blank lines and lines starting with # (the reason) are not paths."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def excluded_reason(path: Path) -> str:
    """The list's comment lines joined: why these files were left out."""
    return " ".join(line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#"))
