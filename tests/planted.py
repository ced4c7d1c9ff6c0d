"""A small planted image folder and its audit, shared by tests/test_audit.py and the Data page's tests.

digits 0 and 1 (40 each, 8x8 PNG): two 1s filed under 0, one exact duplicate, one test image copied
into training (placed so that the trainer's split keeps the original in test and the copy out of it).
"""
from __future__ import annotations

import shutil

from PIL import Image

from pipeline.config import RunConfig
from pipeline.imaging import folders
from pipeline.training import data

PER_CLASS = 40
FOLDER = "planted"


def plain_folder(root, counts: dict[str, int]) -> None:
    """A class folder per name holding that many flat 8x8 PNGs (30 * i grey): enough to queue or refuse by counts."""
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("L", (8, 8), 30 * i).save(root / name / f"{i}.png")


def plant(root) -> dict:
    x, y, _ = data._digits()
    for label, name in ((0, "zero"), (1, "one")):
        (root / name).mkdir(parents=True)
        for i in [int(i) for i in (y == label).nonzero()[:PER_CLASS, 0]]:
            Image.fromarray(x[i, 0].numpy(), "L").save(root / name / f"{i:04d}.png")
    wrong = []
    for f in sorted((root / "one").iterdir())[:2]:
        shutil.move(f, root / "zero" / f.name)
        wrong.append(f"zero/{f.name}")
    first = sorted((root / "one").iterdir())[5]
    shutil.copy(first, root / "one" / first.name.replace(".png", "_dup.png"))
    test = {f.relative_to(root).as_posix() for f, _ in folders.test_files(root)}
    original = next(f for f in sorted((root / "one").iterdir()) if f.relative_to(root).as_posix() in test
                    and "_" not in f.name)
    for anchor in sorted((root / "one").iterdir()):  # the copy must land outside the test split
        copy = root / "one" / anchor.name.replace(".png", "_leak.png")
        shutil.copy(original, copy)
        split = {f.relative_to(root).as_posix() for f, _ in folders.test_files(root)}
        if copy.relative_to(root).as_posix() not in split and f"one/{original.name}" in split:
            break
        copy.unlink()
    return {"root": root, "wrong": wrong, "dup": (f"one/{first.name}", f"one/{first.name[:-4]}_dup.png"),
            "leak": (copy.relative_to(root).as_posix(), f"one/{original.name}")}


def audit() -> str:
    from pipeline.runs import audit as audits

    config = RunConfig(dataset=f"imagefolder:{FOLDER}", epochs=4, experiment="audit", device="cpu")
    return audits.run(config, folds=3, progress=False)
