"""Login gate and safe server start (dashboard/auth.py, dashboard/serve.py). Run: make test."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import auth, serve

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                             ("0.0.0.0", False), ("192.168.1.5", False), ("myhost", False)])
def test_is_loopback(host, loopback):
    assert auth.is_loopback(host) is loopback


def test_public_bind_without_password_refuses_to_start(monkeypatch):
    monkeypatch.delenv("RUNBOARD_PASSWORD", raising=False)
    env = {k: v for k, v in os.environ.items() if k != "RUNBOARD_PASSWORD"}
    out = subprocess.run([sys.executable, "-m", "dashboard.serve"], capture_output=True, text=True, timeout=60,
                         env={**env, "RUNBOARD_HOST": "0.0.0.0"})
    assert out.returncode == 2
    assert "RUNBOARD_HOST=0.0.0.0 exposes the dashboard" in out.stderr and "RUNBOARD_PASSWORD" in out.stderr


def test_public_bind_with_password_is_allowed(monkeypatch):
    monkeypatch.setenv("RUNBOARD_PASSWORD", "s3cret")
    auth.check_startup("0.0.0.0")


def test_server_flags_come_from_settings(monkeypatch):
    monkeypatch.setenv("RUNBOARD_HOST", "127.0.0.2")
    monkeypatch.setenv("RUNBOARD_PORT", "9123")
    monkeypatch.setenv("RUNBOARD_UPLOAD_MB", "7")
    args = serve.streamlit_args()
    flags = dict(zip(args[5::2], args[6::2]))
    assert flags["--server.address"] == "127.0.0.2" and flags["--server.port"] == "9123"
    assert flags["--server.maxUploadSize"] == "7" and flags["--browser.gatherUsageStats"] == "false"


def test_password_gate(monkeypatch, store):
    monkeypatch.setenv("RUNBOARD_PASSWORD", "s3cret")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and [t.label for t in at.text_input] == ["Password"]
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert "Wrong password." in [e.value for e in at.error]
    at.text_input[0].input("s3cret")
    at.button[0].click().run()
    assert not at.exception and "Password" not in [t.label for t in at.text_input]


def test_no_gate_on_loopback_without_password(monkeypatch, store):
    monkeypatch.delenv("RUNBOARD_PASSWORD", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and "Password" not in [t.label for t in at.text_input]
