"""Playground samples: an image-folder model gets images of its own held-out test split.

Run: .venv/bin/python -m pytest tests/dashboard/test_samples.py -q
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from dashboard import samples
from pipeline.config import RunConfig
from pipeline.imaging import images
from pipeline.training import data


def test_an_image_folder_model_gets_one_sample_per_class_from_its_test_split(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOARD_DATA_ROOT", str(tmp_path))
    rng = np.random.default_rng(0)
    for cls in ("circle", "square", "triangle"):
        (tmp_path / "shapes" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8), "L").save(tmp_path / "shapes" / cls / f"{i}.png")
    found, note = samples.for_model("imagefolder:shapes", 0, 0)
    assert [name.split("-test-")[0] for name, _ in found] == ["circle", "square", "triangle"]
    assert "test split of imagefolder:shapes" in note
    test = data.load(RunConfig(dataset="imagefolder:shapes")).test
    held = {(int(label), arr.tobytes()) for arr, label in zip(test.images.numpy(), test.labels.numpy())}
    for label, (name, png) in enumerate(found):  # exactly images the model's evaluation scored
        pixels = images.to_array(images.open_image(png), 1, (12, 12))
        assert (label, pixels.tobytes()) in held, name
    assert samples.for_model("imagefolder:shapes", 0, 1)[0] != found  # "Other samples": the next ones


def test_a_model_whose_folder_is_gone_falls_back_to_digits_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOARD_DATA_ROOT", str(tmp_path))
    found, note = samples.for_model("imagefolder:gone", 0, 0)
    assert len(found) == 10 and "cannot be read here" in note
    assert Image.open(io.BytesIO(found[0][1])).size == (8, 8)
