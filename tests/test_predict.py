"""Predictions from logged models: loading by alias/version/run, preparation, errors, the CLI.

Against the session's real store and its tiny trained digits run (tests/conftest.py); registry
names used here are this file's own, so other tests' models are untouched.
Run: .venv/bin/python -m pytest tests/test_predict.py -q
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from pipeline import names
from pipeline.training import data as datasets
from pipeline.serving import predict, registry
from pipeline.training import engine, evaluation
from pipeline.cli import main
from pipeline.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
NAME = "predict-tests"


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def registered(trained_run) -> str:
    """trained_run's model as version 1 of NAME, with @champion on it."""
    version = registry.register_run(trained_run, NAME)
    registry.set_alias(NAME, registry.CHAMPION, version.version)
    return trained_run


@pytest.fixture(scope="module")
def model(registered, monkeypatch_module) -> predict.Predictor:
    monkeypatch_module.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")  # pt2 needs no pickle
    return predict.load(f"models:/{NAME}@champion")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def digits(trained_run) -> datasets.ImageData:
    params = MlflowClient().get_run(trained_run).data.params
    return datasets.load(RunConfig.from_params(params))


# --- loading ----------------------------------------------------------------------------------------

def test_every_uri_form_pins_the_same_logged_model(model, registered):
    assert model.ref.label == f"{NAME} v1 @champion" and model.ref.load_uri == f"models:/{NAME}/1"
    assert model.ref.run_id == registered
    for uri in (f"models:/{NAME}/1", f"models:/{NAME}/latest", f"runs:/{registered}/model"):
        other = predict.load(uri)
        assert other.ref.run_id == registered
        assert other.preprocessing == model.preprocessing
    assert isinstance(model.module, torch.fx.GraphModule)  # the exported pt2 graph, not a pickle


def test_preprocessing_comes_from_the_logged_metadata(model, digits):
    pre = model.preprocessing
    assert pre.classes == tuple(digits.classes) and pre.channels == 1 and pre.image_size == (8, 8)
    assert pre.mean == pytest.approx(digits.mean) and pre.std == pytest.approx(digits.std)
    assert (pre.dataset, pre.model) == ("digits", "cnn")


@pytest.mark.parametrize("uri, message", [
    ("models:/no-such-model@champion", "no registered model named 'no-such-model'"),
    ("models:/no-such-model/1", "no registered model named 'no-such-model'"),
    (f"models:/{NAME}/99", "version 99 does not exist.*versions: 1"),
    (f"models:/{NAME}@nobody", "has no alias @nobody; aliases: @champion \\(v1\\)"),
    (f"models:/{NAME}/one", "must be a number"),
    ("runs:/0123456789abcdef/model", "no run with id 0123456789abcdef"),
    ("s3://bucket/model", "use models:/NAME@ALIAS"),
])
def test_clear_errors_for_what_does_not_exist(registered, uri, message):
    with pytest.raises(predict.ModelError, match=message):
        predict.load(uri)


def test_a_run_without_that_model_path(registered):
    with pytest.raises(predict.ModelNotFoundError, match="has no model logged as 'nothing'"):
        predict.load(f"runs:/{registered}/nothing")


def test_a_version_deleted_after_loading_it_once(registered):
    name = "predict-tests-deleted"
    version = registry.register_run(registered, name)
    predict.load(f"models:/{name}/{version.version}")
    MlflowClient().delete_model_version(name, str(version.version))  # also drops its aliases
    with pytest.raises(predict.ModelNotFoundError, match="does not exist \\(deleted\\?\\)"):
        predict.load(f"models:/{name}/{version.version}")


def test_metadata_without_preprocessing_is_refused():
    with pytest.raises(predict.ModelError, match="not logged by Runboard"):
        predict.Preprocessing.from_metadata({"other": 1}, "someone's model")
    with pytest.raises(predict.ModelError, match="unusable"):
        predict.Preprocessing.from_metadata({names.PREPROCESSING_KEY: {"classes": ["a"]}})


# --- predictions ------------------------------------------------------------------------------------

class _Exported(torch.nn.Module):
    """The logged graph under evaluation.evaluate, which calls .eval(): an exported graph is already in
    eval mode (batch norm and dropout were frozen at export) and refuses the call."""

    def __init__(self, graph):
        super().__init__()
        self.graph = graph

    def train(self, mode: bool = True):
        return self

    def forward(self, x):
        return self.graph(x)


def test_test_split_predictions_equal_the_pipelines_own_evaluation(model, digits, registered):
    """Each test image, as an uploaded PNG through the playground's path, gets the evaluation's answer."""
    test = digits.test
    cpu = torch.device("cpu")
    scored = evaluation.evaluate(_Exported(model.module), test, engine.Normalizer(digits.mean, digits.std, cpu), cpu)
    uploads = [(f"test-{i}.png", png(test.images[i, 0].numpy())) for i in range(len(test))]
    results = predict.predict_many(model, uploads, top=3)
    assert [r.prediction.label for r in results] == [digits.classes[i] for i in scored.predictions]
    probabilities = np.array([r.prediction.probabilities for r in results])
    np.testing.assert_allclose(probabilities, scored.probabilities, atol=1e-5)
    # and the confusion matrix the training run logged is rebuilt exactly from these predictions
    logged = MlflowClient().download_artifacts(registered, "evaluation/confusion_matrix.json")
    matrix = np.zeros((10, 10), dtype=int)
    for true, r in zip(test.labels.tolist(), results):
        matrix[true, digits.classes.index(r.prediction.label)] += 1
    assert matrix.tolist() == json.loads(Path(logged).read_text())["matrix"]


def test_a_batch_of_one_works_and_matches_the_batch(model, digits):
    arrays = [digits.test.images[i, 0].numpy() for i in range(5)]
    together = model.predict([png(a) for a in arrays], top=10)
    for array, joint in zip(arrays, together):
        [alone] = model.predict([png(array)], top=10)
        assert alone.label == joint.label
        assert alone.probabilities == pytest.approx(joint.probabilities, abs=1e-6)


def test_probabilities_and_top_k(model, digits):
    [p] = model.predict([png(digits.test.images[0, 0].numpy())], top=4)
    assert sum(p.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert len(p.top) == 4 and p.top[0] == (p.label, p.probability)
    assert [q for _, q in p.top] == sorted((q for _, q in p.top), reverse=True)
    assert p.probability == max(p.probabilities)
    [everything] = model.predict([png(digits.test.images[0, 0].numpy())], top=50)
    assert len(everything.top) == 10  # k is clipped to the number of classes
    assert p.to_json("x.png")["top"][0] == [p.label, round(p.probability, 6)]


def test_pil_images_bytes_and_paths_give_the_same_answer(model, tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (20, 20, 3), dtype=np.uint8)  # RGB, other size
    path = tmp_path / "x.png"
    path.write_bytes(png(pixels))
    answers = model.predict([Image.fromarray(pixels), png(pixels), path, str(path)])
    assert len({a.label for a in answers}) == 1 and len({a.probabilities for a in answers}) == 1
    assert model.prepare([path]).shape == (1, 1, 8, 8)


def test_predict_many_reports_bad_images_and_predicts_the_rest(model, tmp_path):
    good = png(np.zeros((8, 8), dtype=np.uint8))
    items = [("good.png", good), ("text.png", b"hello"), ("empty.png", b""), ("big.png", good + b"\0" * 2048),
             ("missing.png", str(tmp_path / "missing.png"))]
    results = predict.predict_many(model, items, max_bytes=1024)
    assert results[0].prediction and results[0].prepared.shape == (1, 8, 8) and not results[0].error
    assert "not an image" in results[1].error and "empty file" in results[2].error
    assert "over the upload limit" in results[3].error and "No such file" in results[4].error
    assert all(r.prediction is None for r in results[1:])


def test_nothing_usable_predicts_nothing(model):
    assert [r.error != "" for r in predict.predict_many(model, [("a", b"")])] == [True]


# --- the CLI ----------------------------------------------------------------------------------------

def test_cli_json_one_line_per_image_and_non_zero_exit_on_a_bad_file(registered, digits, tmp_path):
    seven = int(np.flatnonzero(digits.test.labels.numpy() == 7)[0])
    good, bad = tmp_path / "seven.png", tmp_path / "notes.png"
    good.write_bytes(png(digits.test.images[seven, 0].numpy()))
    bad.write_text("not an image")
    done = subprocess.run([sys.executable, "-m", "pipeline", "predict", f"models:/{NAME}@champion",
                           str(good), str(bad), "--json", "--top", "2"],
                          cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 2
    assert set(lines[0]) == {"image", "label", "probability", "top"} and lines[0]["image"] == str(good)
    assert len(lines[0]["top"]) == 2 and lines[0]["top"][0] == [lines[0]["label"], lines[0]["probability"]]
    assert lines[1] == {"image": str(bad), "error": "not an image, or in a format that cannot be read"}


def test_cli_text_output_and_exit_codes(registered, tmp_path, capsys):
    good = tmp_path / "a.png"
    good.write_bytes(png(np.zeros((8, 8), dtype=np.uint8)))
    assert main(["predict", f"models:/{NAME}/1", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{good}: ") and "top: " in out
    assert main(["predict", f"models:/{NAME}@nobody", str(good)]) == 2
    assert "has no alias @nobody" in capsys.readouterr().err
    assert main(["predict", f"models:/{NAME}/1", str(good), "--top", "0"]) == 2
    assert main(["predict", f"models:/{NAME}/1", str(tmp_path / "gone.png")]) == 1
    assert "gone.png" in capsys.readouterr().err
