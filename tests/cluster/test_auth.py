"""The team setup's tracking server asks for a login (MLflow's basic-auth app), and no password leaks: not in
`ps`, a run's params and tags, Ray's job environment or the logs (issue 25).

Run: .venv/bin/python -m pytest tests/cluster/test_auth.py -q -m cluster
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest
from mlflow import MlflowClient

from pipeline import names
from pipeline.cluster import services

pytestmark = pytest.mark.cluster

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def call(url: str, path: str, user: str | None = None, password: str | None = None, body: dict | None = None,
         method: str | None = None) -> int:
    """The HTTP status of one REST call, as a person's script or curl would make it."""
    request = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None,
                                     method=method, headers={"Content-Type": "application/json"})
    if user:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def admin(cluster) -> tuple[str, str]:
    return services.ADMIN, (cluster.root / "auth" / "admin-password").read_text().strip()


def test_no_login_no_default_password_and_secrets_only_their_owner_reads(cluster):
    assert call(cluster.tracking_uri, SEARCH) == 401
    assert call(cluster.tracking_uri, SEARCH, "admin", "password1234") == 401  # MLflow's old default never works
    assert call(cluster.tracking_uri, SEARCH, *admin(cluster)) == 200
    auth = cluster.root / "auth"
    assert auth.stat().st_mode & 0o777 == 0o700
    for name in ("admin-password", "service-password", "flask-secret", "admin.ini", "service.ini"):
        assert (auth / name).stat().st_mode & 0o777 == 0o600, name
    assert "password" not in (auth / "auth.ini").read_text().replace("admin_password", "")  # none in the config


def test_a_read_user_reads_but_cannot_write_until_given_edit(cluster):
    url, (user, password) = cluster.tracking_uri, admin(cluster)
    assert call(url, "/api/2.0/mlflow/users/create", user, password, {"username": "ana", "password": "ana-password-1234"},
                "POST") == 200
    experiment = MlflowClient(url).create_experiment("auth-read-edit")  # the service account's
    run = {"experiment_id": experiment, "run_name": "by-ana"}
    assert call(url, SEARCH, "ana", "ana-password-1234") == 200  # READ is every user's default
    assert call(url, "/api/2.0/mlflow/runs/create", "ana", "ana-password-1234", run, "POST") == 403
    assert call(url, "/api/3.0/mlflow/users/permissions/grant", user, password,  # MLflow 3.17's permission API
                {"username": "ana", "resource_type": "experiment", "resource_id": experiment, "permission": "EDIT"},
                "POST") == 200
    assert call(url, "/api/2.0/mlflow/runs/create", "ana", "ana-password-1234", run, "POST") == 200
    assert call(url, "/api/2.0/mlflow/runs/create", "ana", "wrong", run, "POST") == 401


def test_no_password_in_ps_params_tags_ray_jobs_or_logs(cluster, finished_runs):
    from pipeline.queue.ray_launcher import RayLauncher

    auth = cluster.root / "auth"
    secrets = [(auth / name).read_text().strip() for name in ("admin-password", "service-password")]
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    client = MlflowClient(cluster.tracking_uri)
    jobs = RayLauncher(lambda run_id: [], address=cluster.ray_address).client
    for run_id in finished_runs:
        run = client.get_run(run_id)
        job = jobs.get_job_info(run.data.tags[names.TAG_RAY_JOB])
        places = {"ps": processes, "params": json.dumps(run.data.params), "tags": json.dumps(run.data.tags),
                  "Ray job": json.dumps(job.runtime_env) + json.dumps(job.metadata)}
        assert "RUNBOARD_MLFLOW_CREDENTIALS" in places["Ray job"]  # the file's path travels, not what is in it
        for secret in secrets:
            assert not [where for where, text in places.items() if secret in text]
    logs = [p for p in cluster.root.rglob("*.log") if p.is_file()]
    assert logs
    for path in logs:
        text = path.read_text(errors="replace")
        assert not [s for s in secrets if s in text], path
    assert os.environ.get("MLFLOW_TRACKING_USERNAME") == services.SERVICE  # this process calls as the service


def test_without_a_login_every_process_says_how_to_give_one(cluster, monkeypatch, tmp_path):
    from pipeline.runs import tracking

    for name in ("RUNBOARD_MLFLOW_CREDENTIALS", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(tracking.TrackingError, match="asks for a login: set RUNBOARD_MLFLOW_CREDENTIALS"):
        tracking.connect()
    wrong = services.write_credentials(tmp_path / "wrong.ini", services.SERVICE, "not-the-password-at-all")
    monkeypatch.setenv("RUNBOARD_MLFLOW_CREDENTIALS", str(wrong))
    with pytest.raises(tracking.TrackingError, match="refused the one given"):
        tracking.connect()
    wrong.chmod(0o644)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    with pytest.raises(tracking.TrackingError, match="can be read by other users"):
        tracking.connect()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cluster.tracking_uri.replace("://", "://runboard-service:pw@"))
    with pytest.raises(tracking.TrackingError, match="holds a password"):
        tracking.connect()
