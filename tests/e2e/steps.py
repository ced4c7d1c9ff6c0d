"""What the browser modules do again and again: open a page and wait for it, fill and pick as a person
does, read a grid, and ask MLflow how a run stands."""
from __future__ import annotations

import re
import time

from mlflow import MlflowClient
from playwright.sync_api import Page, expect

RUN_TIMEOUT_S = 240  # a digits run, queued, started and logged by the worker on a busy 2-core box


def open_page(page: Page, app, path: str) -> None:
    page.goto(app.url + path)
    expect(page.get_by_test_id("stSidebarNav")).to_be_visible(timeout=60_000)
    idle(page)


QUIET_MS = 300  # a click's rerun starts within this on a busy box; idle waits out a rerun not yet begun


def idle(page: Page) -> None:
    """Wait until the script run has drawn the whole page, and no element of the run before is left (stale):
    a run still drawing replaces a box under the keyboard (CI once typed into the old Version box of the alias
    form; the new one came back empty, and once found two description boxes, the old form's and the new).
    Checked twice, QUIET_MS apart, since the rerun an action asks for may not have begun at the first look."""
    for look in range(2):
        if look:
            page.wait_for_timeout(QUIET_MS)
        expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning", timeout=60_000)
        expect(page.locator("[data-stale='true']")).to_have_count(0, timeout=60_000)


def mlflow(app) -> MlflowClient:
    return MlflowClient(tracking_uri=app.env["MLFLOW_TRACKING_URI"])


def run_named(app, name: str, timeout: float = 60):
    """The MLflow run with this name, once it exists with its params (logged just after creation)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = mlflow(app).search_runs(
            [e.experiment_id for e in mlflow(app).search_experiments()], f"attributes.run_name = '{name}'")
        if runs and "lr" in runs[0].data.params:
            return runs[0]
        time.sleep(1)
    raise AssertionError(f"no run named {name} appeared in MLflow")


def wait_status(app, run_id: str, statuses: tuple[str, ...], timeout: float = RUN_TIMEOUT_S) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = mlflow(app).get_run(run_id).info.status
        if status in statuses:
            return status
        time.sleep(1)
    raise AssertionError(f"run {run_id} is {status}, never reached {statuses}")


def fill(page: Page, label: str, value: str) -> None:
    idle(page)
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Tab")  # streamlit commits a text or number input on blur


def launch(page: Page, app, path: str, **values: str) -> None:
    open_page(page, app, path)
    expect(page.get_by_label("epochs", exact=True)).to_be_visible()
    for label, value in values.items():
        fill(page, label.replace("_", " "), value)
    page.get_by_role("button", name=re.compile(r"Launch$")).click()


def grid_text(page: Page, index: int = 0) -> str:
    """The text of a st.dataframe (drawn on a canvas; Glide keeps an accessible copy in the DOM)."""
    grid = page.locator("table[role=grid]").nth(index)
    expect(grid).to_be_attached()
    return grid.text_content()


def select_box(page: Page, label: str):
    """The select box labelled exactly `label` ("Version", not "Version to delete" on another tab)."""
    return page.get_by_test_id("stSelectbox").filter(has=page.get_by_test_id("stWidgetLabel").get_by_text(
        label, exact=True))


def choose(page: Page, label: str, option: str) -> None:
    """Pick the first option containing `option` in the select box labelled `label`, by typing, as a keyboard user."""
    idle(page)
    box = select_box(page, label).locator("input")
    box.click()
    box.fill(option)  # filters the list; the first match is highlighted
    expect(page.get_by_role("option", name=re.compile(re.escape(option))).first).to_be_visible()
    box.press("Enter")
    idle(page)  # the page drawn again for the choice before the next step looks at it
