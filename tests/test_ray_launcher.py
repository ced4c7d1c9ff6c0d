"""The Ray launcher's pure parts, without a cluster (tests/cluster runs it on a real Ray head).

Run: .venv/bin/python -m pytest tests/test_ray_launcher.py -q
"""
from __future__ import annotations

import pytest

from pipeline import settings
from pipeline.queue import launcher, ray_launcher


def test_the_submission_id_is_derived_from_the_run_id_and_shell_safe():
    assert ray_launcher.submission_id("0123abcd") == "runboard-0123abcd"
    assert ray_launcher.submission_id("0123abcd", attempt=2) == "runboard-0123abcd-2"  # Ray never reuses an id
    with pytest.raises(ValueError):
        ray_launcher.submission_id("x; rm -rf /")


def test_rays_reason_is_its_first_line_without_the_log():
    message = "Job entrypoint command failed with exit code 137, last available logs (truncated to 20,000 chars):\nKilled\n"
    assert ray_launcher._reason(message) == "Ray: Job entrypoint command failed with exit code 137"
    assert ray_launcher._reason(None) == "Ray: the job failed"


def test_an_unknown_launcher_names_the_choices(monkeypatch):
    monkeypatch.setenv("RUNBOARD_LAUNCHER", "slurm")
    with pytest.raises(settings.SettingError, match="local, ray; got 'slurm'"):
        launcher.from_settings(1)


def test_ray_settings(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "head:8265")
    assert settings.ray_address() == "http://head:8265"


def test_the_ray_token_comes_from_a_file_only_its_owner_reads(monkeypatch, tmp_path):
    for name in ("RUNBOARD_RAY_TOKEN_FILE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert settings.ray_auth_token() is None  # a cluster without token authentication
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-the-environment")
    assert settings.ray_auth_token() == "from-the-environment"
    token = tmp_path / "ray-token"
    token.touch(mode=0o600)
    token.write_text("from-the-file\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))  # Ray's own name for the file
    assert settings.ray_auth_token() == "from-the-file"
    monkeypatch.setenv("RUNBOARD_RAY_TOKEN_FILE", str(tmp_path / "missing"))  # ours wins over Ray's
    with pytest.raises(settings.SettingError, match=r"^RUNBOARD_RAY_TOKEN_FILE=\S+/missing cannot be read"):
        settings.ray_auth_token()
    monkeypatch.setenv("RUNBOARD_RAY_TOKEN_FILE", str(token))
    token.chmod(0o644)
    with pytest.raises(settings.SettingError, match="can be read by other users: chmod 600 it"):
        settings.ray_auth_token()
    token.chmod(0o600)
    token.write_text("")
    with pytest.raises(settings.SettingError, match="is empty"):
        settings.ray_auth_token()


def test_a_refused_token_is_one_line_that_names_the_file_and_the_setting(monkeypatch):
    monkeypatch.setenv("RUNBOARD_RAY_TOKEN_FILE", "/etc/runboard/ray-token")
    assert ray_launcher.refusal("http://head:8265", token_sent=True) == (
        "Ray at http://head:8265 refused the job: token authentication is on and the token from "
        "RUNBOARD_RAY_TOKEN_FILE=/etc/runboard/ray-token is not the cluster's; set RUNBOARD_RAY_TOKEN_FILE to the "
        "cluster's token file (make cluster writes mlruns/cluster/ray-token)")
    assert "and no token was sent; set RUNBOARD_RAY_TOKEN_FILE" in ray_launcher.refusal("http://head:8265", False)


def test_a_tracking_server_is_its_own_mlflow_ui(monkeypatch):
    monkeypatch.delenv("RUNBOARD_MLFLOW_UI_URL", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.internal:5000/")
    assert settings.mlflow_ui_url() == "http://tracking.internal:5000"
