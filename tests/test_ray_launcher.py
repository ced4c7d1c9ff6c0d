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
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    assert settings.ray_auth_token() is None


def test_a_tracking_server_is_its_own_mlflow_ui(monkeypatch):
    monkeypatch.delenv("RUNBOARD_MLFLOW_UI_URL", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.internal:5000/")
    assert settings.mlflow_ui_url() == "http://tracking.internal:5000"
