"""A study as a person runs one: `make run`, the Launch page's Study tab, the study's page while its
trials train, Continue twice, Cancel, and the Runs page's group row following along (never stale).

Run: .venv/bin/python -m pytest tests/e2e/test_study_browser.py -q (a few minutes: 6 tiny trials train).
"""
from __future__ import annotations

import re
import time

import pytest
from mlflow import MlflowClient
from playwright.sync_api import expect

from tests.e2e.steps import fill, idle, open_page

pytestmark = pytest.mark.e2e

STUDY_TIMEOUT_S = 480  # tiny trials queued, started and logged by `make run`'s worker on a busy 2-core box
state: dict[str, str] = {}


def study_status(app, run_id: str) -> str:
    return MlflowClient(app.env["MLFLOW_TRACKING_URI"]).get_run(run_id).info.status


def wait_status(app, run_id: str, status: str, timeout: float = STUDY_TIMEOUT_S) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and study_status(app, run_id) != status:
        time.sleep(1)
    assert study_status(app, run_id) == status


def test_1_queue_a_study_from_the_study_tab(page, app, shot):
    open_page(page, app, "/launch")
    fill(page, "epochs", "2")
    page.get_by_role("tab", name="Study", exact=True).click()
    idle(page)
    fill(page, "trials", "3")
    fill(page, "parallel trials", "2")
    expect(page.get_by_text(re.compile(r"3 trials × up to 2 epochs each"))).to_be_visible()
    shot("study-1-tab")
    page.get_by_role("button", name="Queue a study of 3 trials").click()
    expect(page.get_by_text(re.compile(r"Queued study [0-9a-f]{32}"))).to_be_visible()  # the id is shown as code
    queued = page.get_by_text(re.compile(r"Queued study")).first.text_content()
    state["study"] = re.search(r"[0-9a-f]{32}", queued).group()
    page.get_by_role("link", name="Open the study's page").click()
    expect(page.get_by_text(re.compile(r"\d/3 trials · \d+ pruned"))).to_be_visible(timeout=60_000)


def test_2_its_page_follows_it_to_the_end_with_optunas_figures(page, app, shot):
    wait_status(app, state["study"], "FINISHED")
    expect(page.get_by_text(re.compile(r"3/3 trials · \d+ pruned · best 0\.\d{3} · FINISHED"))).to_be_visible(
        timeout=60_000)  # the page refreshes itself: no reload
    expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible()
    assert page.get_by_test_id("stPlotlyChart").count() >= 3
    shot("study-2-finished")


def test_3_continue_twice_then_cancel(page, app, shot):
    for total in (4, 6):
        more = total - (3 if total == 4 else 4)
        fill(page, "More trials", str(more))
        page.get_by_role("button", name=f"Continue with {more} more trials").click()  # the label shows the typed count
        expect(page.get_by_text(re.compile(rf"\d/{total} trials"))).to_be_visible(timeout=60_000)
        if total == 4:
            wait_status(app, state["study"], "FINISHED")
            expect(page.get_by_text(re.compile(r"4/4 trials .* FINISHED"))).to_be_visible(timeout=60_000)
    idle(page)
    page.get_by_role("button", name="Cancel study").click()
    expect(page.get_by_text(re.compile(r"/4 trials .* KILLED|/5 trials .* KILLED|/6 trials .* KILLED"))).to_be_visible(
        timeout=60_000)
    assert study_status(app, state["study"]) == "KILLED"
    shot("study-3-cancelled")


def test_4_the_runs_page_shows_the_study_as_one_group_row(page, app, shot):
    open_page(page, app, "/")
    grid = page.locator("table[role=grid]").first
    expect(grid).to_contain_text(re.compile(r"trials · \d+ pruned · best 0\.\d{3}"), timeout=60_000)
    text = grid.text_content()
    assert text.count("(study,") == 1 and "trial-0" not in text  # its trials folded under it
    shot("study-4-runs")
