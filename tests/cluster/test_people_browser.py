"""Signing in as yourself, in Debian's Chromium against the team setup's dashboard (issue 25): a wrong password,
a READ user who finds Launch closed with the reason, Sign out, an EDIT user who launches, and a reload that asks
again (a browser session's login lives in that session only).

Run: .venv/bin/python -m pytest tests/cluster/test_people_browser.py -q -m cluster
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline import names
from pipeline.queue import jobs
from tests.cluster.test_people import EXPERIMENT, PEOPLE, people  # noqa: F401 (the fixture)

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
OUTPUT = ROOT / "test-output" / "e2e"


@pytest.fixture(scope="module")
def dashboard(cluster):
    """`python -m dashboard.serve` as `make cluster` starts it: people sign in with their MLflow users."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RUNBOARD_SIGN_IN": "mlflow", "RUNBOARD_PORT": str(port)}
    env.pop("RUNBOARD_PASSWORD", None)
    log = open(cluster.root / "people-dashboard.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "dashboard.serve"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, (cluster.root / "people-dashboard.log"
                                                                           ).read_text()[-2000:]
            time.sleep(0.5)
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)
    log.close()


def test_sign_in_as_a_reader_then_as_an_editor_in_the_browser(dashboard, people):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    clone = f"{dashboard}/launch?clone={people['run']}"  # the form opens on the people experiment
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        expect.set_options(timeout=60_000)
        try:
            def sign_in(user: str, password: str) -> None:
                page.get_by_label("Username", exact=True).fill(user)
                page.get_by_label("Password", exact=True).fill(password)
                page.get_by_role("button", name="Sign in").click()

            page.goto(clone)
            sign_in("rita", "not-her-password")
            expect(page.get_by_text("Wrong username or password.")).to_be_visible()
            sign_in("rita", PEOPLE["rita"])
            expect(page.get_by_text("Signed in as rita")).to_be_visible()
            page.goto(clone)  # a reload: a new browser session signs in again
            sign_in("rita", PEOPLE["rita"])
            expect(page.get_by_text("you can read this experiment; launching needs EDIT")).to_be_visible()
            expect(page.get_by_role("button", name="Launch", exact=True)).to_be_disabled()
            OUTPUT.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUTPUT / "people-read-user.png"), full_page=True)
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_label("Username")).to_be_visible()

            before = {r.info.run_id for r in MlflowClient().search_runs([people[EXPERIMENT]])}
            sign_in("eddie", PEOPLE["eddie"])
            expect(page.get_by_text("Signed in as eddie")).to_be_visible()
            page.goto(clone)
            sign_in("eddie", PEOPLE["eddie"])
            expect(page.get_by_text("Cloned from")).to_be_visible()
            expect(page.get_by_text("launching needs EDIT")).to_have_count(0)
            page.get_by_role("button", name="Launch", exact=True).click()
            expect(page.get_by_text("Queued run")).to_be_visible()
        finally:
            browser.close()
    queued = [r for r in MlflowClient().search_runs([people[EXPERIMENT]]) if r.info.run_id not in before]
    assert len(queued) == 1 and queued[0].data.tags[names.TAG_USER] == "eddie"
    jobs.cancel(queued[0].info.run_id)
