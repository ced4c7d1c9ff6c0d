"""Datasets: digits splits, image folders and their errors, offline torchvision. Run: make test."""
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.training import data
from pipeline.config import RunConfig
from pipeline.training.data import DataError


def test_digits_is_embedded_and_split_three_ways():
    d = data.load(RunConfig())
    assert d.classes == [str(i) for i in range(10)]
    assert (d.channels, d.image_size) == (1, (8, 8))
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    assert len(d.test) == pytest.approx(1797 * 0.2, abs=10)
    assert d.train.images.dtype == torch.uint8 and d.train.images.max() == 255
    assert set(d.test.labels.tolist()) == set(range(10))  # stratified: every class is tested


def _ids(split):
    return {tuple(x.flatten().tolist()) + (int(y),) for x, y in zip(split.images, split.labels)}


def test_test_split_is_fixed_and_val_split_follows_the_seed():
    a, b, a2 = data.load(RunConfig(seed=0)), data.load(RunConfig(seed=1)), data.load(RunConfig(seed=0))
    assert torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.val.images, b.val.images)
    assert torch.equal(a.val.images, a2.val.images) and torch.equal(a.train.images, a2.train.images)
    assert not (_ids(a.train) & _ids(a.test)) or len(_ids(a.train) & _ids(a.test)) < 5  # digits has a few duplicates


def test_image_size_resizes_all_splits():
    d = data.load(RunConfig(image_size=16))
    assert d.image_size == (16, 16) and d.test.images.shape[2:] == (16, 16)


def _folder(root, spec):
    for cls, images in spec.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            img.save(root / cls / f"{i}.png")


def test_imagefolder_rgb_any_size(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOARD_DATA_ROOT", str(tmp_path))
    rng = np.random.default_rng(0)
    make = lambda c, w, h: Image.fromarray(np.full((h, w, 3), c, np.uint8) + rng.integers(0, 20, (h, w, 3), dtype=np.uint8))  # noqa: E731
    _folder(tmp_path / "shapes", {"red": [make((200, 0, 0), 30 + i, 20) for i in range(10)],
                                  "blue": [make((0, 0, 200), 20, 40 + i) for i in range(10)]})
    d = data.load(RunConfig(dataset="imagefolder:shapes", image_size=16))
    assert d.classes == ["blue", "red"] and d.channels == 3 and d.image_size == (16, 16)
    assert len(d.train) + len(d.val) + len(d.test) == 20 and not d.flip  # flips only when asked


def test_imagefolder_grayscale_gets_one_channel(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOARD_DATA_ROOT", str(tmp_path))
    gray = [Image.new("L", (12, 12), v) for v in range(0, 250, 25)]
    _folder(tmp_path / "g", {"dark": gray[:5] * 2, "light": gray[5:] * 2})
    d = data.load(RunConfig(dataset="imagefolder:g"))
    assert d.channels == 1 and d.image_size == (12, 12)  # small and uniform: kept


@pytest.mark.parametrize("layout, message", [
    (None, "image folder not found"),
    ({}, "needs at least 2 class subfolders"),
    ({"only": 3}, "needs at least 2 class subfolders"),
    ({"a": 3, "b": 0}, "class folders without images: b"),
])
def test_imagefolder_errors(tmp_path, monkeypatch, layout, message):
    monkeypatch.setenv("RUNBOARD_DATA_ROOT", str(tmp_path))
    if layout is not None:
        (tmp_path / "f").mkdir()
        for cls, n in layout.items():
            (tmp_path / "f" / cls).mkdir()
            for i in range(n):
                Image.new("RGB", (8, 8)).save(tmp_path / "f" / cls / f"{i}.png")
    with pytest.raises(DataError, match=message):
        data.load(RunConfig(dataset="imagefolder:f"))


def test_imagefolder_unreadable_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOARD_DATA_ROOT", str(tmp_path))
    _folder(tmp_path / "f", {"a": [Image.new("RGB", (8, 8))] * 2, "b": [Image.new("RGB", (8, 8))] * 2})
    (tmp_path / "f" / "b" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"1 of 5 files are unreadable, over the 1% .*broken\.png"):
        data.load(RunConfig(dataset="imagefolder:f"))


def test_torchvision_dataset_offline_fails_at_once_with_a_clear_message(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("RUNBOARD_DATA_ROOT", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens there
    with pytest.raises(DataError, match="dataset mnist is not in .* could not be downloaded") as e:
        data.load(RunConfig(dataset="mnist"))
    assert "\n" not in str(e.value)
