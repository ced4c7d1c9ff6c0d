"""One table of exit codes: user errors exit 2, service and training failures 1, interrupts 130.

Run: .venv/bin/python -m pytest tests/test_errors.py
"""
from __future__ import annotations

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
