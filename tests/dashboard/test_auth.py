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


def test_signing_in_with_mlflow_users_needs_a_tracking_server_and_says_so_at_start(monkeypatch, store):
    env = {k: v for k, v in os.environ.items() if k != "RUNBOARD_PASSWORD"}
    out = subprocess.run([sys.executable, "-m", "dashboard.serve"], capture_output=True, text=True, timeout=60,
                         env={**env, "RUNBOARD_SIGN_IN": "mlflow"})  # the test store is SQLite
    assert out.returncode == 2 and out.stderr.startswith("error: RUNBOARD_SIGN_IN=mlflow needs MLFLOW_TRACKING_URI")
    out = subprocess.run([sys.executable, "-m", "dashboard.serve"], capture_output=True, text=True, timeout=60,
                         env={**env, "RUNBOARD_SIGN_IN": "everyone"})
    assert out.returncode == 2 and "RUNBOARD_SIGN_IN='everyone': use `password` or `mlflow`" in out.stderr


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


class Clock:
    """A clock the test moves by hand."""
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_waits_grow_after_five_failures_within_a_minute():
    clock = Clock()
    throttle = auth.Throttle(clock=clock)
    for _ in range(4):
        throttle.failed("10.0.0.9")
        clock.now += 10
    assert throttle.wait_s("10.0.0.9") == 0  # 4 failures: no wait
    throttle.failed("10.0.0.9")  # the 5th within 40 s
    assert throttle.wait_s("10.0.0.9") == 2 and throttle.wait_s("10.0.0.8") == 0  # per client
    clock.now += 2
    assert throttle.wait_s("10.0.0.9") == 0
    throttle.failed("10.0.0.9")
    assert throttle.wait_s("10.0.0.9") == 4  # doubled
    for _ in range(20):
        clock.now += throttle.wait_s("10.0.0.9")
        throttle.failed("10.0.0.9")
    assert throttle.wait_s("10.0.0.9") == 900  # capped at 15 minutes
    throttle.succeeded("10.0.0.9")
    assert throttle.wait_s("10.0.0.9") == 0


def test_five_failures_spread_over_more_than_a_minute_are_not_throttled_and_a_quiet_spell_forgets():
    clock = Clock()
    throttle = auth.Throttle(clock=clock)
    for _ in range(8):
        throttle.failed("10.0.0.9")
        clock.now += 16  # 5 failures span 64 s
    assert throttle.wait_s("10.0.0.9") == 0
    for _ in range(5):
        throttle.failed("10.0.0.9")
    assert throttle.wait_s("10.0.0.9") > 0
    clock.now += 960 + 1  # longer than the longest wait and a window: forgotten
    assert throttle.wait_s("10.0.0.9") == 0


def test_twenty_wrong_passwords_are_throttled_and_logged_without_the_password(monkeypatch, store, caplog):
    clock = Clock()
    monkeypatch.setattr(auth, "THROTTLE", auth.Throttle(clock=clock))
    monkeypatch.setenv("RUNBOARD_PASSWORD", "s3cret")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    caplog.set_level("WARNING", logger="dashboard.auth")
    for i in range(20):
        at.text_input[0].input(f"guess-{i}")
        at.button[0].click().run()
    errors = [e.value for e in at.error]
    assert errors == ["Too many wrong passwords from your address: try again in 2 s."], errors
    checked = [r.getMessage() for r in caplog.records if "wrong dashboard password" in r.getMessage()]
    assert len(checked) == 5 and checked[-1] == "wrong dashboard password from localhost (5 in a row)"
    assert sum("refused unchecked" in r.getMessage() for r in caplog.records) == 15
    assert not any("guess-" in r.getMessage() or "s3cret" in r.getMessage() for r in caplog.records)
    at.text_input[0].input("s3cret")  # even the right password waits its turn
    at.button[0].click().run()
    assert "Password" in [t.label for t in at.text_input]
    clock.now += 2
    at.text_input[0].input("s3cret")
    at.button[0].click().run()
    assert not at.exception and "Password" not in [t.label for t in at.text_input]
