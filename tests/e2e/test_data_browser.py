"""The Data page in Chromium, as a person crosses it: audit a folder, leave, come back to its findings,
train without the suspects twice, and see each run's page say what it left out and the Runs page list it.

Run: .venv/bin/python -m pytest tests/e2e/test_data_browser.py -q (steps in order, one app).
Screenshots: test-output/e2e/data-*.png.
"""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import choose, fill, idle, mlflow, open_page, wait_status
from tests.planted import FOLDER, plant

pytestmark = pytest.mark.e2e

AUDIT_TIMEOUT_S = 420  # 3 fold models of 30 one-step epochs and the pair search, queued and run by the worker on a busy box
state: dict = {}


def runs_where(app, where: str) -> list:
    client = mlflow(app)
    return client.search_runs([e.experiment_id for e in client.search_experiments()], where)


def newest(app, where: str, timeout: float = 60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = runs_where(app, where)
        if found:
            return found[0]
        time.sleep(1)
    raise AssertionError(f"no run where {where}")


def test_an_audit_started_on_the_data_page_is_run_by_the_worker(app, page: Page, shot):
    state["planted"] = plant(app.store / "data" / FOLDER)
    open_page(page, app, f"/data?folder=imagefolder:{FOLDER}")
    expect(page.get_by_text("This folder has no audit yet")).to_be_visible()
    for label, value in (("Folds", "3"), ("Epochs per fold", "30")):  # 56 images a fold: one step an epoch
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Tab")
    page.get_by_role("button", name=re.compile("Audit$")).click()
    expect(page.get_by_text("Queued audit")).to_be_visible()
    shot("data-audit-queued")
    audit = newest(app, "tags.`runboard.kind` = 'audit'")
    assert wait_status(app, audit.info.run_id, ("FINISHED", "FAILED", "KILLED"), AUDIT_TIMEOUT_S) == "FINISHED"
    state["audit"] = audit.info.run_id


def test_coming_back_shows_the_findings_with_the_planted_errors_in_the_gallery(app, page: Page, shot):
    open_page(page, app, "/")  # away, then back, as a person does
    open_page(page, app, f"/data?folder=imagefolder:{FOLDER}")
    expect(page.get_by_text(re.compile("Latest audit: .* finished"))).to_be_visible(timeout=60_000)
    expect(page.get_by_text("label conflicts", exact=True)).to_be_visible()
    for path in state["planted"]["wrong"]:
        expect(page.get_by_text(f"{path}: given zero, suggested one", exact=False)).to_be_visible()
    shot("data-findings")


def test_train_without_the_suspects_twice_each_run_says_what_it_left_out(app, page: Page, shot):
    run_ids = []
    for attempt in (1, 2):
        open_page(page, app, f"/data?folder=imagefolder:{FOLDER}")
        page.get_by_text("Also leave out every suspect at or above").click()
        idle(page)
        go = page.get_by_role("button", name=re.compile(r"Train without \d+ files"))
        expect(go).to_be_enabled()
        go.click()
        expect(page.get_by_text("without those files")).to_be_visible()
        shot(f"data-train-without-{attempt}")
        page.get_by_role("link", name="Open its page").click()
        idle(page)
        shown = page.locator("code").filter(has_text=re.compile(r"^[0-9a-f]{32}$")).first  # the caption's run id
        expect(shown).to_be_visible()
        run_id = shown.inner_text()
        assert run_id not in run_ids
        run_ids.append(run_id)
        assert wait_status(app, run_id, ("FINISHED", "FAILED", "KILLED")) == "FINISHED"
        page.reload()
        idle(page)
        expect(page.get_by_text(re.compile(r"files left out on purpose .*likely label errors from audit"))
               ).to_be_visible(timeout=60_000)
        expect(page.get_by_text(re.compile(rf"trained on {FOLDER} · digest \w{{6}} · \d+ files"))).to_be_visible()
        shot(f"data-run-page-{attempt}")
    runs = {r.info.run_id: r for r in runs_where(app, "params.exclude != ''")}
    assert set(run_ids) <= set(runs)
    first, second = (runs[r] for r in run_ids)
    assert first.data.tags["runboard.dataset_digest"] == second.data.tags["runboard.dataset_digest"]
    open_page(page, app, "/")  # the Runs page is not stale: both new runs are listed
    grid = page.get_by_test_id("stDataFrame").first.locator("table[role=grid]")
    for run_id in run_ids:
        expect(grid).to_contain_text(runs[run_id].info.run_name, timeout=60_000)
    shot("data-runs-listed")


def test_an_audit_queued_from_the_launch_page_shows_on_the_data_page_and_its_cancel_too(app, page: Page, shot):
    open_page(page, app, "/launch")
    choose(page, "dataset", f"imagefolder:{FOLDER}")
    idle(page)
    page.get_by_role("tab", name="Audit", exact=True).click()
    fill(page, "Folds", "3")
    page.get_by_role("button", name="Queue an audit of 3 folds").click()
    expect(page.get_by_text("Queued audit")).to_be_visible()
    shot("data-audit-from-launch")
    queued = page.get_by_text("Queued audit").locator("code").first.inner_text()
    assert queued != state["audit"]
    page.get_by_role("link", name="Its findings on the Data page").click()
    expect(page.get_by_text(re.compile("Latest audit: .* (scheduled|running)"))).to_be_visible(timeout=60_000)
    open_page(page, app, f"/run_detail?run={queued}")  # stopped from its own page, as any run
    page.locator(f".st-key-cancel-detail-{queued} button").first.click()
    page.locator(f".st-key-cancel-confirm-detail-{queued} button").first.click()
    assert wait_status(app, queued, ("FINISHED", "FAILED", "KILLED")) == "KILLED"
    open_page(page, app, f"/data?folder=imagefolder:{FOLDER}")  # the Data page is not stale: it says so
    expect(page.get_by_text(re.compile(r"This audit ended KILLED"))).to_be_visible(timeout=60_000)
    shot("data-audit-cancelled")
