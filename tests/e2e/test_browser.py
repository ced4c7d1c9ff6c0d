"""The whole product as a person uses it: `make run`, then Chromium through every page.

Run: `make test` (CI), or only these: `.venv/bin/python -m pytest tests/e2e -q`; skip them locally
with `-m "not e2e"`. The steps run in order and share the app, the browser page and `state`.
Screenshots: test-output/e2e/<step>.png.
"""
from __future__ import annotations

import re
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from dashboard.formatting import duration as format_duration
from tests.e2e.steps import (RUN_TIMEOUT_S, choose, fill, grid_text, idle, launch, mlflow,
                             open_page, run_named, select_box, wait_status)

pytestmark = pytest.mark.e2e

EPOCHS = "30"        # long enough (~10-30 s) to open its page while it trains
state: dict[str, str] = {}


# --- the steps -----------------------------------------------------------------------------------

def test_1_empty_store(page, app, shot):
    open_page(page, app, "/")
    expect(page.get_by_text("No runs yet", exact=False)).to_be_visible()
    shot("1-empty-store")


def test_2_launch_and_watch_it_finish(page, app, shot):
    launch(page, app, "/launch", epochs=EPOCHS, run_name="e2e-first")
    run = run_named(app, "e2e-first")
    state["first"] = run.info.run_id
    # the live view shows it running, with progress, then empties, all without a reload
    expect(page.get_by_text("RUNNING").first).to_be_visible(timeout=120_000)
    expect(page.get_by_text(re.compile(rf"epoch \d+/{EPOCHS} · step \d+/\d+")).first).to_be_visible(timeout=60_000)
    shot("2a-running")
    # its page, opened while it trains, follows it to its end without a reload
    page.get_by_role("link", name="Run details").first.click()
    expect(page.get_by_text("This run is running")).to_be_visible()
    shot("2b-detail-running")
    assert wait_status(app, state["first"], ("FINISHED", "FAILED", "KILLED")) == "FINISHED"
    expect(page.get_by_text("FINISHED").first).to_be_visible(timeout=60_000)  # refresh 10 s + cache 5 s
    expect(page.get_by_text("This run is running")).to_have_count(0)
    # its duration is the training's own (runboard.train_started/ended), not the time since it was queued
    tags = mlflow(app).get_run(state["first"]).data.tags
    trained = float(tags["runboard.train_ended"]) - float(tags["runboard.train_started"])
    expect(page.get_by_test_id("stMetric").filter(has_text="training time")).to_contain_text(format_duration(trained))
    evaluation = page.get_by_role("tab", name="Evaluation", exact=True)
    expect(evaluation).to_have_count(1)  # the page's last rerun is over: no element of the live one is left
    evaluation.click()
    heatmap = page.locator(".js-plotly-plot").filter(has=page.locator(".heatmaplayer")).first
    expect(heatmap).to_be_visible(timeout=60_000)
    shot("2c-detail-finished")
    open_page(page, app, "/launch")
    expect(page.get_by_text("Queue · 0 running · 0 queued")).to_be_visible(timeout=RUN_TIMEOUT_S * 1000)
    assert "e2e-first" in grid_text(page) and "FINISHED" in grid_text(page)  # "Recently ended"
    shot("2d-finished")


def test_3_clone_with_another_lr_and_cancel_it(page, app, shot):
    launch(page, app, f"/launch?clone={state['first']}", lr="0.01", epochs="200", run_name="e2e-clone")
    run = run_named(app, "e2e-clone")
    state["clone"] = run.info.run_id
    assert run.data.params["lr"] == "0.01" and run.data.params["model"] == "cnn"  # the rest came from the clone
    expect(page.get_by_text(re.compile(r"epoch \d+/200 · step \d+/\d+")).first).to_be_visible(timeout=120_000)
    shot("3a-clone-running")
    live = "[data-stale='false'] button:visible"  # not the copy a 2 s refresh leaves beside it while it re-draws
    page.locator(f".st-key-cancel-queue-{state['clone']}{live}").first.click()  # it asks first, with the progress
    expect(page.get_by_text(re.compile(r"Stop e2e-clone\? Progress: \d+ of 200 epochs trained"))).to_be_visible()
    shot("3b-clone-cancel-asks")
    page.locator(f".st-key-cancel-confirm-queue-{state['clone']}{live}").first.click()
    assert wait_status(app, state["clone"], ("FINISHED", "FAILED", "KILLED"), timeout=90) == "KILLED"
    expect(page.get_by_text("Queue · 0 running · 0 queued")).to_be_visible(timeout=60_000)
    shot("3c-clone-killed")


def test_4_third_run_and_compare(page, app, shot):
    launch(page, app, "/launch", epochs=EPOCHS, lr="0.001", run_name="e2e-third")
    state["third"] = run_named(app, "e2e-third").info.run_id
    assert wait_status(app, state["third"], ("FINISHED", "FAILED", "KILLED")) == "FINISHED"
    open_page(page, app, f"/compare?runs={state['first']},{state['third']}")
    first_chart = page.locator(".js-plotly-plot").first
    expect(first_chart).to_be_visible(timeout=60_000)
    expect(first_chart.locator(".legend .traces")).to_have_count(2)  # one trace per run
    expect(page.locator(".js-plotly-plot .legend")).to_have_count(1)  # one legend for the grid, not one a chart
    legend = first_chart.locator(".legend").bounding_box()
    for bar in page.locator(".modebar").all():  # the charts' tool bars (shown on hover) never cover it
        box = bar.bounding_box()
        assert box is None or box["y"] >= legend["y"] + legend["height"] or box["x"] + box["width"] <= legend["x"]
    diff = grid_text(page)
    assert diff.startswith("run") and "lr" in diff and "3.00e-3" in diff and "1.00e-3" in diff  # one lr format
    assert "epochs" not in diff  # only the params that differ
    shot("4a-compare")
    # what is seen is in the address bar, and comes back from it
    page.get_by_test_id("stRadio").get_by_text("epoch", exact=True).click()
    idle(page)  # a click while the page re-draws shows the toggle on but can miss the address bar
    page.get_by_text("log y", exact=True).click()
    expect(page).to_have_url(re.compile(r"x_axis=epoch"))
    expect(page).to_have_url(re.compile(r"log_y=true"))
    page.reload()
    expect(page.get_by_role("radio", name="epoch", exact=True)).to_be_checked(timeout=60_000)
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
    shot("4b-compare-from-the-url")
    # every point on demand, kept in the link; the download still offers every point
    idle(page)
    page.get_by_text("Full detail", exact=True).click()
    expect(page).to_have_url(re.compile(r"detail=true"))
    page.reload()
    expect(page.get_by_test_id("stCheckbox").filter(has_text="Full detail").locator("input")).to_be_checked(
        timeout=60_000)  # st.toggle is a checkbox underneath
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stDownloadButton").filter(has_text="Download CSV")).to_be_visible()


def test_4c_runs_filters_in_the_url(page, app, shot):
    open_page(page, app, "/")
    model = page.get_by_test_id("stMultiSelect").filter(has_text="Model")
    model.locator("input").click()
    page.get_by_role("option", name="cnn", exact=True).click()
    expect(page).to_have_url(re.compile(r"filter_model=cnn"))
    page.reload()
    expect(page.get_by_test_id("stMultiSelect").filter(has_text="Model").get_by_text("cnn")).to_be_visible(
        timeout=60_000)
    text = grid_text(page)  # the grid's DOM copy holds the columns on screen: the scores are among them
    assert "e2e-first" in text and "test acc" in text and "test F1" in text
    shot("4c-runs-filtered-from-the-url")


RUNS_COLUMNS = ["sweep", "", "name", "status", "test acc", "best val", "test F1", "model", "lr", "training",
                "start (UTC)"]  # the Runs table's default columns, the "" one the links to each run's page


def test_4d_runs_table_fits_1400_px_and_folds_a_sweep(page, app, shot):
    from pipeline.config import RunConfig
    from pipeline.queue import jobs, sweep

    space = {"lr": [0.003, 0.03]}  # queued as the Launch page's Sweep tab queues it; the worker trains both
    configs = sweep.build(RunConfig(dataset="digits", model="cnn", epochs=2, run_name="e2e-sweep"), "grid", space)
    parent, run_ids = jobs.submit_sweep(configs, "grid", space, client=mlflow(app))
    for run_id in run_ids:
        assert wait_status(app, run_id, ("FINISHED", "FAILED", "KILLED")) == "FINISHED"
    assert page.viewport_size["width"] == 1400
    open_page(page, app, "/")
    frame = page.get_by_test_id("stDataFrame").first
    grid = frame.locator("table[role=grid]")
    expect(grid).to_contain_text("e2e-sweep (grid, 2 runs)", timeout=60_000)
    expect(grid.locator("thead th")).to_have_text(RUNS_COLUMNS)  # the DOM copy holds the columns on screen...
    scroll = frame.evaluate("el => { const s = el.querySelector('.dvn-scroller'); return [s.scrollWidth, s.clientWidth] }")
    assert scroll[0] <= scroll[1], scroll  # ...and none is cut: the table does not scroll sideways
    expect(grid).not_to_contain_text(configs[0].run_name)  # folded: the sweep's runs are under its row
    shot("4d-runs-1400px-sweep-folded")
    rows = grid.locator("tbody tr").all_text_contents()
    row = next(i for i, text in enumerate(rows) if "e2e-sweep (grid" in text)
    box = frame.bounding_box()  # Glide draws the grid on a canvas: its fold button is clicked where it is drawn
    header, height, checkboxes = 35, 35, 35  # px: Streamlit's row height; the selection column
    fold = (box["x"] + checkboxes + 37, box["y"] + header + row * height + height / 2)
    page.mouse.click(*fold)
    expect(grid).to_contain_text("└ " + configs[0].run_name, timeout=60_000)
    expect(grid).to_contain_text("└ " + configs[1].run_name)
    shot("4d-runs-1400px-sweep-unfolded")
    idle(page)
    page.mouse.click(*fold)
    expect(grid).not_to_contain_text(configs[0].run_name, timeout=60_000)


def test_4e_the_launch_page_keeps_the_sweep_tab_when_the_dataset_changes(page, app, shot):
    for i, name in enumerate(("dark", "light")):  # an image folder: picking it adds its summary above the tabs
        (app.store / "data" / "e2e-shades" / name).mkdir(parents=True, exist_ok=True)
        for j in range(3):
            Image.new("L", (16, 16), 40 + 160 * i + j).save(app.store / "data" / "e2e-shades" / name / f"{j}.png")
    open_page(page, app, "/launch")
    page.get_by_role("button", name="Look for new image folders").click()
    idle(page)
    sweep = page.get_by_role("tab", name="Sweep", exact=True)
    sweep.click()
    expect(sweep).to_have_attribute("aria-selected", "true")
    expect(page.get_by_label("lr values", exact=True)).to_be_visible()
    for dataset in ("imagefolder:e2e-shades", "cifar10", "digits"):  # a person tries datasets, then comes back
        choose(page, "dataset", dataset)
        idle(page)
        expect(select_box(page, "dataset").locator("input")).to_have_value(dataset)
        expect(sweep).to_have_attribute("aria-selected", "true")  # not thrown back to "One run"
        expect(page.get_by_label("lr values", exact=True)).to_be_visible()
        if dataset.startswith("imagefolder:"):
            expect(page.get_by_text("6 images").first).to_be_visible()
            shot("4e-launch-sweep-tab-kept")


def test_5_run_detail_confusion_matrix(page, app, shot):
    open_page(page, app, f"/run_detail?run={state['first']}")
    expect(page.get_by_text("FINISHED").first).to_be_visible()
    page.get_by_role("tab", name="Evaluation", exact=True).click()
    heatmap = page.locator(".js-plotly-plot").filter(has=page.locator(".heatmaplayer")).first
    expect(heatmap).to_be_visible(timeout=60_000)
    labels = heatmap.locator(".yaxislayer-above .ytick text").all_text_contents()
    assert sorted(labels) == [str(d) for d in range(10)]
    shot("5-confusion-matrix")


def test_6_register_and_set_champion(page, app, shot):
    open_page(page, app, f"/registry?register={state['first']}")
    fill(page, "New model name", "e2e-digits")  # the registry is empty: a new model is the only choice
    fill(page, "Version description (optional)", "e2e: the first run")
    choose(page, "Then set alias", "champion")
    page.get_by_role("button", name=re.compile(r"^Register$")).click()
    expect(page.get_by_text("@champion").first).to_be_visible(timeout=60_000)
    version = mlflow(app).get_model_version_by_alias("e2e-digits", "champion")
    assert version.run_id == state["first"] and version.description == "e2e: the first run"
    shot("6-registry")


def test_7_playground_upload(page, app, shot, tmp_path):
    from pipeline.training import data
    from pipeline.config import RunConfig

    test = data.load(RunConfig()).test
    digit = Image.fromarray(test.images[0, 0].numpy())
    good = tmp_path / f"digit-{int(test.labels[0])}.png"
    digit.save(good)
    fake = tmp_path / "notes.png"
    fake.write_text("this is a text file, not a picture")

    open_page(page, app, "/playground")
    uploader = page.locator("[data-testid=stFileUploader] input[type=file]")
    uploader.set_input_files(str(good))
    expect(page.get_by_test_id("stMetric").filter(has_text="Prediction")).to_be_visible(timeout=90_000)
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    shot("7a-playground-prediction")

    uploader.set_input_files(str(fake))
    expect(page.get_by_test_id("stAlertContentError").filter(has_text="notes.png")).to_be_visible(timeout=60_000)
    shot("7b-playground-bad-file")

    page.get_by_test_id("stFileChip").filter(has_text="notes.png").get_by_test_id("stFileChipDeleteBtn").click()
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)
    uploader.set_input_files(str(good))
    expect(page.get_by_test_id("stFileChip")).to_have_count(2)
    expect(page.get_by_test_id("stMetric").filter(has_text="Prediction")).to_be_visible()
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)
    shot("7c-playground-good-again")


def test_7d_the_pages_ask_nothing_from_outside_hosts(requested, app):
    """An offline deployment: every request of the dashboard's pages goes to the app itself."""
    outside = {u for u in requested if urlparse(u).scheme in ("http", "https", "ws", "wss")
               and urlparse(u).hostname not in ("127.0.0.1", "localhost")}
    assert not outside, sorted(outside)
    assert any(u.startswith(app.url) for u in requested)


def test_7e_links_to_what_does_not_exist_say_so(page, app, shot):
    open_page(page, app, "/nope")
    expect(page.get_by_text("There is no page /nope")).to_be_visible()
    open_page(page, app, "/?experiment=nothing-here")
    expect(page.get_by_text("No experiment named nothing-here")).to_be_visible()
    open_page(page, app, f"/run_detail?run={state['first']}&vs=bogus")
    page.get_by_role("tab", name="Compare evaluation").click()
    expect(page.get_by_text(re.compile(r"compare with run bogus"))).to_be_visible()
    shot("7e-bad-vs-link")


def test_8_mlflow_ui_shows_the_run_and_its_confusion_matrix(page, app, shot):
    run = mlflow(app).get_run(state["first"])
    page.goto(f"{app.mlflow_url}/#/experiments/{run.info.experiment_id}/runs/{state['first']}/artifacts")
    expect(page.get_by_text("e2e-first").first).to_be_visible(timeout=60_000)
    page.get_by_text("evaluation", exact=True).first.click()
    expect(page.get_by_text("confusion_matrix.png").first).to_be_visible(timeout=30_000)
    shot("8-mlflow-ui")
    assert np.isfinite(run.data.metrics["test_accuracy"])


def test_9_compare_zooms_into_a_long_history(page, app, shot):
    """Two runs of 3,000 steps, logged straight into the app's store: drawn sampled, then zoomed by keyboard on the
    slider's right thumb and from a link, the stretch drawn with every point logged there. Last: its experiment
    becomes the newest, which the Runs page opens on."""
    import time as clock

    from mlflow.entities import Metric

    client = mlflow(app)
    experiment = client.create_experiment("e2e-long-histories")
    now, ids = int(clock.time() * 1000), []
    for name, spike in (("e2e-long-a", 1234), ("e2e-long-b", None)):
        run_id = client.create_run(experiment, run_name=name).info.run_id
        values = [50.0 if s == spike else 2.0 / (s ** 0.5) for s in range(1, 3001)]
        for start in range(0, 3000, 1000):
            client.log_batch(run_id, metrics=[Metric("train_loss_step", v, now + s, s)
                                              for s, v in enumerate(values[start:start + 1000], start + 1)])
        client.set_terminated(run_id, "FINISHED")
        ids.append(run_id)

    def points() -> list[int]:
        return page.locator(".js-plotly-plot").last.evaluate("div => div._fullData.map(t => (t.y ? t.y.length : 0))")

    base = f"/compare?runs={','.join(ids)}&metrics=train_loss_step"
    open_page(page, app, base)
    expect(page.get_by_text("Zoom to steps")).to_be_visible()
    assert max(points()) <= 320  # sampled
    right = page.get_by_role("slider").last  # the zoom slider's upper thumb
    right.focus()
    for _ in range(3):
        right.press("ArrowLeft")
    idle(page)
    expect(page).to_have_url(re.compile(r"steps="))
    assert "2997" in page.url
    open_page(page, app, f"{base}&steps=1200&steps=1260")  # a link with a zoom opens zoomed
    expect(page.get_by_role("slider").last).to_have_value("1260")
    assert sorted(points()) == [61, 61]  # every step of the stretch, for both runs
    shot("9-compare-zoomed")
