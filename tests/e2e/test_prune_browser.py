"""Pruning as a person does it: `make run`, a registered model, then "Prune…" on the Registry page twice
(leaving the page while the worker prunes, coming back), the chart and the playground picking a variant.

Run: .venv/bin/python -m pytest tests/e2e/test_prune_browser.py -q (a few minutes on two busy cores).
The steps run in order and share the app and the browser page. Screenshots: test-output/e2e/prune-*.png.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import grid_text, idle, mlflow, open_page

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_MS = 900_000  # a 1-epoch digits prune job, queued, run and logged by the worker on a busy 2-core box


def queue_pruning(page: Page, kind: str, int8: bool) -> None:
    """Open "Prune…", choose what to remove, one fine-tuning epoch, and queue it."""
    idle(page)
    page.get_by_role("button", name=re.compile("Prune…")).click()
    popover = page.get_by_test_id("stPopoverBody")
    expect(popover).to_be_visible()
    popover.get_by_text(re.compile(f"^{kind}:")).click()
    idle(page)
    epochs = popover.get_by_label("Fine-tuning epochs", exact=True)
    epochs.fill("1")
    epochs.press("Tab")
    idle(page)
    if not int8:
        popover.get_by_text("Also int8 after pruning").click()
        idle(page)
    popover.get_by_role("button", name="Queue pruning").click()


def test_p1_a_registered_model(app):
    done = subprocess.run([sys.executable, "-m", "pipeline", "train", "--dataset", "digits", "--model", "cnn",
                           "--epochs", "2", "--register", "e2e-prune", "--quiet"], env=app.env, capture_output=True,
                          text=True, timeout=900)  # seconds on an idle box; minutes when the cores are shared
    assert done.returncode == 0, done.stdout + done.stderr


def test_p2_prune_channels_from_the_registry_and_watch_it_arrive(page, app, shot):
    open_page(page, app, "/registry")
    queue_pruning(page, "channels", int8=True)
    expect(page.get_by_text(re.compile(r"Queued channels:0.5 of e2e-prune v1 as run"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"channels:0.5: (queued|pruning)"))).to_be_visible()
    shot("prune-1-queued")
    expect(page.get_by_text("Pruned variant ready: see the table below.")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    idle(page)
    expect(page.get_by_text("Sparsity vs accuracy")).to_be_visible()
    table = grid_text(page, 2)  # models, versions, then the variants
    assert "channels:0.5" in table and "channels:0.5+int8" in table
    shot("prune-2-ready")


def test_p3_prune_weights_leave_the_page_and_come_back(page, app, shot):
    open_page(page, app, "/registry")
    queue_pruning(page, "weights", int8=False)
    expect(page.get_by_text(re.compile(r"Queued weights:0.5 of e2e-prune v1 as run"))).to_be_visible()
    open_page(page, app, "/")  # away while the worker prunes
    [job] = [r for r in mlflow(app).search_runs([mlflow(app).get_experiment_by_name("exports").experiment_id],
                                                "tags.`runboard.prune` = 'weights:0.5'")]
    deadline_ms = JOB_TIMEOUT_MS
    while mlflow(app).get_run(job.info.run_id).info.status in ("SCHEDULED", "RUNNING") and deadline_ms > 0:
        page.wait_for_timeout(2000)
        deadline_ms -= 2000
    assert mlflow(app).get_run(job.info.run_id).info.status == "FINISHED"
    open_page(page, app, "/registry")  # back: the new variant is there without a reload of anything else
    table = grid_text(page, 2)
    assert "weights:0.5" in table and "channels:0.5" in table
    expect(page.get_by_text(re.compile(r"weights:0.5: (queued|pruning)"))).to_have_count(0)
    shot("prune-3-both")


def test_p4_the_playground_picks_a_pruned_variant(page, app, shot):
    open_page(page, app, "/playground?model=e2e-prune&ref=1")
    variants = page.get_by_test_id("stRadio").filter(has_text="Variant")
    expect(variants).to_have_count(1)
    for name in ("channels:0.5", "channels:0.5+int8", "weights:0.5"):
        expect(variants.get_by_text(name, exact=True)).to_be_visible()
    variants.get_by_text("channels:0.5", exact=True).click()
    idle(page)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)
    page.get_by_role("button", name="Use", exact=True).first.click()  # a sample from the test split
    idle(page)
    expect(page.get_by_test_id("stMetric").filter(has_text="Prediction")).to_be_visible(timeout=90_000)
    expect(page.get_by_text(re.compile(r"e2e-prune v1 · channels:0.5")).first).to_be_visible()
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)
    shot("prune-4-playground")
