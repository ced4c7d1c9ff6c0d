"""ONNX and int8 variants of registered versions: export, evaluation against the original, logging, refusals,
and predictions through the CLI and the playground's code path.

Against the session's real store (tests/conftest.py: `trained_run` is the registered digits cnn, `exported`
its variants). Run: .venv/bin/python -m pytest tests/test_export.py -q
"""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.models import get_model_info
from PIL import Image

from pipeline import names
from pipeline.cli import main
from pipeline.config import RunConfig
from pipeline.runs import tracking, train
from pipeline.serving import export, predict
from pipeline.training import data as datasets


# labels of the 359 digits test images a variant may change, fixed from measurements rather than from the
# export's own agreement figure: ONNX changes none (max logit difference ~3e-6); int8 changed none of the
# 359 for the 2-epoch cnn of seeds 0, 1 and 2 (bench, 3 epochs: none either); 3 (0.8 %) allows for other CPUs
MAX_CHANGED_LABELS = {names.ONNX: 0, names.INT8: 3}


@pytest.fixture(scope="module")
def test_split(trained_run):
    test = datasets.load(RunConfig.from_params(MlflowClient().get_run(trained_run).data.params)).test
    return test.images.numpy(), test.labels.numpy()


def pngs(images: np.ndarray) -> list[bytes]:
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image[0]).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def by_variant(report: export.Report) -> dict[str, export.Variant]:
    return {v.variant: v for v in [report.original] + report.variants}


# --- export and evaluation ------------------------------------------------------------------------

def test_cnn_variants_match_the_original(exported):
    v = by_variant(exported)
    original, onnx, int8 = (v[k].metrics for k in (names.ORIGINAL, names.ONNX, names.INT8))
    assert onnx[names.MAX_LOGIT_DIFF] < 1e-4 and onnx[names.AGREEMENT] == 1.0
    assert onnx[names.TEST_ACCURACY] == original[names.TEST_ACCURACY]
    changed = round(abs(int8[names.TEST_ACCURACY] - original[names.TEST_ACCURACY]) * 359)  # of 359 test images
    assert changed <= MAX_CHANGED_LABELS[names.INT8]
    assert 0 < int8[names.MODEL_SIZE] < 0.5 * onnx[names.MODEL_SIZE]  # int8 weights: about a quarter
    for metrics in (original, onnx, int8):
        assert all(metrics[k] > 0 for k in names.LATENCY_METRICS)
    logged = MlflowClient().get_run(exported.variants[0].run_id).data.metrics
    assert logged[names.ORIGINAL_PREFIX + names.TEST_ACCURACY] == pytest.approx(original[names.TEST_ACCURACY])


def test_each_variant_is_logged_in_its_own_run_linked_to_the_source(exported, trained_run):
    client = MlflowClient()
    source_meta = get_model_info("models:/digits-cnn/1").metadata
    for v in exported.variants:
        run = client.get_run(v.run_id)
        assert run.info.status == names.FINISHED
        assert run.data.tags[names.TAG_EXPORT_SOURCE] == "models:/digits-cnn/1"
        assert run.data.tags[names.TAG_VARIANT] == v.variant
        assert run.data.metrics[names.MAX_LOGIT_DIFF] == pytest.approx(v.metrics[names.MAX_LOGIT_DIFF])
        info = get_model_info(v.model_uri)
        assert set(info.flavors) == {"onnx", "python_function"}
        assert info.metadata[names.PREPROCESSING_KEY] == source_meta[names.PREPROCESSING_KEY]
        assert info.metadata[names.VARIANT_KEY] == v.variant
    assert [v.registered for v in exported.variants] == [f"models:/digits-cnn-variants/{n}" for n in (1, 2)]
    rows = export.variants_of(client, "models:/digits-cnn/1")
    assert [r["variant"] for r in rows] == [names.ORIGINAL, names.ONNX, names.INT8]
    assert rows[0][names.MODEL_SIZE] == exported.original.metrics[names.MODEL_SIZE]
    assert export.variants_of(client, "models:/digits-cnn/99") == []


@pytest.mark.parametrize("model, int8", [("mlp", True), ("mobilenet_v3_small", False)])  # mobilenet: the
def test_other_architectures_export_within_tolerance(store, model, int8):               # slow export only
    name = f"export-{model}"
    train.run(RunConfig(dataset="digits", model=model, epochs=1, batch_size=128, experiment="tests-export",
                        run_name=f"tiny-{model}", register=name), progress=False)
    report = export.export(f"models:/{name}/1", int8=int8, runs=2)
    v = by_variant(report)
    assert v[names.ONNX].metrics[names.MAX_LOGIT_DIFF] < 1e-4 and v[names.ONNX].metrics[names.AGREEMENT] == 1.0
    assert [x.variant for x in report.variants] == [names.ONNX] + [names.INT8] * int8
    if int8:
        assert v[names.INT8].metrics[names.MODEL_SIZE] < v[names.ONNX].metrics[names.MODEL_SIZE]
        assert v[names.INT8].metrics[names.AGREEMENT] > 0.8


# --- predictions with variants --------------------------------------------------------------------

def test_variants_predict_like_the_original_within_a_fixed_number_of_images(exported, test_split):
    """The playground's code path (predict.load + predict_many) on the whole test split, as PNG uploads.

    The bound is fixed here, not read from the export's own agreement metric, which is checked against it."""
    images, labels = test_split
    items = list(enumerate(pngs(images)))
    original = [r.prediction.label for r in predict.predict_many(predict.load("models:/digits-cnn/1"), items)]
    for v in exported.variants:
        model = predict.load(v.model_uri)
        assert isinstance(model, predict.OnnxPredictor) and model.ref.label == f"digits-cnn v1 · {v.variant}"
        got = [r.prediction.label for r in predict.predict_many(model, items)]
        differ = sum(a != b for a, b in zip(got, original))
        assert differ <= MAX_CHANGED_LABELS[v.variant], (v.variant, differ)
        assert v.metrics[names.AGREEMENT] == pytest.approx(1 - differ / len(items)), v.variant  # same images
    registered = predict.load("models:/digits-cnn-variants/2")
    assert registered.ref.label == "digits-cnn-variants v2 · int8"


def test_variants_through_the_cli(exported, test_split, tmp_path, capsys):
    images, _ = test_split
    paths = []
    for i, png in enumerate(pngs(images[:40])):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png)
    answers = {}
    for uri in ["models:/digits-cnn/1", "models:/digits-cnn-variants/2", exported.variants[0].model_uri]:
        assert main(["predict", uri, *map(str, paths), "--json"]) == 0
        answers[uri] = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    [original, int8, onnx] = answers.values()
    assert onnx == original
    assert sum(a != b for a, b in zip(int8, original)) <= MAX_CHANGED_LABELS[names.INT8]


# --- refusals -------------------------------------------------------------------------------------

def test_a_variant_is_refused_with_one_line(exported, capsys):
    with pytest.raises(export.ExportError, match="already an exported variant: export its source models:/digits-cnn/1"):
        export.export("models:/digits-cnn-variants/2")
    assert main(["export", "models:/digits-cnn-variants/1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: digits-cnn-variants v1 · onnx is already an exported variant") and "\n" not in err


def test_missing_versions_and_runs_without_data_are_refused(trained_run, capsys):
    assert main(["export", "models:/digits-cnn/42", "--quiet"]) == 2
    assert "version 42 does not exist" in capsys.readouterr().err
    client = tracking.connect()
    run_id = client.create_run(tracking.experiment_id(client, "tests-export")).info.run_id
    client.set_terminated(run_id, "FINISHED")  # a finished run that logged no model
    with pytest.raises(predict.ModelError, match="has no model logged"):
        export.export(f"runs:/{run_id}/model", client=client)


def test_what_the_quantizer_cannot_read_is_refused_in_one_line():
    with pytest.raises(export.ExportError, match=r"^m v1: cannot be quantized to int8 \(\w+: ") as e:
        export._refusing("m v1: cannot be quantized to int8", export.to_int8, b"not onnx",
                         np.zeros((2, 1, 8, 8), np.float32))
    assert "\n" not in str(e.value)


def test_a_variant_is_not_explained_but_says_why(exported):
    from pipeline.serving import explain

    variant = predict.load(exported.variants[0].model_uri)
    with pytest.raises(predict.ModelError, match="ONNX variant has no PyTorch weights to explain"):
        explain.for_predictor(variant)
