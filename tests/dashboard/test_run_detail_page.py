"""The run detail page through AppTest: summary, curves, evaluation, two-run comparison, artifacts,
and the runs a page must explain in place (failed, running, unevaluated, deleted, unknown).

Run: .venv/bin/python -m pytest tests/dashboard/test_run_detail_page.py -q
"""
from __future__ import annotations

import json
import re

import pytest

from tests.dashboard.conftest import figures, open_page, texts

pytestmark = pytest.mark.usefixtures("edge_runs")


def titled(at, text: str) -> list[dict]:
    return [f for f in figures(at) if text in (f["layout"].get("title") or {}).get("text", "")]


def test_finished_run_summary_curves_and_evaluation(trained_run):
    at = open_page("run_detail", run=trained_run)
    assert not at.exception and not at.error
    assert at.title[0].value == "tiny-cnn"
    shown = {m.label: m.value for m in at.metric}
    assert shown["device"] == "cpu" and shown["test accuracy"].endswith("%") and shown["epochs"] == "2"
    params = at.dataframe[0].value
    assert dict(zip(params["param"], params["value"]))["model"] == "cnn"
    assert titled(at, "loss") and titled(at, "accuracy") and titled(at, "train_loss_step")
    matrix = titled(at, "correct")[0]
    assert matrix["data"][0]["x"] == [str(i) for i in range(10)]
    assert matrix["layout"]["xaxis"]["title"]["text"] == "predicted"
    per_class = next(d.value for d in at.dataframe if "f1" in d.value.columns)
    assert len(per_class) == 10 and per_class["f1"].is_monotonic_increasing
    confused = next(d.value for d in at.dataframe if "predicted" in d.value.columns)
    assert (confused["true"] != confused["predicted"]).all() and confused["count"].is_monotonic_decreasing
    assert at.image and "wrong" in at.image[0].captions[0]


def test_normalize_toggle_shows_row_percentages(trained_run):
    at = open_page("run_detail", run=trained_run)
    counts = titled(at, "correct")[0]["data"][0]["text"]
    at.toggle(key="normalize").set_value(True).run()
    percentages = titled(at, "correct")[0]["data"][0]["text"]
    assert not any(str(t).endswith("%") for row in counts for t in row)
    assert any(str(t).endswith("%") for row in percentages for t in row)


def test_two_runs_side_by_side_and_difference(trained_runs):
    run, other = trained_runs[0], trained_runs[2]
    at = open_page("run_detail", run=run, vs=other)
    assert at.selectbox(key="vs").value == other
    side = [f for f in figures(at) if f["layout"]["title"]["text"] in ("tiny-cnn", "tiny-mlp")]
    assert len(side) == 2
    at.segmented_control(key="vs_mode").set_value("difference").run()
    assert not at.exception and titled(at, "tiny-cnn − tiny-mlp")


def test_artifacts_download_buttons_and_model_signature(trained_run):
    at = open_page("run_detail", run=trained_run)
    labels = texts(at.markdown)
    for path in ("evaluation/confusion_matrix.json", "evaluation/per_class.json", "evaluation/misclassified.png"):
        assert f"`{path}`" in labels
    assert len(at.download_button) >= 4
    code = texts(at.code)
    assert f"runs:/{trained_run}/model" in code and "(-1, 1, 8, 8)" in code
    assert '"classes"' in at.json[0].proto.body and "image_size" in at.json[0].proto.body


def test_failed_run_shows_reason_and_traceback_in_place(edge_runs):
    at = open_page("run_detail", run=edge_runs["failed"])
    assert not at.exception
    assert "This run failed" in texts(at.error) and "loss became nan at step 17" in texts(at.error)
    assert "Traceback (most recent call last)" in texts(at.code)
    assert "has no confusion matrix" in texts(at.info) and "has no logged model" in texts(at.info)


def test_running_run_explains_the_missing_evaluation(edge_runs):
    at = open_page("run_detail", run=edge_runs["running"])
    assert not at.exception and not at.error
    assert "This run is running" in texts(at.info) and "No evaluation yet" in texts(at.info)
    assert titled(at, "train_loss_step")


def test_run_without_evaluation_still_shows_curves(edge_runs):
    at = open_page("run_detail", run=edge_runs["unevaluated"])
    assert not at.exception and not at.error
    assert "has no confusion matrix" in texts(at.info) and titled(at, "loss")
    at.selectbox(key="vs").set_value(edge_runs["failed"]).run()
    assert not at.exception and "Both runs need a confusion matrix" in texts(at.info)


@pytest.mark.parametrize("which, message", [("deleted", "was deleted on"), ("unknown", "no run")])
def test_deleted_or_unknown_run_is_a_clear_error(edge_runs, which, message):
    at = open_page("run_detail", run=edge_runs.get(which, "0" * 32))
    assert not at.exception and message in texts([*at.error, *at.warning])


def test_without_a_run_in_the_url_a_picker_fills_it(trained_run):
    at = open_page("run_detail")
    at.selectbox(key="pick_run").set_value(trained_run).run()
    assert at.query_params["run"] == trained_run and at.title[0].value == "tiny-cnn"


def test_unreachable_store(unreachable_store):
    at = open_page("run_detail", run="a" * 32)
    assert not at.exception and "cannot be read" in texts(at.error)


def test_a_sweep_page_shows_its_runs_not_training_cells(sweep_runs):
    at = open_page("run_detail", run=sweep_runs["parent"])
    assert not at.exception and not at.error
    shown = {m.label: m.value for m in at.metric}
    assert shown == {"runs": "3", "best test accuracy": "95.0%", "best val accuracy": "85.0%"}
    [progress] = at.get("progress")
    assert progress.proto.text == "2 of 3 ended, 1 queued" and progress.proto.value == 66  # progress, in its bar
    table = at.dataframe[0].value
    assert list(table["name"]) == ["lr-sweep-01 lr=0.01", "lr-sweep-02 lr=0.001", "lr-sweep-03 lr=0.1"]
    links = [link.proto.page for link in at.get("page_link")]
    assert not any("registry" in page for page in links) and any("compare" in page for page in links)


def test_a_sweep_page_says_of_its_runs_what_the_runs_page_says(sweep_runs):
    runs_page = open_page(experiment="dashboard-sweep")
    runs_page.session_state["runs_table_unfolded"] = [sweep_runs["parent"]]
    runs = runs_page.run().dataframe[0].value.set_index("run_id")
    sweep = open_page("run_detail", run=sweep_runs["parent"]).dataframe[0]
    table = sweep.value.set_index("run_id")
    ended = [sweep_runs["run1"], sweep_runs["run2"]]
    assert list(table.loc[ended, "best val acc"]) == pytest.approx([0.81, 0.85])  # read as the Runs page reads it
    assert list(table.loc[ended, "best val acc"]) == list(runs.loc[ended, "best val acc"])
    assert list(table.loc[ended, "test acc"]) == list(runs.loc[ended, "test acc"])
    assert table.loc[sweep_runs["run1"], "training"] == runs.loc[sweep_runs["run1"], "training"] == "12s"
    assert "duration_s" not in table.columns
    config = json.loads(sweep.proto.columns)
    assert config["best val acc"]["type_config"]["format"] == config["test acc"]["type_config"]["format"] == "percent"
    assert sweep.proto.placeholder == "—"


def test_numbers_on_the_run_page_read_one_way(trained_run):
    at = open_page("run_detail", run=trained_run)
    shown = {m.label: m.value for m in at.metric}
    assert re.fullmatch(r"\d{1,3}\.\d%", shown["test accuracy"]) and re.fullmatch(r"\d\.\d{3}", shown["test F1 (macro)"])
    final = next(d.value for d in at.dataframe if "metric" in d.value.columns).set_index("metric")["value"]
    assert final["test_accuracy"] == shown["test accuracy"] and re.fullmatch(r"\d\.\d\de-\d+", final["lr"])
    files = texts(at.markdown)
    assert re.search(r"· \d+\.\d (kB|MB)", files) and not re.search(r"\d,\d{3} bytes", files)  # not 2,932,105 bytes
    assert all(d.proto.placeholder == "—" for d in at.dataframe if {"true", "f1"} & set(d.value.columns))


def test_training_time_and_queue_time_are_apart(sweep_runs):
    at = open_page("run_detail", run=sweep_runs["run1"])
    shown = {m.label: m.value for m in at.metric}
    assert shown["training time"] == "12s" and shown["queued"] == "20s"


def test_an_unknown_vs_run_is_named_and_evaluations_start_in_counts(trained_runs):
    at = open_page("run_detail", run=trained_runs[0], vs="bogus")
    assert not at.exception and "`bogus`" in texts(at.warning)
    at = open_page("run_detail", run=trained_runs[0], vs=trained_runs[2])
    assert at.toggle(key="vs_normalize").value is False and at.toggle(key="normalize").value is False
    at.segmented_control(key="vs_mode").set_value("difference").run()
    [diff] = titled(at, "−")
    title = diff["layout"]["title"]["text"]
    assert "<br>" in title and diff["layout"]["margin"]["t"] >= 70  # two lines, room for both


def test_evaluation_shows_the_mistakes_explained(trained_run):
    at = open_page("run_detail", run=trained_run)
    assert not at.exception
    [caption] = [c for image in at.image for c in image.captions if "why the most confident mistakes were made" in c]
    assert "blue lowered it" not in caption and "Grad-CAM maps have no blue" in caption  # this cnn's maps are >= 0


def test_the_smoothing_slider_says_it_leaves_per_epoch_curves_alone(trained_run):
    at = open_page("run_detail", run=trained_run)
    assert "per-epoch curves" in at.slider(key="detail_smoothing").help
