"""One table of exit codes: user errors exit 2, service and training failures 1, interrupts 130.

Run: .venv/bin/python -m pytest tests/test_errors.py
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from pipeline import errors
from pipeline.config import ConfigError
from pipeline.queue.jobs import JobError
from pipeline.runs.tracking import TrackingError
from pipeline.imaging.images import ImageError
from pipeline.serving.model_refs import ModelError
from pipeline.serving.registry import RegistryError
from pipeline.settings import SettingError
from pipeline.training.data import DataError
from pipeline.training.engine import TrainingError

ROOT = Path(__file__).resolve().parents[1]


def test_every_user_error_exits_2_and_every_failure_1():
    for kind in (ConfigError, DataError, JobError, ModelError, RegistryError, ImageError, SettingError):
        assert errors.exit_code(kind("x")) == 2, kind
    for kind in (TrackingError, TrainingError):
        assert errors.exit_code(kind("x")) == 1, kind
    assert errors.exit_code(KeyboardInterrupt()) == 130


def test_run_command_prints_one_line_and_returns_the_code(capsys):
    def refuse():
        raise ConfigError("lr must be > 0, got -1")

    assert errors.run_command(refuse) == 2
    assert capsys.readouterr().err == "error: lr must be > 0, got -1\n"
    assert errors.run_command(lambda: 0) == 0


STOPPED_WRITES = """
import os, random, signal, sys, threading
from mlflow import MlflowClient
from pipeline import errors

client = MlflowClient(sys.argv[1])
experiment = client.create_experiment("stopped")
errors.interrupt_on_stop_signals()
random.seed(0)
for i in range(int(sys.argv[2])):  # SIGTERM at a random moment of a stream of store writes
    run_id = client.create_run(experiment).info.run_id
    threading.Timer(random.uniform(0.01, 0.2), os.kill, (os.getpid(), signal.SIGTERM)).start()
    try:
        for step in range(1_000_000):
            client.log_metric(run_id, "loss", 1.0, step=step)
    except KeyboardInterrupt:
        pass
    client.set_terminated(run_id, "KILLED")  # the lock must be free: the run records its end
print("ended", i + 1)
"""


def test_a_stop_during_a_store_write_waits_for_it_so_the_run_can_record_its_end(tmp_path):
    # Raised in the middle of a SQLite write, KeyboardInterrupt left the lock held: set_terminated then
    # failed after SQLite's 20 s wait ("database is locked") in 9 of 30 tries; the worker had to SIGKILL.
    done = subprocess.run([sys.executable, "-c", STOPPED_WRITES, f"sqlite:///{tmp_path / 'm.db'}", "10"],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0 and "ended 10" in done.stdout, done.stderr[-2000:]


def test_a_stop_outside_the_store_interrupts_at_once_and_inside_it_right_after(tmp_path):
    script = """
import os, signal, time
from pipeline import errors

errors.interrupt_on_stop_signals()
store = {"__name__": "sqlalchemy.engine.stand_in", "os": os, "signal": signal, "time": time}
exec("def write():\\n    os.kill(os.getpid(), signal.SIGTERM)\\n    time.sleep(0.3)\\n    return 'written'", store)
try:
    print(store["write"]())  # the store's code runs to its end
    time.sleep(5)
except KeyboardInterrupt as e:
    print("interrupted after it:", e)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    print("not interrupted")
except KeyboardInterrupt as e:
    print("interrupted at once:", e)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.stdout.splitlines() == ["written", f"interrupted after it: signal {signal.SIGTERM.value}",
                                        f"interrupted at once: signal {signal.SIGTERM.value}"], done.stderr
