"""Pruned variants in the dashboard: their rows and the sparsity-vs-accuracy chart on the Registry page,
"Prune…" queueing a job (and refusing a variant as a source), and the playground predicting with one.

Uses the session's `pruned` fixture (tests/conftest.py: prune-cnn v1 pruned by channels:0.5, with int8).
Run: .venv/bin/python -m pytest tests/dashboard/test_prune_page.py -q
"""
from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from streamlit.testing.v1 import AppTest

from dashboard import store
from pipeline import names
from pipeline.queue import jobs
from pipeline.serving import predict
from tests.dashboard.conftest import figures

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = str(ROOT / "dashboard" / "views" / "registry.py")
PLAYGROUND = str(ROOT / "dashboard" / "views" / "playground.py")


@pytest.fixture(autouse=True)
def fresh(pruned):
    store.forget_model_versions()
    store.forget_model_variants()
    store.forget_prune_jobs()
    yield


def pick(at: AppTest, name: str, version: int) -> AppTest:
    box = at.selectbox(key="variants_version")
    return box.select_index(next(i for i, o in enumerate(box.options) if o.startswith(f"{name} v{version} "))).run()


def test_the_registry_shows_pruned_rows_and_the_sparsity_chart(pruned):
    at = pick(AppTest.from_file(REGISTRY, default_timeout=120).run(), "prune-cnn", 1)
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "variant" in d.value.columns)
    rows = table.set_index("variant")
    assert {names.ORIGINAL, "channels:0.5", "channels:0.5+int8"} <= set(rows.index)
    channels = pruned.variants[0].metrics
    assert rows.loc["channels:0.5", "sparsity"] == pytest.approx(channels[names.SPARSITY])
    assert rows.loc["channels:0.5", "parameters"] == channels[names.PARAMETERS]
    assert rows.loc[names.ORIGINAL, "parameters"] == pruned.original.metrics[names.PARAMETERS]
    assert rows.loc["channels:0.5+int8", "size ×"] < rows.loc["channels:0.5", "size ×"] < 1
    for column in ("test accuracy", "agreement", "max prob. diff", "1 image p50 (ms)", "64 images p95 (ms)"):
        assert rows.loc["channels:0.5", column] == rows.loc["channels:0.5", column]  # not NaN
    [chart] = [f for f in figures(at) if f["layout"].get("title", {}).get("text") == "Sparsity vs accuracy"]
    shown = {text: x for trace in chart["data"] for text, x in zip(trace["text"], trace["x"])}
    assert shown["channels:0.5"] == pytest.approx(channels[names.SPARSITY]) and shown[names.ORIGINAL] == 0


def test_prune_queues_a_job_for_the_worker_and_shows_it(pruned):
    at = pick(AppTest.from_file(REGISTRY, default_timeout=120).run(), "prune-cnn", 1)
    at = at.radio(key="prune_kind_prune-cnn_1").set_value("weights").run()
    at = at.slider(key="prune_ratio_prune-cnn_1").set_value(0.9).run()
    at = at.button(key="prune_submit_prune-cnn_1").click().run()
    assert not at.exception, [e.value for e in at.exception]
    [flash] = [s.value for s in at.success]
    assert flash.startswith("Queued weights:0.9 of prune-cnn v1 as run ")
    client = MlflowClient()
    [job] = [r for r in jobs.unfinished(client, names.EXPORT_EXPERIMENT) if r.data.tags.get(names.TAG_PRUNE)
             == "weights:0.9"]
    try:
        assert job.info.status == names.SCHEDULED and job.data.params["epochs"] == "2"
        assert job.data.tags[names.TAG_EXPORT_SOURCE] == "models:/prune-cnn/1"
        assert any(i.value.startswith("weights:0.9: queued (run ") for i in at.info)
    finally:
        jobs.cancel(job.info.run_id, client)  # no worker of another test trains it
    store.forget_prune_jobs()
    at = at.run()  # the job ended (KILLED): the page says so and stops following it
    assert not any(i.value.startswith("weights:0.9: queued") for i in at.info)
    assert any("weights:0.9 ended KILLED" in e.value for e in at.error)


def test_prune_of_a_variant_is_refused_in_one_line(pruned):
    at = pick(AppTest.from_file(REGISTRY, default_timeout=120).run(), "digits-cnn-pruned", 1)
    at = at.button(key="prune_submit_digits-cnn-pruned_1").click().run()
    [error] = [e.value for e in at.error]
    assert error.startswith("Pruning models:/digits-cnn-pruned/1 refused: ") and "exported variant" in error
    assert "\n" not in error


def test_the_playground_predicts_with_a_pruned_variant(pruned):
    at = AppTest.from_file(PLAYGROUND, default_timeout=180)
    at.query_params.update(model="prune-cnn", ref="1")
    at = at.run()
    radio = at.radio(key="pg_variant_a_prune-cnn_1")
    assert {"channels:0.5", "channels:0.5+int8"} <= set(radio.options)
    at = radio.set_value("channels:0.5").run()
    sample = next(b for b in at.button if b.key.startswith("pg_sample_"))
    name = sample.key.removeprefix("pg_sample_")
    at = sample.click().run()
    assert not at.exception, [e.value for e in at.exception]
    [expected] = predict.load(pruned.variants[0].model_uri).predict([at.session_state["pg_samples"][name]])
    [shown] = [m for m in at.metric if m.label == "Prediction"]
    assert shown.value == expected.label
    assert any("prune-cnn v1 · channels:0.5" in m.value for m in at.markdown)


def test_the_sparsity_chart_puts_flagged_variants_in_their_own_red_trace():
    from dashboard import charts

    rows = [{"variant": names.ORIGINAL, names.TEST_ACCURACY: 0.99},
            {"variant": "channels:0.5", names.SPARSITY: 0.75, names.TEST_ACCURACY: 0.97, "flag": ""},
            {"variant": "channels:0.7", names.SPARSITY: 0.91, names.TEST_ACCURACY: 0.90, "flag": "lost 9 points"},
            {"variant": "weights:0.9", names.SPARSITY: 0.89}]  # not evaluated: left out
    fig = charts.sparsity_accuracy_figure(rows)
    kept, flagged = fig.data
    assert list(kept.text) == [names.ORIGINAL, "channels:0.5"] and list(kept.x) == [0.0, 0.75]
    assert list(flagged.text) == ["channels:0.7"] and flagged.marker.color == "#d62728"
