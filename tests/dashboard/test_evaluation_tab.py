"""The trust figures through AppTest: the Evaluation tab's reliability diagram and PR/ROC curves, the Compare
evaluation tab's paired test and galleries, the Registry's sentence before an alias moves, and the
playground's calibrated probabilities; all from real runs' logged files.

Run: .venv/bin/python -m pytest tests/dashboard/test_evaluation_tab.py -q
"""
from __future__ import annotations

import dataclasses
import json

import pytest
from mlflow import MlflowClient
from scipy.special import softmax
from streamlit.testing.v1 import AppTest

from dashboard import store
from pipeline import names
from pipeline.serving import paired, predict, registry
from tests.dashboard.conftest import APP, figures, open_page, plotted

pytestmark = pytest.mark.usefixtures("edge_runs")
NAME = "evaluation-tab-tests"


def titled(at, text: str) -> list[dict]:
    return [f for f in figures(at) if text in ((f["layout"].get("title") or {}).get("text") or "")]


def logged_calibration(run_id: str) -> dict:
    client = MlflowClient()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(open(client.download_artifacts(run_id, names.CALIBRATION_JSON, tmp)).read())


def test_the_evaluation_tab_shows_the_reliability_diagram_and_curves(trained_run):
    at = open_page("run_detail", run=trained_run)
    assert not at.exception and not at.error
    report = logged_calibration(trained_run)
    [diagram] = titled(at, "Reliability diagram")
    bars = next(t for t in diagram["data"] if t["type"] == "bar")
    assert sum(int(t.removeprefix("n=")) for t in bars["text"]) == 359  # every test image in one bin
    assert plotted(bars["y"]) == pytest.approx([b["accuracy"] for b in report["bins"] if b["count"]])
    shown = {m.label: m.value for m in at.metric}
    assert shown["ECE"] == f"{report['ece']:.3f}" and shown["ECE after temperature"] == f"{report['ece_after_temperature']:.3f}"
    pr, roc = titled(at, "Precision-recall, one vs rest")[0], titled(at, "ROC, one vs rest")[0]
    assert len([t for t in pr["data"] if "AP" in t["name"]]) == 10 and len([t for t in roc["data"] if "AUC" in t["name"]]) == 10
    at.multiselect(key="trust_classes").set_value(["3", "8"]).run()
    roc = titled(at, "ROC, one vs rest")[0]
    assert [t["name"].split(" ")[0] for t in roc["data"] if "AUC" in t["name"]] == ["3", "8"]
    kept = paired.arrays(store.artifact_bytes(trained_run, names.PREDICTIONS_NPZ, 0))
    [points] = titled(at, "Embedding map")
    rows = sorted(r for t in points["data"] for r in plotted(t["customdata"]))
    crosses = sum(s == "x" for t in points["data"] for s in t["marker"]["symbol"])
    assert rows == list(range(359)) and crosses == int((kept["predicted"] != kept["labels"]).sum())
    at.toggle(key="trust_after").set_value(True).run()
    assert any(t["name"] == "after temperature scaling" for t in titled(at, "Reliability diagram")[0]["data"])


def test_a_run_without_kept_predictions_says_so_in_place(edge_runs):
    at = open_page("run_detail", run=edge_runs["unevaluated"])
    assert not at.exception
    assert not titled(at, "Reliability diagram")


def test_compare_evaluation_shows_the_paired_test_and_galleries(trained_runs):
    run, other = trained_runs[0], trained_runs[2]  # cnn, compared with the mlp
    at = open_page("run_detail", run=run, vs=other)
    assert not at.exception and not at.error
    expected = paired.compare(*(paired.load(MlflowClient(), r) for r in (other, run)))
    sentence = paired.sentence(dataclasses.replace(expected, a="tiny-mlp", b="tiny-cnn"))
    assert sentence in " ".join(str(e.value) for e in (*at.success, *at.info))
    table = next(d.value for d in at.dataframe if "tiny-cnn right" in d.value.columns)
    assert int(table.iloc[0, 1]) == expected.only_a and int(table.iloc[1, 0]) == expected.only_b
    assert len(titled(at, "· ECE")) == 2
    words = " ".join(m.value for m in at.markdown)
    assert f"Only tiny-mlp right** ({expected.only_a} images; A = tiny-mlp, B = tiny-cnn)" in words
    assert f"Only tiny-cnn right** ({expected.only_b} images; A = tiny-mlp, B = tiny-cnn)" in words
    assert len(at.image) >= min(24, expected.only_a) + min(24, expected.only_b)


@pytest.fixture(scope="module")
def registered(trained_runs) -> str:
    """Two versions of one model, v1 the champion: the Registry and playground tests share it in any order."""
    registry.register_run(trained_runs[0], NAME)
    registry.register_run(trained_runs[2], NAME)
    registry.set_alias(NAME, registry.CHAMPION, 1)
    return NAME


def test_the_registry_says_whether_a_move_is_a_real_difference(registered):
    store.forget_model_versions()
    at = AppTest.from_file(str(APP.parent / "views" / "registry.py"), default_timeout=120).run()
    at.selectbox(key="alias_model").set_value(NAME).run()
    at.selectbox(key=f"alias_version_{NAME}_champion").set_value(2).run()
    assert not at.exception
    said = " ".join(str(e.value) for e in (*at.info, *at.success))
    assert "v2 vs v1 on the same 359 images:" in said and "points (95 % CI" in said
    assert "scored lower" in at.warning[0].value  # the existing confirmation stays beside it


def test_the_playground_shows_calibrated_probabilities_and_says_so(registered):
    store.forget_model_versions()
    at = AppTest.from_file(str(APP.parent / "views" / "playground.py"), default_timeout=180)
    at.query_params.update(model=NAME, ref="1")
    at = at.run()
    at = next(b for b in at.button if b.key.startswith("pg_sample_")).click().run()
    assert any(c.value == "Probabilities: raw softmax" for c in at.caption)
    at = at.toggle(key="pg_calibrated").set_value(True).run()
    assert not at.exception
    model = predict.load(f"models:/{NAME}/1")
    png = next(iter(at.session_state["pg_samples"].values()))
    logits = model.logits(model.prepare([png])).numpy()
    expected = softmax(logits / model.preprocessing.temperature, axis=1).max()
    shown = next(m for m in at.metric if m.label == "Prediction").delta
    assert f"{expected:.1%}" in shown
    assert any(c.value.startswith("Probabilities: calibrated (temperature ") for c in at.caption)
