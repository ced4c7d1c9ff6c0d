"""Ctrl-C to `make run` leaves no process behind, even while a run trains (README, "The two commands").

No browser: `make run` on free ports with a temporary store, a queued run training in the worker's child,
then SIGINT to `make`'s process group as a terminal sends it. Every process that carries the app's
environment mark (make, honcho, web, worker, mlflow ui and its workers, the training child) must be gone
within STOP_SECONDS, with no SIGKILL from honcho, and the run must end KILLED, not stay RUNNING.
Run: .venv/bin/python -m pytest tests/e2e/test_ctrl_c.py -q (about a minute; skip with -m "not e2e").
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

import psutil
import pytest
from mlflow import MlflowClient

from pipeline import names
from tests.e2e.conftest import ROOT, app_processes, start_app, stop_app

pytestmark = pytest.mark.e2e


def _training(client: MlflowClient, run_id: str, timeout: float = 180):
    """The run once its child trains: RUNNING, its pid tagged, a first per-step loss logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get_run(run_id)
        if run.info.status == names.RUNNING and names.TAG_PID in run.data.tags \
                and names.TRAIN_LOSS_STEP in run.data.metrics:
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} not training after {timeout:.0f} s: {run.info.status}")


def _listening(url: str) -> bool:
    address = urlparse(url)
    with socket.socket() as s:
        return s.connect_ex((address.hostname, address.port)) == 0


def test_ctrl_c_to_make_run_stops_every_process_without_sigkill_and_ends_the_run_killed(tmp_path):
    proc, app = start_app(tmp_path)
    try:
        submitted = subprocess.run([sys.executable, "-m", "pipeline", "submit", "--dataset", "digits", "--model", "cnn",
                                    "--epochs", "200", "--experiment", "ctrl-c"],
                                   cwd=ROOT, env=app.env, capture_output=True, text=True, timeout=120, check=True)
        run_id = submitted.stdout.split()[-1]
        client = MlflowClient(app.env["MLFLOW_TRACKING_URI"])
        child = int(_training(client, run_id).data.tags[names.TAG_PID])
        assert child in {p.pid for p in app_processes(str(tmp_path))}  # the mark reaches the training child
    except BaseException:
        stop_app(proc, tmp_path)
        raise

    started = time.monotonic()
    left = stop_app(proc, tmp_path)
    print(f"Ctrl-C to no process left: {time.monotonic() - started:.1f} s", file=sys.stderr)

    assert not left, "after Ctrl-C to `make run`:\n" + "\n".join(left) + "\n" + app.log.read_text()[-3000:]
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert not _listening(app.url) and not _listening(app.mlflow_url)
    run = client.get_run(run_id)
    assert run.info.status == names.KILLED, (run.info.status, run.data.tags.get(names.TAG_ERROR))
