"""What the dataset digest costs a run's start: 1,000 and 50,000 files, hashed while they are read.

For each size it writes that many 28x28 grayscale PNGs (MNIST-like, 10 classes) and measures, side by
side in this process: the trainer's read of the folder (data.load_folder: scan, read, decode, resize,
digest), the hashing alone over the same bytes already in memory (the digest's own cost), and a
digest that has to read the files again (what a folder that streams from disk pays). Ratios, not
absolute times, are the figures: the machine's load moves both sides alike.

Run: nice -n 5 .venv/bin/python bench/digest_cost.py [--sizes 1000 50000]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_folder(root: Path, files: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(files):
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (rng.random((28, 28)) < 0.2).astype(np.uint8) * 255  # sparse strokes: PNGs of MNIST's size
        Image.fromarray(pixels, "L").save(folder / f"{i:06d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 50_000])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="digest-cost-"))
    os.environ["RUNBOARD_DATA_ROOT"] = str(work)
    from pipeline.config import RunConfig
    from pipeline.imaging import lineage
    from pipeline.training import data

    for files in args.sizes:
        root = work / f"f{files}"
        write_folder(root, files)
        started = time.perf_counter()
        folder = data.load_folder(RunConfig(dataset=f"imagefolder:f{files}"))
        read_s = time.perf_counter() - started
        raw = [(lineage.relative(root, f), f.read_bytes()) for f in folder.files]
        started = time.perf_counter()
        digest = lineage.Digest()
        for name, content in raw:
            digest.add_file(name, content)
        hash_s = time.perf_counter() - started
        assert digest.hexdigest() == folder.lineage.digest
        started = time.perf_counter()
        lineage.folder_digest(root, folder.files)
        reread_s = time.perf_counter() - started
        size = sum(len(c) for _, c in raw)
        print(f"{files:,} files ({size / 2**20:.1f} MiB): loading the folder {read_s:.2f} s, of which hashing "
              f"{hash_s:.3f} s ({hash_s / read_s:.1%}); a digest that reads the files again {reread_s:.2f} s "
              f"({reread_s / read_s:.0%} of the load)")
        shutil.rmtree(root)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
