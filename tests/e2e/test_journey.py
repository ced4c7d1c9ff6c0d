"""A journey across features, as a person takes it (issue 20's "Done when"): launch, cancel on the run's
page, resume there and watch the page follow the run to FINISHED without a reload, with honest times.

Run: .venv/bin/python -m pytest tests/e2e/test_journey.py -q (the app and Chromium as in conftest.py).
The steps run in order and share the app, the browser page and `journey`; later steps append to both.
Screenshots: test-output/e2e/j<step>-*.png.
"""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from dashboard import refresh, tables
from dashboard.tables import format_duration
from pipeline import names
from tests.e2e.test_browser import idle, launch, mlflow, open_page, run_named, wait_status

pytestmark = pytest.mark.e2e

EPOCHS = 40          # long enough to cancel after a few epochs and still watch the rest train after the resume
CANCEL_AFTER = 2     # epochs trained before Cancel is pressed
# a change reaches an open page within one refresh plus the cached read's lifetime; the rest is a busy
# 2-core box drawing it (measured lags are printed: pytest -s)
FOLLOW_S = refresh.LIVE_REFRESH + refresh.LISTING_TTL + 10
journey: dict = {}


# --- helpers -------------------------------------------------------------------------------------

def badge(page: Page, status: str):
    """The run's status badge in the page header (case-sensitive: "running" in a sentence is not it)."""
    return page.get_by_test_id("stMarkdown").filter(has_text=re.compile(rf"\b{status}\b")).first


def button(page: Page, key: str):
    """A button by its widget key (Streamlit's `st-key-*` class), the one shown: while a live fragment
    re-draws, an old copy stays in the page beside it (stale, or hidden), and a click on it does nothing."""
    return page.locator(f".st-key-{key}[data-stale='false'] button:visible").first


def press(page: Page, key: str, until, tries: int = 4) -> None:
    """Click a button until `until` shows: on a busy box a click while the live fragment re-draws can go
    unanswered, and a person would click again (never a second time once the button is gone)."""
    for _ in range(tries):
        if button(page, key).count():
            button(page, key).click(timeout=120_000)
        try:
            expect(until).to_be_visible(timeout=15_000)
            return
        except AssertionError:
            continue
    expect(until).to_be_visible()


def shown_status(page: Page) -> str | None:
    for status in names.ACTIVE + names.ENDED:
        if badge(page, status).count():
            return status
    return None


def metric(page: Page, label: str) -> str:
    """The value of a header metric ("training time", "epochs", ...)."""
    cell = page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").get_by_text(
        label, exact=True))
    return cell.get_by_test_id("stMetricValue").inner_text().strip()


def seconds(shown: str) -> int:
    """format_duration's text back to whole seconds: "5s", "1m 15s", "1h 02m"."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", shown))


def epochs_trained(app, run_id: str) -> int:
    history = mlflow(app).get_metric_history(run_id, names.TRAIN_LOSS)
    return max((m.step for m in history), default=0)


def follow(app, run_id: str, tabs: dict[str, Page], timeout: float) -> dict[str, dict[str, float]]:
    """Watch the open tabs (no reload) until the run is FINISHED in MLflow and every tab shows it: when
    (unix seconds) each tab first showed each status."""
    start, seen = time.time(), {name: {} for name in tabs}
    while time.time() - start < timeout:
        finished = mlflow(app).get_run(run_id).info.status == names.FINISHED
        for name, tab in tabs.items():
            shown = shown_status(tab)
            if shown:
                seen[name].setdefault(shown, time.time())
        if finished and all(names.FINISHED in seen[name] for name in tabs):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"not every tab followed the run to FINISHED within {timeout:.0f} s: {seen}")


# --- the steps -----------------------------------------------------------------------------------

def test_j1_launch(page, app, shot):
    launch(page, app, "/launch", epochs=str(EPOCHS), run_name="journey")
    run = run_named(app, "journey")
    journey["run_id"], journey["submitted"] = run.info.run_id, run.info.start_time / 1000
    assert run.data.params["dataset"] == "digits" and run.data.params["epochs"] == str(EPOCHS)
    shot("j1-launched")


def test_j2_cancel_on_the_run_page(page, app, shot):
    run_id = journey["run_id"]
    open_page(page, app, f"/run_detail?run={run_id}")
    expect(badge(page, "RUNNING")).to_be_visible(timeout=120_000)
    deadline = time.time() + 120
    while epochs_trained(app, run_id) < CANCEL_AFTER and time.time() < deadline:
        time.sleep(0.5)
    expect(button(page, f"cancel-detail-{run_id}")).to_be_visible()
    press(page, f"cancel-detail-{run_id}",
          page.get_by_text(re.compile(rf"Stop journey\? Progress: \d+ of {EPOCHS} epochs trained")))
    assert mlflow(app).get_run(run_id).info.status == names.RUNNING  # one click only asks
    shot("j2a-cancel-asks")
    press(page, f"cancel-confirm-detail-{run_id}",
          button(page, f"stopping-detail-{run_id}").or_(badge(page, "KILLED")).first)
    assert wait_status(app, run_id, names.ENDED, timeout=90) == names.KILLED
    journey["killed"] = mlflow(app).get_run(run_id).info.end_time / 1000
    expect(badge(page, "KILLED")).to_be_visible(timeout=FOLLOW_S * 1000)  # followed, no reload
    trained = epochs_trained(app, run_id)
    assert CANCEL_AFTER <= trained < EPOCHS
    expect(page.get_by_test_id("stMetric").filter(has_text="epochs")).to_contain_text(f"{trained} of {EPOCHS}")
    shot("j2b-killed")


def test_j3_resume_and_follow_to_finished(page, app, shot):
    run_id = journey["run_id"]
    other = page.context.new_page()  # another tab on the same run: it must follow a resume made elsewhere
    open_page(other, app, f"/run_detail?run={run_id}")
    expect(badge(other, "KILLED")).to_be_visible()
    idle(page)
    clicked = time.time()
    press(page, f"resume-detail-{run_id}", page.get_by_text("queued again as attempt 2"))
    seen = follow(app, run_id, {"this tab": page, "other tab": other}, timeout=600)
    run = mlflow(app).get_run(run_id)
    changed = {names.RUNNING: float(run.data.tags[names.TAG_STARTED]),  # set just before the status
               names.FINISHED: run.info.end_time / 1000}
    lags = {tab: {s: round(seen[tab][s] - changed[s], 1) for s in changed if s in seen[tab]} for tab in seen}
    print(f"\nlag of each tab behind the change in MLflow (s; the toast was waited for first): {lags}")
    for tab in lags:  # each tab showed each status within one refresh of the change, or the status was shorter
        assert lags[tab].get(names.FINISHED, FOLLOW_S + 1) <= FOLLOW_S, lags
        if changed[names.FINISHED] - changed[names.RUNNING] > FOLLOW_S:
            assert lags[tab].get(names.RUNNING, FOLLOW_S + 1) <= FOLLOW_S, lags
    shot("j3a-finished-without-a-reload")
    other.close()

    # the times: training and queued counted once each, the time it stood KILLED in neither
    wall = (run.info.end_time - run.info.start_time) / 1000  # submission to end
    times = tables.timing(run.info, run.data.tags, time.time())
    stood = clicked - journey["killed"]  # at least: the resume reached the store after the click
    print(f"wall {wall:.1f} s: training {times.training_s:.1f}, queued {times.queued_s:.1f}, "
          f"stopped {times.stopped_s:.1f} (Resume clicked {stood:.1f} s after the end)")
    assert 0 < times.training_s <= wall and 0 <= times.queued_s <= wall
    assert times.training_s + times.queued_s + times.stopped_s <= wall
    assert times.stopped_s >= stood
    expect(page.get_by_test_id("stMetric").filter(has_text="training time")).to_contain_text(
        format_duration(times.training_s))
    assert seconds(metric(page, "training time")) + seconds(metric(page, "queued")) <= wall + 1  # shown, rounded
    assert metric(page, "queued") == format_duration(times.queued_s)
    assert metric(page, "stopped") == format_duration(times.stopped_s)
    assert metric(page, "epochs") == run.data.tags[names.TAG_EPOCHS_RUN]
    journey["finished"] = True
    shot("j3b-times")
