"""The app started exactly as the README's `make run` starts it, on free ports with a temporary store,
and a headless Debian Chromium driven by Playwright. Skip these with `pytest -m "not e2e"`.

Screenshots of every step land in test-output/e2e/; when a step fails, the app's log is copied there.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`make run` exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {seconds} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C, as a person in the terminal would; SIGKILL only if that does not end it."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    except ProcessLookupError:
        pass  # already gone
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class App:
    url: str
    mlflow_url: str
    store: Path
    log: Path
    env: dict


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    root = tmp_path_factory.mktemp("e2e")
    (root / "data").mkdir()
    web, mlflow_port = _free_port(), _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "RUNBOARD_DATA_ROOT": str(root / "data"), "RUNBOARD_PORT": str(web),
           "RUNBOARD_MLFLOW_PORT": str(mlflow_port), "RUNBOARD_MLFLOW_UI_URL": f"http://127.0.0.1:{mlflow_port}"}
    env.pop("RUNBOARD_PASSWORD", None)
    log = root / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group, like a terminal's
    try:
        _wait_http(f"http://127.0.0.1:{web}/_stcore/health", proc, log)
        _wait_http(f"http://127.0.0.1:{mlflow_port}/health", proc, log)
        yield App(f"http://127.0.0.1:{web}", f"http://127.0.0.1:{mlflow_port}", root, log, env)
    finally:
        _stop(proc)
        OUTPUT.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, OUTPUT / "app.log")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # pages of a busy 2-core box can take a while to first paint

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def requested() -> list[str]:
    """Every URL the browser asked for, in order: an offline deployment must serve them all itself."""
    return []


@pytest.fixture(scope="module")
def page(browser, requested):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    context.on("request", lambda request: requested.append(request.url))
    yield context.new_page()
    context.close()


@pytest.fixture
def shot(page, request):
    """shot("name") saves a screenshot; a failing test leaves one named after it."""
    OUTPUT.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> None:
        page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)

    yield take
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        take(f"FAILED-{request.node.name}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report
