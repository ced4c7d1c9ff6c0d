"""Sample images for the playground, from the chosen model's own held-out test split.

digits models get the embedded digits' test split (at the model's side, the exact images its
evaluation scored); image-folder models get their folder's test split, which is the same for every
run (folders.held_out with TEST_SPLIT_SEED), read as the original files. Other datasets fall back
to the digits with a note.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from dashboard import refresh
from pipeline.config import IMAGEFOLDER, ConfigError, RunConfig
from pipeline.imaging import folders

MAX_CLASSES = 10  # samples shown at once: one per class, for the first classes


@st.cache_data(show_spinner=False)
def digits_samples(side: int, round_: int) -> list[tuple[str, bytes]]:
    """PNGs of the digits test split, one per digit (the `round_`-th of each), at `side` (0: 8x8).

    At the side a digits model was trained on, these are the exact images its evaluation scored.
    """
    from pipeline.training import data

    test = data.load(RunConfig(dataset="digits", image_size=side)).test
    labels, out = test.labels.numpy(), []
    for digit in range(10):
        where = np.flatnonzero(labels == digit)
        i = int(where[round_ % len(where)])
        buffer = io.BytesIO()
        Image.fromarray(test.images[i, 0].numpy(), "L").save(buffer, format="PNG")
        out.append((f"digits-test-{i}-true-{digit}.png", buffer.getvalue()))
    return out


@st.cache_data(ttl=refresh.FOLDER_SCAN_TTL, show_spinner="Finding the folder's test images…")
def folder_test_files(path: str) -> list[tuple[str, str]]:
    """(file, class) of the folder's held-out test split."""
    return [(str(f), c) for f, c in folders.test_files(Path(path))]


@st.cache_data(ttl=refresh.FOLDER_SCAN_TTL, max_entries=32, show_spinner=False)  # read once, not per rerun
def folder_samples(path: str, round_: int) -> list[tuple[str, bytes]]:
    """One test file per class (the `round_`-th of each), for the first MAX_CLASSES classes."""
    by_class: dict[str, list[str]] = {}
    for f, c in folder_test_files(path):
        by_class.setdefault(c, []).append(f)
    out = []
    for c, files in list(by_class.items())[:MAX_CLASSES]:
        f = Path(files[round_ % len(files)])
        out.append((f"{c}-test-{f.name}", f.read_bytes()))
    return out


def for_model(dataset: str, side: int, round_: int) -> tuple[list[tuple[str, bytes]], str]:
    """(samples, where they come from) for a model trained on `dataset`."""
    if dataset.startswith(IMAGEFOLDER):
        try:
            path = RunConfig(dataset=dataset).imagefolder_path()
            return folder_samples(str(path), round_), f"the test split of {dataset}, this model's own"
        except (ConfigError, folders.DataError, OSError) as e:
            note = f"its folder {dataset} cannot be read here ({e}); digits shown instead: expect arbitrary answers"
            return digits_samples(0, round_), note
    if dataset == "digits":
        return digits_samples(side, round_), "the digits test split: light strokes on dark, as trained"
    return digits_samples(0, round_), (f"the digits test split; this model was trained on {dataset}, not digits: "
                                       "expect arbitrary answers")


@st.cache_data(show_spinner=False)
def _digits_pixels() -> np.ndarray:
    """The bundled digits as uint8 (N, 8, 8), read from scikit-learn's CSV as data.py does (no torch)."""
    import importlib.util

    csv = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(csv, delimiter=",", dtype=np.float64)
    return np.round(table[:, :64] * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 8, 8)


def test_images(dataset: str, ids: list, shown: int = 24) -> list[bytes | None]:
    """The test images a run's predictions.npz names by id, as PNG bytes (None where one cannot be shown):
    digits by index into the bundled set, an image folder by path inside it; other built-in sets are not kept."""
    out: list[bytes | None] = []
    if dataset == "digits":
        pixels = _digits_pixels()
        for i in ids[:shown]:
            buffer = io.BytesIO()
            Image.fromarray(pixels[int(i)], "L").resize((32, 32), Image.NEAREST).save(buffer, format="PNG")
            out.append(buffer.getvalue())
        return out
    if not dataset.startswith(IMAGEFOLDER):
        return [None] * min(shown, len(ids))
    try:
        root = RunConfig(dataset=dataset).imagefolder_path().resolve()
    except ConfigError:
        return [None] * min(shown, len(ids))
    for relative in ids[:shown]:
        path = (root / str(relative)).resolve()
        ok = path.is_relative_to(root) and path.is_file()  # an id never leads outside the data root's folder
        out.append(path.read_bytes() if ok else None)
    return out
