"""Runs trained as Ray jobs, end to end: launch, two at once, cancel, a job killed from outside (it
resumes from its checkpoint as its next Ray job), and a worker killed with kill -9 and restarted
while its run trains on.

Run: .venv/bin/python -m pytest tests/cluster -q
"""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from pipeline import names
from pipeline.queue import jobs
from pipeline.queue.ray_launcher import submission_id
from pipeline.runs import lifecycle, tracking
from tests.cluster.conftest import ended, submit, training, wait_for

pytestmark = pytest.mark.cluster


def log_text(run_id: str, timeout: float = 30.0) -> str:
    """The run's logs/train.log: the worker uploads it just after the run ended."""
    client, deadline = tracking.connect(), time.monotonic() + timeout
    while not [a for a in client.list_artifacts(run_id, names.LOG_DIR) if a.path.endswith(names.LOG_NAME)]:
        assert time.monotonic() < deadline, f"run {run_id} has no {names.LOG_DIR}/{names.LOG_NAME}"
        time.sleep(0.5)
    import mlflow

    return mlflow.artifacts.load_text(f"runs:/{run_id}/{names.LOG_DIR}/{names.LOG_NAME}")


def test_launch_ends_finished_with_its_ray_job_node_and_log(finished_runs):
    client = tracking.connect()
    for run_id in finished_runs:
        run = client.get_run(run_id)
        assert run.info.status == names.FINISHED, run.data.tags.get(names.TAG_ERROR)
        assert run.data.tags[names.TAG_RAY_JOB] == submission_id(run_id) == f"runboard-{run_id}"
        assert run.data.tags[names.TAG_RAY_NODE].startswith("127.0.0.1 (")
        assert f"run {run_id} finished" in log_text(run_id)
        assert names.TEST_ACCURACY in run.data.metrics


def test_two_runs_at_once_keep_every_step(finished_runs):
    client = tracking.connect()
    runs = [client.get_run(r) for r in finished_runs]
    started = [float(r.data.tags[names.TAG_STARTED]) for r in runs]
    assert max(started) * 1000 < min(r.info.end_time for r in runs), "the two runs did not train at the same time"
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, names.TRAIN_LOSS_STEP)]
        expected = int(run.data.tags[names.TAG_STEPS_PER_EPOCH]) * int(run.data.tags[names.TAG_EPOCHS_RUN])
        assert len(steps) == len(set(steps)) == expected
        assert [m.step for m in client.get_metric_history(run.info.run_id, names.VAL_LOSS)] == [1, 2]


@pytest.fixture(scope="module")
def long_runs(worker) -> dict[str, str]:
    """Two long runs training at once on Ray, to be stopped from the dashboard and from outside."""
    runs = {"cancel": submit(epochs=200, run_name="to-cancel"), "kill": submit(epochs=200, run_name="killed-outside")}
    for run_id in runs.values():
        training(run_id)
    return runs


def test_cancel_while_running_ends_killed_with_what_it_logged(long_runs):
    run_id = long_runs["cancel"]
    assert "stop requested" in jobs.cancel(run_id)
    run = ended(run_id, 90, names.KILLED)
    assert "cancel" in run.data.tags[names.TAG_ERROR]
    assert names.TRAIN_LOSS_STEP in run.data.metrics  # what it logged stays
    assert log_text(run_id)


def _training_process(run_id: str) -> psutil.Process:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if run_id in cmdline and "pipeline" in cmdline and "-c" not in cmdline:
            return process
    raise AssertionError(f"no training process of {run_id}")


def test_a_ray_job_killed_from_outside_fails_with_rays_reason_and_resumes_as_its_next_job(long_runs):
    run_id = long_runs["kill"]
    run = wait_for(run_id, lambda r: int(r.data.tags.get(names.TAG_CHECKPOINT) or 0) >= 1, 120, "checkpointed")
    os.kill(_training_process(run_id).pid, signal.SIGKILL)  # what a lost node or the OOM killer does to it
    run = wait_for(run_id, lambda r: lifecycle.attempt_of(r) == 2, 90, "requeued as attempt 2")
    reason = run.data.tags[names.TAG_ATTEMPT_REASON]  # attempt 1 ended FAILED in Ray's words
    assert reason.startswith("Ray: ") and "137" in reason, reason
    killed_at = int(run.data.tags.get(names.TAG_CHECKPOINT) or 0)
    run = wait_for(run_id, lambda r: r.data.tags.get(names.TAG_RAY_JOB) == submission_id(run_id, 2)
                   and int(r.data.tags.get(names.TAG_CHECKPOINT) or 0) > killed_at, 180,
                   "training on as a second Ray job past its checkpoint")
    assert run.info.status == names.RUNNING
    assert "stop requested" in jobs.cancel(run_id)  # 200 epochs: no need to see them all
    ended(run_id, 90, names.KILLED)
    steps = [m.step for m in tracking.connect().get_metric_history(run_id, names.TRAIN_LOSS_STEP)]
    assert len(steps) == len(set(steps)) and max(steps) == len(steps)  # no step twice, none missing
    deadline = time.monotonic() + 60  # attempt 1's log is there already; attempt 2's joins it once it ended
    while "# ---- attempt 2" not in (log := log_text(run_id)) and time.monotonic() < deadline:
        time.sleep(1)
    assert "# ---- attempt 2: Ray: " in log and "resumed from the checkpoint of epoch" in log, log[-3000:]


def test_a_worker_killed_and_restarted_adopts_its_running_ray_job(worker):
    run_id = submit(epochs=12, run_name="outlives-its-worker")
    training(run_id)
    worker.kill9()
    worker.start()
    run = ended(run_id, 240, names.FINISHED)
    assert names.TAG_ADOPTED in run.data.tags and names.TAG_ORPHANED not in run.data.tags
    assert f"run {run_id} finished" in log_text(run_id)
