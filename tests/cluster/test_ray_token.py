"""Ray's token authentication on the team setup's head: only a holder of the token can launch.

The head runs with RAY_AUTH_MODE=token and its token in a 0600 file (RUNBOARD_RAY_TOKEN_FILE); the worker's
launcher sends it, a request without it is refused, a wrong or missing token fails the run with one line,
and the token shows in no command line, process environment, job environment or job log.

Run: .venv/bin/python -m pytest tests/cluster/test_ray_token.py -q -m cluster -p no:randomly
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest

from pipeline import names
from pipeline.cluster import services
from pipeline.queue import launcher as launchers
from pipeline.queue import ray_launcher
from pipeline.queue.worker import Worker
from pipeline.runs import lifecycle, tracking
from tests.cluster.conftest import submit

pytestmark = pytest.mark.cluster


def _client(cluster):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.ray_address,
                               headers={"Authorization": f"Bearer {cluster.ray_token_file.read_text()}"})


def _wait_job(client, job_id: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while (status := str(client.get_job_status(job_id))) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, f"Ray job {job_id} still {status} after {timeout:.0f} s"
        time.sleep(0.5)
    return status


def test_the_token_is_made_once_in_a_file_only_its_owner_reads(cluster):
    path = cluster.ray_token_file
    assert path.stat().st_mode & 0o777 == 0o600
    token = path.read_text()
    assert len(token) == 64 and int(token, 16)  # 256 random bits, as `ray get-auth-token --generate` makes
    assert services.ray_token(path).read_text() == token  # the next start keeps it: clients go on working


def test_a_submission_without_the_token_or_with_a_wrong_one_is_refused(cluster):
    body = json.dumps({"entrypoint": "echo pwned"}).encode()
    for headers, code in (({}, 401), ({"Authorization": "Bearer " + "0" * 64}, 403)):
        request = urllib.request.Request(cluster.ray_address + "/api/jobs/", data=body, method="POST",
                                         headers={"Content-Type": "application/json", **headers})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == code
    # Ray's own client from a clean environment: no token anywhere, as on a stranger's machine
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RUNBOARD_RAY"))}
    done = subprocess.run([sys.executable, "-c", "import sys; from ray.job_submission import JobSubmissionClient; "
                           "JobSubmissionClient(sys.argv[1]).submit_job(entrypoint='echo pwned')", cluster.ray_address],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Authentication required" in done.stderr, done.stderr[-2000:]
    assert not [j for j in _client(cluster).list_jobs() if "pwned" in j.entrypoint]


def _launch_with(launcher, config: dict) -> str:
    """Queue a run and launch it through `launcher` as a worker would; another worker may take a run first."""
    worker = Worker(concurrency=1, launcher=launcher)
    for _ in range(5):
        run_id = submit(epochs=1, **config)
        if lifecycle.claim(worker.client, run_id, worker.name):
            worker._launch(run_id)
            return run_id
    raise AssertionError("the cluster's worker took every run first")


def test_a_wrong_or_missing_token_fails_the_run_with_one_line_and_a_fixed_file_needs_no_restart(
        cluster, tmp_path, monkeypatch):
    wrong = tmp_path / "ray-token"
    wrong.touch(mode=0o600)
    wrong.write_text("0" * 64)
    monkeypatch.setenv("RUNBOARD_RAY_TOKEN_FILE", str(wrong))
    launcher = ray_launcher.RayLauncher(launchers.train_command)  # refused: it says so, and starts anyway
    assert "refused the job: token authentication is on" in launcher.blocked()  # a worker leaves runs queued
    run_id = _launch_with(launcher, {"run_name": "wrong-token"})  # one launched anyway fails with one line
    run = tracking.connect().get_run(run_id)
    assert run.info.status == names.FAILED
    reason = run.data.tags[names.TAG_ERROR]
    assert (f"Ray at {cluster.ray_address} refused the job: token authentication is on and the token from "
            f"RUNBOARD_RAY_TOKEN_FILE={wrong} is not the cluster's; set RUNBOARD_RAY_TOKEN_FILE") in reason
    assert "\n" not in reason and "0" * 64 not in reason

    monkeypatch.delenv("RUNBOARD_RAY_TOKEN_FILE")
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    run_id = _launch_with(ray_launcher.RayLauncher(launchers.train_command), {"run_name": "no-token"})
    run = tracking.connect().get_run(run_id)
    assert run.info.status == names.FAILED
    assert "refused the job: token authentication is on and no token was sent" in run.data.tags[names.TAG_ERROR]

    wrong.write_text(cluster.ray_token_file.read_text())  # corrected where it lives: the launcher reads it again
    monkeypatch.setenv("RUNBOARD_RAY_TOKEN_FILE", str(wrong))
    assert isinstance(launcher.client.list_jobs(), list)
    assert launcher.blocked() is None


def test_the_token_is_in_no_command_line_process_environment_job_or_run(cluster, finished_runs):
    token = cluster.ray_token_file.read_text()
    assert token not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            environ = process.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        assert not [k for k, v in environ.items() if token in v], f"the token is in the environment of {process}"
    client, mlflow = _client(cluster), tracking.connect()
    for run_id in finished_runs:
        info = client.get_job_info(ray_launcher.submission_id(run_id))
        assert info.runtime_env["env_vars"]["MLFLOW_TRACKING_URI"] == cluster.tracking_uri  # it is the job's env
        assert token not in json.dumps(info.runtime_env) and token not in client.get_job_logs(info.submission_id)
        run = mlflow.get_run(run_id)
        assert token not in json.dumps([run.data.params, run.data.tags])


def test_a_jobs_own_process_reaches_ray_with_its_nodes_token_file_not_the_token(cluster):
    """A job that uses Ray itself (ray.init) connects: it inherits the node's RAY_AUTH_MODE and token path."""
    client = _client(cluster)
    script = ("import os, ray; print('environment:', os.environ); ray.init(); "
              "print('cpus:', ray.cluster_resources()['CPU'])")
    job_id = client.submit_job(entrypoint=f"{sys.executable} -c \"{script}\"")
    status, logs = _wait_job(client, job_id), client.get_job_logs(job_id)
    assert status == "SUCCEEDED" and "cpus: 2.0" in logs, logs[-3000:]
    assert "RAY_AUTH_TOKEN_PATH" in logs and cluster.ray_token_file.read_text() not in logs
