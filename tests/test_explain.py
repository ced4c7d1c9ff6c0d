"""Explanations on the session's tiny real runs (cnn and mlp on digits): the same predictions as the
logged model, maps that pass the randomization and deletion checks, `predict --explain`, and the
evaluation/explanations.* artifacts every run logs. About 15 s on 2 CPU cores after the fixtures.

Run: .venv/bin/python -m pytest tests/test_explain.py -q
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from pipeline import cli, names
from pipeline.config import RunConfig
from pipeline.runs import tracking
from pipeline.serving import explain, faithfulness, predict
from pipeline.training import data, figures, models


def png(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture[0]).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def test_split():
    split = data.load(RunConfig(dataset="digits")).test
    return split.images.numpy(), split.labels.numpy()


@pytest.fixture(scope="module")
def explainers(trained_runs) -> dict[str, explain.Explainer]:
    """The logged cnn and mlp, rebuilt to be explained (what the playground and the CLI use)."""
    return {"cnn": explain.for_predictor(predict.load(f"runs:/{trained_runs[0]}/model")),
            "mlp": explain.for_predictor(predict.load(f"runs:/{trained_runs[2]}/model"))}


def random_twin(trained: explain.Explainer) -> explain.Explainer:
    pre = trained.preprocessing
    torch.manual_seed(0)
    return explain.Explainer(models.build(pre.model, pre.channels, pre.image_size, len(pre.classes)), pre)


def test_explanations_of_a_registered_model_follow_its_predictions(trained_run, test_split):
    images, _ = test_split
    sources = [png(img) for img in images[:20]]
    uri = "models:/digits-cnn/1"
    model = predict.load(uri)
    maps = explain.explain(uri, sources)
    assert [e.label for e in maps] == [p.label for p in model.predict(sources)]
    assert all(e.method == explain.GRADCAM and e.attribution.shape == (8, 8) for e in maps)
    assert all(-1 <= e.heat.min() and e.heat.max() <= 1 for e in maps)
    rebuilt = explain.rebuild(model)  # the eager twin of the pt2 program: the very same logits
    with torch.no_grad():
        assert torch.allclose(rebuilt(model.preprocessing.normalize(images)), model.logits(images), atol=1e-5)
    [for_three] = explain.explain(uri, sources[:1], target="3")
    assert for_three.label == "3"
    with pytest.raises(explain.ClassNotFoundError, match="no class 'cat'"):
        explain.explain(uri, sources[:1], target="cat")


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_maps_pass_the_randomization_and_deletion_checks(arch, explainers, test_split):
    images, _ = test_split
    trained = explainers[arch]
    assert trained.method == (explain.GRADCAM if arch == "cnn" else explain.INTEGRATED_GRADIENTS)
    correlation = faithfulness.randomization(trained, random_twin(trained), images[:100])
    salient, random = faithfulness.deletion(trained, images)
    print(f"{arch}: rank correlation with random weights {correlation:.2f}; "
          f"deleting 20% salient pixels drops p by {salient:.3f}, random pixels by {random:.3f}")
    assert correlation < 0.5  # Adebayo et al.: a method blind to the weights stays near 1
    assert salient > 1.5 * random


def test_grad_cam_maps_are_never_negative_and_integrated_gradients_keep_the_sign(explainers, test_split):
    images, _ = test_split
    cam, ig = explainers["cnn"].explain(images[:50]), explainers["mlp"].explain(images[:50])
    assert all(e.attribution.min() >= 0 for e in cam) and not any(e.signed for e in cam)  # Captum's ReLU
    assert sum((e.attribution < 0).any() for e in ig) >= 45 and all(e.signed for e in ig)  # blue is drawn


def test_the_method_follows_the_size_of_the_last_block():
    def method(arch: str, side: int, channels: int = 1) -> str:
        pre = predict.Preprocessing(tuple("0123456789"), channels, (side, side), (0.5,) * channels,
                                    (0.25,) * channels, model=arch)
        return explain.Explainer(models.build(arch, channels, (side, side), 10), pre).method

    assert method("resnet18", 8) == explain.INTEGRATED_GRADIENTS  # layer4 is 1x1: Grad-CAM would be flat
    assert method("resnet18", 64, 3) == explain.GRADCAM
    assert method("mobilenet_v3_small", 8) == explain.INTEGRATED_GRADIENTS


def test_an_overlay_leaves_unexplained_pixels_alone_and_colors_evidence():
    gray = np.full((1, 4, 4), 100, dtype=np.uint8)
    heat = np.zeros((2, 2), dtype=np.float32)
    assert (figures.overlay(gray, heat) == 100).all()
    heat[0, 0], heat[1, 1] = 1.0, -1.0
    out = figures.overlay(gray, heat).astype(int)
    assert out[0, 0, 0] > out[0, 0, 2] and out[3, 3, 2] > out[3, 3, 0]  # red for, blue against


def test_predict_explain_writes_one_png_per_image_and_keeps_errors(trained_run, test_split, tmp_path, capsys):
    images, _ = test_split
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"digit{i}.png")
        paths[-1].write_bytes(png(images[i]))
    (tmp_path / "notes.png").write_bytes(b"not an image")
    out = tmp_path / "maps"
    code = cli.main(["predict", "models:/digits-cnn/1", *map(str, paths), str(tmp_path / "notes.png"),
                     "--explain", str(out)])
    captured = capsys.readouterr()
    assert code == 1 and "notes.png: not an image" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["digit0.png", "digit1.png"]
    assert Image.open(out / "digit0.png").size[0] > 100
    code = cli.main(["predict", "models:/digits-cnn/1", str(paths[0]), "--explain", str(tmp_path / "other"),
                     "--explain-class", "cat"])
    assert code == 2 and "no class 'cat'" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_every_run_logs_its_mistakes_explained(trained_run):
    client: MlflowClient = tracking.connect()
    listed = {f.path for f in client.list_artifacts(trained_run, "evaluation")}
    assert {names.EXPLANATIONS_PNG, names.EXPLANATIONS_NPZ} <= listed
    local = client.download_artifacts(trained_run, names.EXPLANATIONS_NPZ)
    with np.load(local, allow_pickle=False) as arrays:
        k = len(arrays["labels"])
        assert 0 < k <= figures.EXPLAINED_SHOWN and (arrays["labels"] != arrays["predictions"]).all()
        assert arrays["for_predicted"].shape == arrays["for_true"].shape == (k, 8, 8)
        assert arrays["images"].shape == (k, 1, 8, 8) and str(arrays["method"]) == explain.GRADCAM
        assert list(arrays["classes"]) == [str(i) for i in range(10)]
