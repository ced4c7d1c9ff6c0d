"""The app started exactly as the README's `make run` starts it, on free ports with a temporary store,
and a headless Debian Chromium driven by Playwright. Skip these with `pytest -m "not e2e"`.

Screenshots of every step land in test-output/e2e/; when a step fails, the app's log is copied there.
Stopping the app is Ctrl-C and nothing else: a process still there after it fails the module (`stop_app`).
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

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
MARK = "RUNBOARD_E2E_APP"  # in the app's environment: every process it starts inherits it, wherever it is reparented
STOP_SECONDS = 45  # Ctrl-C to nothing left; a SIGKILL (honcho's after 60 s, the worker's after 30 s) fails anyway


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


@dataclass
class App:
    url: str
    mlflow_url: str
    store: Path
    log: Path
    env: dict


def app_processes(mark: str) -> list[psutil.Process]:
    """The living processes started for the app with this mark (`make`, honcho, web, worker, mlflow ui, runs)."""
    found = []
    for p in psutil.process_iter(["environ", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and (p.info["environ"] or {}).get(MARK) == mark:
            found.append(p)
    return found


def describe(p: psutil.Process) -> str:
    try:
        return f"{p.pid} {' '.join(p.cmdline())[:160]}"
    except psutil.Error:
        return f"{p.pid} (gone)"


def stop_app(proc: subprocess.Popen, root: Path, seconds: float = STOP_SECONDS) -> list[str]:
    """Ctrl-C, as a person in the terminal would: SIGINT to `make run`'s process group. What is still running
    `seconds` later is SIGKILLed, so that nothing outlives the test, and returned, with any SIGKILL honcho
    had to send: that is the failure."""
    mark = str(root)
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass  # already gone
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (proc.poll() is None or app_processes(mark)):
        time.sleep(0.2)
    left = app_processes(mark) + ([psutil.Process(proc.pid)] if proc.poll() is None else [])
    described = sorted({describe(p) for p in left})
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    proc.wait()
    log = (root / "app.log").read_text(errors="replace")
    return described + [line for line in log.splitlines() if "sending SIGKILL" in line]


def start_app(root: Path) -> tuple[subprocess.Popen, App]:
    """`make run` on free ports with a store in `root`, in its own process group as in a terminal, once it answers."""
    (root / "data").mkdir()
    web, mlflow_port = _free_port(), _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "RUNBOARD_DATA_ROOT": str(root / "data"), "RUNBOARD_PORT": str(web),
           "RUNBOARD_MLFLOW_PORT": str(mlflow_port), "RUNBOARD_MLFLOW_UI_URL": f"http://127.0.0.1:{mlflow_port}",
           MARK: str(root)}
    env.pop("RUNBOARD_PASSWORD", None)
    log = root / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group, like a terminal's
    try:
        _wait_http(f"http://127.0.0.1:{web}/_stcore/health", proc, log)
        _wait_http(f"http://127.0.0.1:{mlflow_port}/health", proc, log)
    except BaseException:
        stop_app(proc, root)
        raise
    return proc, App(f"http://127.0.0.1:{web}", f"http://127.0.0.1:{mlflow_port}", root, log, env)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    proc, running = start_app(tmp_path_factory.mktemp("e2e"))
    try:
        yield running
    finally:
        left = stop_app(proc, running.store)
        OUTPUT.mkdir(parents=True, exist_ok=True)
        shutil.copy(running.log, OUTPUT / "app.log")
    assert not left, "still running after Ctrl-C to `make run` (killed now):\n" + "\n".join(left)


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
