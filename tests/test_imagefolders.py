"""Real image folders at the default settings: the embedded digits written out as class folders of
PNG files, trained, predicted at other sizes, and spoiled with unreadable files.

These train real models (a few epochs of digits each), so they are the heaviest pipeline tests:
about 60 s in all on two CPU cores. Run: .venv/bin/python -m pytest tests/test_imagefolders.py -q
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import names
from pipeline.config import RunConfig
from pipeline.serving.predict import Preprocessing
from pipeline.imaging import folders
from pipeline.training import data, engine
from pipeline.training.batches import Normalizer

WORDS = "zero one two three four five six seven eight nine".split()
EPOCHS = 3  # enough for digits to pass 0.97 with the defaults; keeps this file near a minute


def write_digits(root, side: int = 8, resample=Image.Resampling.BILINEAR):
    """The 1797 embedded digits as root/<word>/<i>.png, enlarged to `side` px with `resample`."""
    x, y, _ = data._digits()
    for i, (pixels, label) in enumerate(zip(x.numpy(), y.numpy())):
        folder = root / WORDS[label]
        folder.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(pixels[0], "L")
        (img if side == 8 else img.resize((side, side), resample)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def digits_root(store):
    """digits8 and digits32 under the session's data root (RUNBOARD_DATA_ROOT, set by `store`)."""
    root = store / "data"
    write_digits(root / "digits8")
    write_digits(root / "digits32", 32)
    return root


def _accuracy(config: RunConfig) -> float:
    return engine.fit(config, data.load(config), progress=False).test.accuracy


def _pixels_and_labels(d: data.ImageData, names: list[str]) -> list[tuple[bytes, str]]:
    """Every image of the three splits with its class name, in a fixed order: the data set as a set."""
    splits = (d.train, d.val, d.test)
    return sorted((image.numpy().tobytes(), names[int(label)]) for split in splits
                  for image, label in zip(split.images, split.labels))


def test_a_folder_of_8px_digits_trains_like_the_embedded_digits(digits_root):
    folder = data.load(RunConfig(dataset="imagefolder:digits8"))
    assert folder.image_size == (8, 8) and folder.channels == 1 and not folder.flip  # its own size, no mirrors
    assert folder.classes == sorted(WORDS)
    builtin = data.load(RunConfig(dataset="digits"))
    # like with like, exactly: the same 1797 images under the same labels, only split differently
    assert _pixels_and_labels(folder, folder.classes) == _pixels_and_labels(builtin, [WORDS[int(c)] for c in
                                                                                        builtin.classes])
    # so accuracies differ only by the split and the seed: their gap over seeds 0-4 measured -1.39 .. +0.84
    # points (sd 0.9; builtin 0.986-0.997, folder 0.975-0.997, 3 epochs); allowed: 3 points, about 3 sd
    builtin_acc = _accuracy(RunConfig(dataset="digits", epochs=EPOCHS))
    words = _accuracy(RunConfig(dataset="imagefolder:digits8", epochs=EPOCHS))
    assert abs(words - builtin_acc) <= 0.03, (words, builtin_acc)


def test_a_folder_of_digits_enlarged_to_32px_keeps_its_size(digits_root):
    d = data.load(RunConfig(dataset="imagefolder:digits32"))
    assert d.image_size == (32, 32) and d.channels == 1 and len(d.train) + len(d.val) + len(d.test) == 1797


def test_a_folder_of_digits_enlarged_to_32px_trains(digits_root):
    """The one training run on an enlarged folder, made cheap: the mlp, 3 epochs (the cnn's 5 epochs at 32 px,
    0.97+, cost minutes here). Measured over seeds 0-2: 0.919 .. 0.936 (sd 0.009) in 3-16 s; 0.85 is 8 sd below."""
    assert _accuracy(RunConfig(dataset="imagefolder:digits32", model="mlp", epochs=3)) >= 0.85


def test_enlarged_test_digits_are_predicted_as_at_8px():
    """The serving path (decode, the shared resize, normalize) on digits enlarged by someone else."""
    config = RunConfig(dataset="digits", epochs=2)  # even a model this short (0.98 accurate) passes
    d = data.load(config)
    model = engine.fit(config, d, progress=False).model.eval()
    pre = Preprocessing(tuple(d.classes), 1, (8, 8), tuple(d.mean), tuple(d.std))
    originals = [Image.fromarray(a[0], "L") for a in d.test.images.numpy()]

    def predicted(imgs):
        with torch.no_grad():
            return model(pre.normalize(np.stack([pre.to_array(img) for img in imgs]))).argmax(1).numpy()

    at_8 = predicted(originals)
    for side in (28, 64, 256):
        for resample in (Image.Resampling.NEAREST, Image.Resampling.BILINEAR):
            agreement = (predicted([img.resize((side, side), resample) for img in originals]) == at_8).mean()
            # worst of the six over seeds 0-2: 0.989, 0.964, 0.989 (0.97 failed seed 1); 0.94 is 9 images below
            assert agreement >= 0.94, (side, resample, agreement)


def _spoil(root, files: dict[str, bytes]) -> None:
    for rel, payload in files.items():
        (root / rel).write_bytes(payload)


def test_a_large_folder_with_two_bad_files_trains_and_names_both(store, tmp_path, caplog):
    from mlflow import MlflowClient

    from pipeline.runs import train

    root = store / "data" / "digits_bad"
    write_digits(root)
    png = (root / "zero" / "0.png").read_bytes()
    _spoil(root, {"three/broken.png": b"not an image at all", "seven/truncated.png": png[:len(png) // 2]})
    with caplog.at_level(logging.WARNING):
        run_id = train.run(RunConfig(dataset="imagefolder:digits_bad", model="mlp", epochs=1,
                                     experiment="folders"),
                           progress=False)
    assert "broken.png" in caplog.text and "truncated.png" in caplog.text
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params[names.PARAM_IMAGE_SIZE_RESOLVED] == "8x8"
    listed = client.download_artifacts(run_id, names.SKIPPED_FILES_TXT, str(tmp_path))
    lines = open(listed).read().splitlines()
    assert len(lines) == 2 and any("broken.png" in line for line in lines) and any("truncated" in line for line in lines)
    assert int(run.data.tags[names.TAG_TRAIN_IMAGES]) + int(run.data.tags[names.TAG_VAL_IMAGES]) + \
        int(run.data.tags[names.TAG_TEST_IMAGES]) == 1797


def test_a_folder_that_is_10_percent_junk_is_refused_naming_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOARD_DATA_ROOT", str(tmp_path))
    for cls in ("a", "b"):
        (tmp_path / "f" / cls).mkdir(parents=True)
        for i in range(27):
            Image.new("L", (8, 8), 40 * (cls == "a")).save(tmp_path / "f" / cls / f"{i}.png")
    _spoil(tmp_path / "f", {f"a/junk{i}.png": b"junk" for i in range(6)})
    with pytest.raises(data.DataError, match=r"6 of 60 files are unreadable, over the 1%.*junk0\.png.*junk4\.png"
                                             r".* and 1 more"):
        data.load(RunConfig(dataset="imagefolder:f"))


@pytest.mark.parametrize("sizes, imagenet, expected", [
    ([(28, 28)] * 3, False, (28, 28)),          # small and uniform: kept
    ([(20, 30)] * 3, False, (30, 20)),          # (height, width), not squared
    ([(28, 28), (30, 30)], False, (32, 32)),    # mixed: median shorter side, at least 32
    ([(640, 480), (800, 600)], False, (224, 224)),  # large: at most 224
    ([(100, 90), (120, 110), (90, 80)], False, (88, 88)),  # median shorter side 90, a multiple of 8
    ([(28, 28)], True, (224, 224)),             # ImageNet weights: what they were trained on
])
def test_size_rule(sizes, imagenet, expected):
    assert folders.resolve_size(sizes, imagenet) == expected


def test_imagenet_weights_bring_imagenet_preprocessing_and_freezing_trains_the_head_first(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("RUNBOARD_DATA_ROOT", str(tmp_path))
    weights = tmp_path / "resnet18-imagenet.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)  # shaped like ImageNet's
    for cls, value in (("dark", 30), ("light", 220)):
        (tmp_path / "f" / cls).mkdir(parents=True)
        for i in range(20):
            Image.new("L", (40, 30), value + i).save(tmp_path / "f" / cls / f"{i}.png")
    config = RunConfig(dataset="imagefolder:f", model="resnet18", weights=str(weights), epochs=2, freeze_epochs=1,
                       batch_size=8, image_size=32)  # 32: keep the test small; 0 would give 224
    d = data.load(config)
    assert d.channels == 3 and d.mean == data.IMAGENET_MEAN and d.std == data.IMAGENET_STD
    assert data.load(RunConfig(dataset="imagefolder:f", model="resnet18", weights=str(weights))).image_size \
        == (224, 224)
    from pipeline.runs.train import preprocessing
    assert preprocessing(d, config)["normalization"] == "imagenet" and d.crop
    assert preprocessing(d, config)["resize"] == "center_crop"  # Resize 256 / CenterCrop 224, scaled to 32
    loaded = torch.load(weights, weights_only=True)["layer1.0.conv1.weight"]  # (conv1 is a small-image stem at 32 px)
    trained = engine.fit(config, d, progress=False).model  # epoch 1 the head alone, epoch 2 everything
    assert all(p.requires_grad for p in trained.parameters()) and not torch.equal(trained.layer1[0].conv1.weight, loaded)
    head_only = engine.fit(dataclasses.replace(config, epochs=1), d, progress=False).model
    assert torch.equal(head_only.layer1[0].conv1.weight, loaded)  # the backbone kept its pretrained weights
    from pipeline.training import models

    net = models.build("resnet18", 3, (224, 224), 2, str(weights))
    before = net.conv1.weight.detach().clone()
    models.freeze_backbone(net, True)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.1)
    net(Normalizer(d.mean, d.std, torch.device("cpu"))(torch.rand(2, 3, 64, 64) * 255)).sum().backward()
    optimizer.step()
    assert torch.equal(net.conv1.weight, before)  # frozen: untouched
    models.freeze_backbone(net, False)
    assert all(p.requires_grad for p in net.parameters())
