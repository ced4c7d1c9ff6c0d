"""Batches: chunked on-device augmentation, and image folders over the memory budget streamed from disk.

Run: make test, or `.venv/bin/python -m pytest tests/test_batches.py -q`.
"""
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.training import batches, data, engine
from pipeline.config import RunConfig

CPU = torch.device("cpu")


def _split(n=100, side=8):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, side, side).contiguous()
    return data.Split(images, torch.arange(n) % 10)


def test_an_epoch_in_chunks_yields_every_image_once_in_order(monkeypatch):
    monkeypatch.setattr(batches, "CHUNK_BYTES", 4 * 64 * 24)  # chunks of 24 images: 3 batches of 8
    split, order = _split(), torch.randperm(100)
    gen = torch.Generator().manual_seed(0)
    got = list(batches.train_batches(split, order, 8, "none", False, gen, batches.Normalizer([0.0], [1 / 255], CPU)))
    assert [len(y) for _, y in got] == [8] * 12 + [4]
    seen = torch.cat([x[:, 0, 0, 0] for x, _ in got])  # normalized back to the image's value
    assert torch.equal(seen.round().long(), order) and torch.equal(torch.cat([y for _, y in got]), order % 10)


def test_normalizer_matches_the_logged_recipe():
    x = torch.randint(0, 256, (4, 3, 5, 5)).float()
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 0.2]
    recipe = (x / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = batches.Normalizer(mean, std, CPU, torch.channels_last)(x)
    assert torch.equal(out, recipe) and out.is_contiguous(memory_format=torch.channels_last)


def _stripes(root, n=24):
    """Two classes a small CNN tells apart at once: horizontal and vertical stripes, with noise."""
    rng = np.random.default_rng(0)
    for cls, axis in (("horizontal", 0), ("vertical", 1)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            stripes = np.indices((16, 16))[axis] % 4 < 2
            pixels = np.where(stripes, 200, 40) + rng.integers(0, 30, (16, 16))
            Image.fromarray(pixels.astype(np.uint8), "L").save(root / cls / f"{i}.png")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOARD_DATA_ROOT", str(tmp_path))
    _stripes(tmp_path / "stripes")
    return RunConfig(dataset="imagefolder:stripes", image_size=16, epochs=3, batch_size=8, augment="none")


def test_a_folder_over_the_budget_stays_on_disk_and_trains(folder, monkeypatch):
    monkeypatch.setenv("RUNBOARD_MEMORY_BUDGET_MB", "0")  # nothing fits: the DataLoader path
    streamed = data.load(folder)
    assert not streamed.train.in_memory and isinstance(streamed.test.images, data.FileImages)
    assert (streamed.channels, streamed.image_size, len(streamed.classes)) == (1, (16, 16), 2)
    monkeypatch.setenv("RUNBOARD_MEMORY_BUDGET_MB", "4096")
    held = data.load(folder)
    assert held.train.in_memory and len(held.train) == len(streamed.train)
    # the same images either way, so the same statistics and evaluation batches
    assert streamed.mean == pytest.approx(held.mean, abs=1e-6) and streamed.std == pytest.approx(held.std, abs=1e-5)
    normalize = batches.Normalizer(held.mean, held.std, CPU)
    for a, b in zip(batches.eval_batches(streamed.test, None, CPU, normalize),
                    batches.eval_batches(held.test, None, CPU, normalize)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    result = engine.fit(folder, streamed, progress=False)
    assert result.epochs_run == 3 and result.test.accuracy >= 0.8


def test_an_unreadable_file_in_a_streamed_folder_is_named(folder, monkeypatch, tmp_path):
    monkeypatch.setenv("RUNBOARD_MEMORY_BUDGET_MB", "0")
    d = data.load(folder)
    d.train.images.files[3].write_bytes(b"not an image")
    with pytest.raises(data.DataError, match=r"unreadable file: .*\.png"):
        engine.fit(folder, d, progress=False)
