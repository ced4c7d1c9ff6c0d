"""Exported variants in the dashboard: the Registry page's table and Export action, the playground's variant pick.

Uses the session's `exported` fixture (tests/conftest.py: digits-cnn v1 exported, its variants registered as
digits-cnn-variants v1 onnx and v2 int8). Run: .venv/bin/python -m pytest tests/dashboard/test_variants.py -q
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import store
from tests.dashboard.conftest import figures
from pipeline import names
from pipeline.serving import predict

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = str(ROOT / "dashboard" / "views" / "registry.py")
PLAYGROUND = str(ROOT / "dashboard" / "views" / "playground.py")


@pytest.fixture(autouse=True)
def fresh(exported):
    store.forget_model_versions()
    store.forget_model_variants()
    yield


def pick(at: AppTest, name: str, version: int) -> AppTest:
    box = at.selectbox(key="variants_version")
    return box.select_index(next(i for i, o in enumerate(box.options) if o.startswith(f"{name} v{version} "))).run()


def test_the_registry_shows_original_onnx_and_int8_with_ratios(exported):
    at = AppTest.from_file(REGISTRY, default_timeout=120).run()
    at = pick(at, "digits-cnn", 1)
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "variant" in d.value.columns)
    assert table["variant"].tolist() == [names.ORIGINAL, names.ONNX, names.INT8]
    assert table["size ×"].tolist()[0] == 1.0 and table["size ×"].tolist()[2] < 0.5
    int8 = next(v for v in exported.variants if v.variant == names.INT8)
    assert table["test accuracy"].tolist()[2] == pytest.approx(int8.metrics[names.TEST_ACCURACY])
    assert table["run"].tolist()[2] == f"run_detail?run={int8.run_id}"


def test_export_refused_in_the_background_is_one_line_on_the_page(exported):
    at = AppTest.from_file(REGISTRY, default_timeout=120).run()
    at = pick(at, "digits-cnn-variants", 2)
    assert any("has not been exported yet" in c.value for c in at.caption)
    at = at.button(key="variants_export").click().run()
    deadline = time.monotonic() + 180
    while not at.error and time.monotonic() < deadline:  # the fragment polls the child process
        time.sleep(1)
        at = at.run()
    assert not at.exception, [e.value for e in at.exception]
    [error] = [e.value for e in at.error]
    assert "already an exported variant: export its source models:/digits-cnn/1" in error and "\n" not in error


def test_the_playground_predicts_with_a_variant(exported):
    at = AppTest.from_file(PLAYGROUND, default_timeout=180)
    at.query_params.update(model="digits-cnn", ref="1")
    at = at.run()
    at = at.radio(key="pg_variant_a_digits-cnn_1").set_value(names.INT8).run()
    sample = next(b for b in at.button if b.key.startswith("pg_sample_"))
    name = sample.key.removeprefix("pg_sample_")
    at = sample.click().run()
    assert not at.exception, [e.value for e in at.exception]
    int8 = next(v for v in exported.variants if v.variant == names.INT8)
    [expected] = predict.load(int8.model_uri).predict([at.session_state["pg_samples"][name]])
    [shown] = [m for m in at.metric if m.label == "Prediction"]
    assert shown.value == expected.label
    assert any("digits-cnn v1 · int8" in m.value for m in at.markdown)


def test_a_version_against_its_own_int8_variant_is_compared_and_explained_through_its_source(exported):
    at = AppTest.from_file(PLAYGROUND, default_timeout=180)
    at.query_params.update(model="digits-cnn", ref="1")
    at = at.run()
    at = at.toggle(key="pg_compare").set_value(True).run()
    at = at.selectbox(key="pg_model_b").set_value("digits-cnn").run()
    at = at.selectbox(key="pg_ref_b_digits-cnn").set_value("v1").run()
    assert any("Both sides are digits-cnn v1" in i.value for i in at.info)  # truly the same model: said
    at = at.radio(key="pg_variant_b_digits-cnn_1").set_value(names.INT8).run()
    assert not any("Both sides" in i.value for i in at.info)  # v1 against its int8 variant is a comparison
    at = next(b for b in at.button if b.key.startswith("pg_sample_")).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any("cannot be explained" in i.value for i in at.info)
    maps = [f["layout"]["title"]["text"] for f in figures(at) if any(t.get("type") == "heatmap" for t in f["data"])]
    assert maps == ["digits-cnn v1", "model input", "digits-cnn v1, source of int8", "model input"]
    [via] = [c.value for c in at.caption if "explained through its source" in c.value]
    assert via.startswith("digits-cnn v1 · int8 is an exported ONNX graph, explained through its source model "
                          "digits-cnn v1: ") and via.count("digits-cnn v1 · int8") == 1
