"""Settings from environment variables, each with a default that works on a laptop.

Read at call time (not import time) so tests and the worker can point a process elsewhere.
The README's settings table lists the same names.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the project's own SQLite store under mlruns/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"


def data_root() -> Path:
    """RUNBOARD_DATA_ROOT: where datasets are downloaded and imagefolder: paths must live."""
    return Path(os.environ.get("RUNBOARD_DATA_ROOT") or PROJECT_ROOT / "data").expanduser()
