"""Can I trust this model, in Chromium: two runs launched from the page, each one's Evaluation tab
(reliability diagram, PR and ROC curves), the Compare evaluation tab (the paired test, its galleries),
coming back to them after another page, and the Registry's sentence before @champion moves.

Run: .venv/bin/python -m pytest tests/e2e/test_evaluation_browser.py -q (skip with -m "not e2e").
Screenshots: test-output/e2e/eval-<step>.png; the reliability diagram and the paired comparison are also
saved alone (eval-reliability-diagram.png, eval-paired-comparison.png): docs/images/ holds copies.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient
from playwright.sync_api import Page, expect

from tests.e2e.conftest import OUTPUT, ROOT
from tests.e2e.steps import idle, open_page, select_box

pytestmark = pytest.mark.e2e
RUN_TIMEOUT_S = 240
state: dict[str, str] = {}


def launch(page: Page, app, **values: str) -> str:
    """Launch a run from the Launch page as a person does; its run id once it finished."""
    open_page(page, app, "/launch")
    for label, value in values.items():
        idle(page)
        box = page.get_by_label(label.replace("_", " "), exact=True)
        box.fill(value)
        box.press("Tab")
    page.get_by_role("button", name=re.compile(r"Launch$")).click()
    client, deadline = MlflowClient(tracking_uri=app.env["MLFLOW_TRACKING_URI"]), time.time() + RUN_TIMEOUT_S
    while time.time() < deadline:
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  f"attributes.run_name = '{values['run_name']}'")
        if runs and runs[0].info.status in ("FINISHED", "FAILED", "KILLED"):
            assert runs[0].info.status == "FINISHED", runs[0].data.tags.get("runboard.error")
            return runs[0].info.run_id
        time.sleep(1)
    raise AssertionError(f"{values['run_name']} did not finish in {RUN_TIMEOUT_S} s")


def open_tab(page: Page, name: str) -> None:
    idle(page)
    tab = page.get_by_role("tab", name=name, exact=True)
    expect(tab).to_be_visible(timeout=60_000)
    tab.click(timeout=60_000)


def chart(page: Page, title: str):
    return page.locator(".js-plotly-plot").filter(has_text=title).first


def test_1_a_finished_runs_evaluation_tab_shows_calibration_and_curves(page, app, shot):
    state["short"] = launch(page, app, epochs="2", run_name="eval-short")
    open_page(page, app, f"/run_detail?run={state['short']}")
    open_tab(page, "Evaluation")
    diagram = chart(page, "Reliability diagram")
    expect(diagram).to_be_visible(timeout=60_000)
    expect(page.get_by_text("ECE after temperature")).to_be_visible()
    expect(chart(page, "Precision-recall, one vs rest")).to_be_visible()
    expect(chart(page, "ROC, one vs rest").locator(".legend .traces")).to_have_count(11)  # ten classes and chance
    diagram.scroll_into_view_if_needed()
    diagram.screenshot(path=str(OUTPUT / "eval-reliability-diagram.png"))
    shot("eval-1-evaluation-tab")
    # a box drawn over the whole embedding map selects every test image: they appear below it
    plot = chart(page, "Embedding map").locator(".nsewdrag").first
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2, steps=5)
    page.mouse.up()
    expect(page.get_by_text(re.compile(r"^\d+ selected"))).to_be_visible(timeout=60_000)
    expect(page.get_by_text(re.compile(r"true \d · predicted \d")).first).to_be_visible()
    shot("eval-1b-embedding-selection")


def test_2_a_second_run_and_the_paired_comparison(page, app, shot):
    state["long"] = launch(page, app, epochs="8", run_name="eval-long")
    open_page(page, app, f"/run_detail?run={state['long']}&vs={state['short']}")  # the new run is no stale option
    open_tab(page, "Compare evaluation")
    sentence = page.get_by_text(re.compile(r"eval-long vs eval-short on the same 359 images: [+−]\d+\.\d points "
                                           r"\(95 % CI [+−]\d+\.\d to [+−]\d+\.\d\), p [=<] "))
    expect(sentence).to_be_visible(timeout=60_000)
    expect(page.get_by_text(re.compile(r"Only eval-short right \(\d+ images; A = eval-short, B = eval-long\)"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"Only eval-long right \(\d+ images; A = eval-short, B = eval-long\)"))).to_be_visible()
    expect(chart(page, "eval-long · ECE")).to_be_visible()
    expect(chart(page, "eval-short · ECE")).to_be_visible()
    section = page.locator(".st-key-paired_comparison")
    section.scroll_into_view_if_needed()
    section.screenshot(path=str(OUTPUT / "eval-paired-comparison.png"))
    state["sentence"] = sentence.first.text_content()
    shot("eval-2-paired-comparison")


def test_3_coming_back_after_another_page_shows_the_same(page, app, shot):
    open_page(page, app, "/")
    expect(page.locator("table[role=grid]").first).to_contain_text("eval-long", timeout=60_000)  # the Runs table
    open_page(page, app, f"/run_detail?run={state['long']}&vs={state['short']}")
    open_tab(page, "Compare evaluation")
    expect(page.get_by_text(state["sentence"])).to_be_visible(timeout=60_000)
    open_tab(page, "Evaluation")
    expect(chart(page, "Reliability diagram · eval-long")).to_be_visible(timeout=60_000)
    shot("eval-3-come-back")


def test_4_the_registry_says_whether_moving_champion_is_a_real_difference(page, app, shot):
    register = ("from pipeline.serving import registry; import sys; "
                "[registry.register_run(r, 'eval-e2e') for r in sys.argv[1:]]; registry.set_alias('eval-e2e', 'champion', 1)")
    subprocess.run([sys.executable, "-c", register, state["short"], state["long"]], cwd=ROOT, env=app.env, check=True,
                   capture_output=True, timeout=180)
    open_page(page, app, "/registry")
    page.get_by_role("tab", name="Aliases").click()
    idle(page)
    box = select_box(page, "Version").locator("input")
    box.click()
    box.fill("v2")
    expect(page.get_by_role("option", name=re.compile("v2")).first).to_be_visible()
    box.press("Enter")
    expect(page.get_by_text(re.compile(r"v2 vs v1 on the same 359 images: .* points \(95 % CI .*\), p [=<] ")))\
        .to_be_visible(timeout=60_000)
    shot("eval-4-registry-sentence")
