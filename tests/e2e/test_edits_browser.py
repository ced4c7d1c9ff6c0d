"""Everyday edits as a person makes them in Chromium, each checked with MLflow's own client (what `mlflow ui`
shows): rename, note, tag, delete and restore on the run page; a version tag and a version delete on the
Registry page. After each edit another page is opened to check that it is not stale.

Run: .venv/bin/python -m pytest tests/e2e/test_edits_browser.py -q (skip with -m "not e2e").
The steps run in order and share the app, the page and `state`. Screenshots: test-output/e2e/edits-*.png.
"""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import fill, grid_text, idle, mlflow, open_page, select_box

pytestmark = pytest.mark.e2e

EXPERIMENT, MODEL = "e2e-edits", "e2e-edits-model"
state: dict[str, str] = {}


def submit(page: Page, label: str) -> None:
    page.get_by_test_id("stFormSubmitButton").filter(has_text=label).get_by_role("button").click()
    idle(page)


def runs_shown(page: Page, app, search: str) -> str:
    """The Runs page's table (its DOM copy) for a search, as a person who comes back to the list sees it."""
    open_page(page, app, f"/?experiment={EXPERIMENT}&search={search}")
    grid = page.get_by_test_id("stDataFrame").first.locator("table[role=grid]")
    expect(grid).to_be_attached()
    return grid


def test_1_rename_on_the_run_page_and_the_runs_table_follows(page, app, shot):
    client = mlflow(app)
    experiment = client.create_experiment(EXPERIMENT)
    run_id = client.create_run(experiment, run_name="edit-me").info.run_id
    client.log_text(run_id, "\n".join(f"line {i}" for i in range(300)), "logs/train.log")
    client.set_terminated(run_id, "FINISHED")
    state["run"] = run_id
    open_page(page, app, f"/run_detail?run={run_id}")
    expect(page.get_by_role("heading", name="edit-me")).to_be_visible()
    for name in ("renamed-once", "renamed-twice"):  # twice: the form starts from the name it now has
        idle(page)
        if not page.get_by_label("New name", exact=True).is_visible():  # a rerun may leave the popover open
            page.get_by_test_id("stPopover").filter(has_text="Rename").get_by_role("button").first.click()
        expect(page.get_by_label("New name", exact=True)).to_have_value(re.compile(r"^(edit-me|renamed-once)$"))
        fill(page, "New name", name)
        submit(page, "Rename")
        expect(page.get_by_role("heading", name=name)).to_be_visible()
        assert client.get_run(run_id).info.run_name == name
    shot("edits-1-renamed")
    expect(runs_shown(page, app, "renamed-twice")).to_contain_text("renamed-twice")


def test_2_note_and_tag_then_search_finds_them(page, app, shot):
    client, run_id = mlflow(app), state["run"]
    open_page(page, app, f"/run_detail?run={run_id}")
    page.get_by_text("Add a note", exact=True).click()
    fill(page, "Note (Markdown)", "## Baseline\nkept as the **reference** run")
    submit(page, "Save note")
    expect(page.get_by_role("heading", name="Baseline")).to_be_visible()
    assert client.get_run(run_id).data.tags["mlflow.note.content"].startswith("## Baseline")
    for value in ("ana", "ben"):  # set, then change
        fill(page, "Tag key", "reviewed_by")
        fill(page, "Tag value", value)
        submit(page, "Set tag")
        expect(page.get_by_text(f"= {value}")).to_be_visible()
        assert client.get_run(run_id).data.tags["reviewed_by"] == value
    shot("edits-2-note-and-tag")
    grid = runs_shown(page, app, "reference")  # the note is searchable, its first line in the table
    expect(grid).to_contain_text("renamed-twice")
    expect(grid).to_contain_text("## Baseline")
    expect(runs_shown(page, app, "reviewed_by%3Dben")).to_contain_text("renamed-twice")


def test_3_preview_a_log_then_delete_and_restore(page, app, shot):
    client, run_id = mlflow(app), state["run"]
    open_page(page, app, f"/run_detail?run={run_id}")
    page.get_by_role("tab", name="Artifacts & model").click()
    box = page.get_by_test_id("stSelectbox").filter(has_text="Preview").locator("input")
    box.click()
    page.get_by_role("option", name="logs/train.log").click()
    expect(page.get_by_text("line 299")).to_be_visible()
    expect(page.get_by_text("the last 200 lines")).to_be_visible()
    page.locator(f".st-key-delete-detail-{run_id} button").first.click()
    expect(page.get_by_text("Delete 1 run?")).to_be_visible()
    assert client.get_run(run_id).info.lifecycle_stage == "active"  # asked, not done
    page.locator(f".st-key-delete-confirm-detail-{run_id} button").first.click()
    expect(page.get_by_text(re.compile(r"was deleted on \d{4}-\d\d-\d\d"))).to_be_visible()
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    shot("edits-3-deleted")
    open_page(page, app, f"/?experiment={EXPERIMENT}&view=Deleted")  # the Deleted view lists it
    expect(page.get_by_test_id("stDataFrame").first.locator("table[role=grid]")).to_contain_text("renamed-twice")
    open_page(page, app, f"/run_detail?run={run_id}")  # its link says so, and brings it back
    page.locator(f".st-key-restore-{run_id} button").first.click()
    expect(page.get_by_role("heading", name="renamed-twice")).to_be_visible()
    assert client.get_run(run_id).info.lifecycle_stage == "active"
    expect(runs_shown(page, app, "renamed")).to_contain_text("renamed-twice")


def test_4_version_tag_and_version_delete_on_the_registry_page(page, app, shot):
    client, run_id = mlflow(app), state["run"]
    client.create_registered_model(MODEL)
    for _ in range(2):
        client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(MODEL, "champion", "1")
    open_page(page, app, "/registry")
    page.get_by_role("tab", name="Tags", exact=True).click()
    box = page.get_by_test_id("stSelectbox").filter(has_text="Tags of").locator("input")
    box.click()
    page.get_by_role("option", name=f"{MODEL} v2").click()
    expect(page.get_by_text(f"{MODEL} v2 has no tags yet")).to_be_visible()  # the form of v2, not the one before
    fill(page, "Tag key", "reviewed_by")
    fill(page, "Tag value", "ana")
    submit(page, "Set tag")
    expect(page.get_by_text("Tag reviewed_by set on")).to_be_visible()
    assert client.get_model_version(MODEL, "2").tags == {"reviewed_by": "ana"}
    page.get_by_role("tab", name="Delete", exact=True).click()
    expect(page.get_by_text("holds @champion")).to_be_visible()  # v1, the first version offered
    page.get_by_text(f"Delete {MODEL} v1 (@champion moved to v2)").click()
    page.locator(".st-key-delete_version button").first.click()
    expect(page.get_by_text(f"Deleted {MODEL} v1. @champion now on v2.")).to_be_visible()
    assert [int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")] == [2]
    assert client.get_registered_model(MODEL).aliases == {"champion": 2}
    shot("edits-4-registry")


def header(page: Page) -> list[str]:
    return page.get_by_test_id("stDataFrame").first.locator("table[role=grid] thead th").all_text_contents()


def names_in_order(page: Page, wanted: tuple[str, ...]) -> list[str]:
    rows = page.get_by_test_id("stDataFrame").first.locator("table[role=grid] tbody tr").all_text_contents()
    return [name for row in rows for name in wanted if name in row]


def settled_order(page: Page, wanted: tuple[str, ...], expected: list[str], seconds: float = 30) -> list[str]:
    """The rows' order once the grid's DOM copy shows `expected`, or as it stands after `seconds`: the grid redraws
    a moment after the script run ends (CI once read the descending order just after the click on ascending)."""
    deadline = time.monotonic() + seconds
    while (found := names_in_order(page, wanted)) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def test_5_columns_chosen_pinned_and_sorted_travel_in_a_link(page, app, shot):
    client = mlflow(app)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    for name, accuracy, seed in (("cols-a", 0.9, 3), ("cols-b", 0.7, 11), ("cols-c", 0.8, 7)):
        run_id = client.create_run(experiment, run_name=name).info.run_id
        client.log_param(run_id, "seed", seed)
        client.log_metric(run_id, "test_accuracy", accuracy)
        client.set_terminated(run_id, "FINISHED")
    runs = ("cols-a", "cols-b", "cols-c")
    for _ in range(30):  # made behind the page's back: listed once its cached listing (seconds) runs out
        open_page(page, app, f"/?experiment={EXPERIMENT}")
        if len(names_in_order(page, runs)) == 3:
            break
        time.sleep(1)
    page.get_by_test_id("stPopover").filter(has_text="Columns").get_by_role("button").first.click()
    shown = page.get_by_test_id("stMultiSelect").filter(has_text="Show, in this order").locator("input")
    shown.fill("params.seed")
    shown.press("Enter")  # a param joins the columns, last
    idle(page)
    shown.press("Tab")  # on to the next box: the list of choices closes
    idle(page)
    choose_in(page, "Sort by", "params.seed")
    page.get_by_role("dialog", name="Columns").get_by_role("radio", name="ascending").click()
    idle(page)
    expect(page.get_by_test_id("stDataFrame").first.locator("table[role=grid] thead th").last).to_have_text("seed")
    order = ["cols-a", "cols-c", "cols-b"]  # seeds 3, 7, 11: as numbers, not text
    assert settled_order(page, runs, order) == order
    link = page.url
    assert "columns=params.seed" in link and "sort=params.seed" in link and "order=ascending" in link, link
    shot("edits-5-columns")
    for _ in range(2):  # a second person opening the link, twice: the same table
        fresh = page.context.new_page()
        fresh.goto(link)
        expect(fresh.get_by_test_id("stDataFrame").first.locator("table[role=grid] thead th").last).to_have_text(
            "seed", timeout=60_000)
        assert header(fresh) == header(page)
        assert settled_order(fresh, runs, order) == order
        fresh.close()


def choose_in(page: Page, label: str, option: str) -> None:
    """Pick `option` in a select box with the keyboard, as in a popover another box's list may cover it."""
    box = select_box(page, label).locator("input")
    box.focus()
    box.fill(option)
    expect(page.get_by_role("option", name=option, exact=True)).to_be_visible()
    box.press("Enter")
    idle(page)


def test_6_a_big_experiment_pages_and_the_page_travels_in_a_link(page, app, shot):
    """230 runs: page 3 is reached from the pager, survives a reload and a second person's link, and a new
    filter starts again at page 1."""
    client = mlflow(app)
    experiment, t0 = client.create_experiment("e2e-many"), int(time.time() * 1000) - 600_000
    for i in range(230):
        run_id = client.create_run(experiment, start_time=t0 + i, run_name=f"many-{i:03d}").info.run_id
        client.set_terminated(run_id, "FAILED" if i % 10 == 0 else "FINISHED", end_time=t0 + i + 1)
    open_page(page, app, "/?experiment=e2e-many")
    expect(page.get_by_text("Runs 1–100 of 230 · page 1 of 3")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("stDataFrame").first.locator("table[role=grid]")).to_contain_text(
        "many-229", timeout=30_000)  # newest first
    fill(page, "Page", "3")
    expect(page.get_by_text("Runs 201–230 of 230 · page 3 of 3")).to_be_visible(timeout=30_000)
    expect(page).to_have_url(re.compile(r"runs_page=3"))
    grid = page.get_by_test_id("stDataFrame").first.locator("table[role=grid]")
    expect(grid).to_contain_text("many-029", timeout=30_000)  # the grid's DOM copy follows the canvas
    assert "many-229" not in grid_text(page)
    shot("edits-6-page-3-of-3")
    link = page.url
    for opened in (page, page.context.new_page()):  # a reload, then a second person opening the link
        opened.goto(link)
        expect(opened.get_by_text("Runs 201–230 of 230 · page 3 of 3")).to_be_visible(timeout=60_000)
        if opened is not page:
            opened.close()
    status = page.get_by_test_id("stMultiSelect").filter(has_text="Status")
    status.locator("input").click()
    page.get_by_role("option", name="FAILED", exact=True).click()
    idle(page)
    expect(page.get_by_text("Runs 1–23 of 23 · page 1 of 1")).to_be_visible(timeout=30_000)
    expect(grid).to_contain_text("many-220", timeout=30_000)
