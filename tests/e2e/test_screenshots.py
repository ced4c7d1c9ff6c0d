"""The docs' pictures, taken from the real product: every main page at a 1,400 x 900 viewport into docs/images/.

Run: `make test`, or only these: `.venv/bin/python -m pytest tests/e2e/test_screenshots.py -q` (about a minute:
the dashboard's start and three small digits runs). The pictures change when the pages change; commit them then,
after looking at each one. The store is fresh: three runs of the embedded digits with fixed seeds (two cnn, one
mlp, 3 epochs), the better cnn registered as `digits-cnn` v1 with alias @champion, the other as v2 @challenger.
Only the dashboard process of `make run` is started (`python -m dashboard.serve`): no page drawn here needs the
worker or `mlflow ui`, and leaving them out saves their start.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.e2e.conftest import CHROMIUM, ROOT, _free_port, _wait_http

pytestmark = pytest.mark.e2e

IMAGES = ROOT / "docs" / "images"
VIEWPORT = {"width": 1400, "height": 900}
PAGES = ("runs", "compare", "run-detail", "launch", "registry", "playground")  # the pictures the docs show

# Three runs, one process: the names, seeds and order are fixed, so the pictures show the same runs every time.
SEED = """
import json
from pipeline.config import RunConfig
from pipeline.runs.train import run
from pipeline.serving import registry

runs = {}
for name, model, lr in (("cnn-lr3e-3", "cnn", 3e-3), ("cnn-lr3e-2", "cnn", 3e-2), ("mlp-lr3e-3", "mlp", 3e-3)):
    runs[name] = run(RunConfig(dataset="digits", model=model, lr=lr, epochs=3, seed=0, device="cpu",
                               experiment="digits", run_name=name), progress=False)
registry.register_run(runs["cnn-lr3e-3"], "digits-cnn", "cnn, 3 epochs, lr 3e-3")
registry.register_run(runs["cnn-lr3e-2"], "digits-cnn", "cnn, 3 epochs, lr 3e-2")
registry.set_description("digits-cnn", "Handwritten 8x8 digits (the embedded data set)")
registry.set_alias("digits-cnn", "champion", 1)
registry.set_alias("digits-cnn", "challenger", 2)
print(json.dumps(runs))
"""


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """The dashboard as the Procfile's `web` starts it, on a free port and a fresh store seeded with three runs."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    root = tmp_path_factory.mktemp("screenshots")
    (root / "data").mkdir()
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "RUNBOARD_DATA_ROOT": str(root / "data"), "RUNBOARD_PORT": str(port), "RUNBOARD_HOST": "127.0.0.1"}
    env.pop("RUNBOARD_PASSWORD", None)
    seeded = subprocess.run([sys.executable, "-c", SEED], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    runs = json.loads(seeded.stdout.strip().splitlines()[-1])
    log = root / "dashboard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dashboard.serve"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", proc, log)
        yield f"http://127.0.0.1:{port}", runs
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as in a terminal
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    yield context.new_page()
    context.close()


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.get_by_test_id("stSidebarNav")).to_be_visible()
    idle(page)


def idle(page: Page) -> None:
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")


def save(page: Page, name: str) -> None:
    """The viewport as a person sees it (not the full page), once the script has drawn everything."""
    idle(page)
    page.mouse.move(0, VIEWPORT["height"] - 1)  # no hover box or tool bar over the content
    page.wait_for_timeout(800)  # Plotly's and the data grid's last paint after the script has finished
    path = IMAGES / f"{name}.png"
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    with Image.open(path) as shot:
        assert shot.size == (VIEWPORT["width"], VIEWPORT["height"])
        assert len(shot.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50, f"{name}.png is blank"


def test_runs(page, dashboard):
    url, runs = dashboard
    open_page(page, f"{url}/?experiment=digits")
    grid = page.locator("table[role=grid]").first
    expect(grid).to_be_attached()
    for name in runs:
        expect(grid).to_contain_text(name)
    save(page, "runs")


def test_compare(page, dashboard):
    url, runs = dashboard
    open_page(page, f"{url}/compare?runs={','.join(runs.values())}")
    first_chart = page.locator(".js-plotly-plot").first
    expect(first_chart.locator(".legend .traces")).to_have_count(3)  # one curve per run
    save(page, "compare")


def test_run_detail(page, dashboard):
    url, runs = dashboard
    open_page(page, f"{url}/run_detail?run={runs['cnn-lr3e-3']}")
    expect(page.get_by_text("FINISHED").first).to_be_visible()
    page.get_by_role("tab", name="Evaluation", exact=True).click()
    heatmap = page.locator(".js-plotly-plot").filter(has=page.locator(".heatmaplayer")).first
    expect(heatmap).to_be_visible()
    save(page, "run-detail")


def test_launch(page, dashboard):
    url, _ = dashboard
    open_page(page, f"{url}/launch")
    expect(page.get_by_label("epochs", exact=True)).to_be_visible()
    expect(page.get_by_text("Nothing queued or running")).to_be_visible()
    save(page, "launch")


def test_registry(page, dashboard):
    url, _ = dashboard
    open_page(page, f"{url}/registry")
    models = page.locator("table[role=grid]").first  # one row per registered model, its aliases in a cell
    expect(models).to_contain_text("@champion → v1")
    expect(models).to_contain_text("@challenger → v2")
    save(page, "registry")


def test_playground(page, dashboard, tmp_path):
    from pipeline.config import RunConfig
    from pipeline.training import data

    test = data.load(RunConfig()).test  # the first test digit, as the registered model's evaluation saw it
    digit = tmp_path / f"digit-{int(test.labels[0])}.png"
    Image.fromarray(test.images[0, 0].numpy()).save(digit)

    url, _ = dashboard
    open_page(page, f"{url}/playground?model=digits-cnn&ref=champion")
    page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(str(digit))
    expect(page.get_by_test_id("stMetric").filter(has_text="Prediction")).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    # the answer in view: the page scrolled so that the upload box is at the top, the prediction below it
    page.get_by_test_id("stFileUploader").evaluate("box => box.scrollIntoView({block: 'start'})")
    save(page, "playground")


def test_the_docs_show_every_picture_taken_here():
    """A picture saved here and shown nowhere is a mistake (mkdocs --strict catches the reverse)."""
    shown = "".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    for name in PAGES:
        assert f"images/{name}.png" in shown, f"docs/images/{name}.png is shown nowhere"
        assert (IMAGES / f"{name}.png").exists()
