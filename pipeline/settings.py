"""Settings from environment variables, each with a default that works on a laptop.

Read at call time (not import time) so tests and the worker can point a process elsewhere.
The settings table in docs/settings.md lists the same names.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from pipeline.errors import UserError
from pipeline.names import LOG_NAME

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingError(UserError):
    """An environment variable holds a value that cannot be used; the message names it."""


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the project's own SQLite store under mlruns/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"


def tracking_credentials() -> Path | None:
    """RUNBOARD_MLFLOW_CREDENTIALS: a file (MLflow's credentials format, 0600) with the user and password for a
    tracking server that asks for a login. Its path travels to Ray jobs; the password never does."""
    raw = os.environ.get("RUNBOARD_MLFLOW_CREDENTIALS", "")
    return Path(raw).expanduser() if raw else None


def use_tracking_credentials() -> None:
    """Give MLflow's client, in this process only, the user and password of RUNBOARD_MLFLOW_CREDENTIALS
    (it reads MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD); refuse credentials inside the URI."""
    import configparser
    import urllib.parse

    if urllib.parse.urlsplit(tracking_uri()).password:
        raise SettingError("MLFLOW_TRACKING_URI holds a password, which `ps`, logs and Ray's job list would show: "
                           "put the user and password in a file named by RUNBOARD_MLFLOW_CREDENTIALS instead")
    path = tracking_credentials()
    if path is None or os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        return
    config = configparser.ConfigParser()
    config.read_string(_secret("RUNBOARD_MLFLOW_CREDENTIALS", path))
    if "mlflow" not in config:
        raise SettingError(f"RUNBOARD_MLFLOW_CREDENTIALS={path} has no [mlflow] section (mlflow_tracking_username, "
                           "mlflow_tracking_password)")
    section = config["mlflow"]
    os.environ["MLFLOW_TRACKING_USERNAME"] = section.get("mlflow_tracking_username", "")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = section.get("mlflow_tracking_password", "")


def sign_in() -> str:
    """RUNBOARD_SIGN_IN: how people sign into the dashboard. `password` (the default): one shared password, asked
    only off loopback or when RUNBOARD_PASSWORD is set. `mlflow`: each person signs in with their own user of a
    tracking server that runs MLflow's basic-auth app, and the dashboard calls MLflow as that person, so MLflow's
    permissions apply (`make cluster` sets it)."""
    value = (os.environ.get("RUNBOARD_SIGN_IN") or "password").strip().lower()
    if value not in ("password", "mlflow"):
        raise SettingError(f"RUNBOARD_SIGN_IN={value!r}: use `password` or `mlflow`")
    if value == "mlflow" and not tracking_uri().startswith(("http://", "https://")):
        raise SettingError(f"RUNBOARD_SIGN_IN=mlflow needs MLFLOW_TRACKING_URI to be a tracking server with "
                           f"MLflow's basic-auth app, not {tracking_uri()}")
    return value


def artifacts_destination() -> str | None:
    """RUNBOARD_ARTIFACTS_DESTINATION: where make cluster's tracking server keeps artifacts (s3://bucket/prefix,
    with the bucket's endpoint and keys in its environment: MLFLOW_S3_ENDPOINT_URL, AWS_*); default a folder."""
    return os.environ.get("RUNBOARD_ARTIFACTS_DESTINATION") or None


def data_root() -> Path:
    """RUNBOARD_DATA_ROOT: where datasets are downloaded and imagefolder: paths must live."""
    return Path(os.environ.get("RUNBOARD_DATA_ROOT") or PROJECT_ROOT / "data").expanduser()


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SettingError(f"{name} must be an integer, got {raw!r}") from None


def host() -> str:
    """RUNBOARD_HOST: the address the dashboard and mlflow ui bind to; loopback unless told otherwise."""
    return os.environ.get("RUNBOARD_HOST") or "127.0.0.1"


def port() -> int:
    """RUNBOARD_PORT (or PORT, as platforms set it): the dashboard's port."""
    return _int("RUNBOARD_PORT", _int("PORT", 8501))


def mlflow_port() -> int:
    """RUNBOARD_MLFLOW_PORT: where `mlflow ui` listens beside the dashboard."""
    return _int("RUNBOARD_MLFLOW_PORT", 5000)


def mlflow_ui_url() -> str:
    """RUNBOARD_MLFLOW_UI_URL: the base URL the dashboard links to for MLflow's UI; a tracking server
    serves its own UI, so against one it is the tracking URI."""
    server = tracking_uri() if tracking_uri().startswith(("http://", "https://")) else None
    return (os.environ.get("RUNBOARD_MLFLOW_UI_URL") or server or f"http://{host()}:{mlflow_port()}").rstrip("/")


def worker_concurrency() -> int:
    """RUNBOARD_WORKER_CONCURRENCY: runs trained at once; default one per GPU, one on a CPU-only machine."""
    default = 1
    try:
        import torch

        default = max(1, torch.cuda.device_count())
    except ImportError:
        pass
    return max(1, _int("RUNBOARD_WORKER_CONCURRENCY", default))


def upload_limit_mb() -> int:
    """RUNBOARD_UPLOAD_MB: the largest image file the playground accepts, in megabytes."""
    return max(1, _int("RUNBOARD_UPLOAD_MB", 10))


def launcher() -> str:
    """RUNBOARD_LAUNCHER: how the worker starts training processes: `local` (child processes) or `ray` (Ray Jobs)."""
    return os.environ.get("RUNBOARD_LAUNCHER") or "local"


def ray_address() -> str:
    """RAY_ADDRESS (Ray's own name): the Ray cluster's job API, http://HEAD:8265, for RUNBOARD_LAUNCHER=ray."""
    address = os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265"
    return address if "://" in address else f"http://{address}"


def ray_token_file() -> tuple[str, Path] | None:
    """RUNBOARD_RAY_TOKEN_FILE, else RAY_AUTH_TOKEN_PATH (Ray's own name): the file (0600) holding the Ray
    cluster's token where it runs with RAY_AUTH_MODE=token; `make cluster` writes mlruns/cluster/ray-token.
    The variable's name comes with it, for messages."""
    for name in ("RUNBOARD_RAY_TOKEN_FILE", "RAY_AUTH_TOKEN_PATH"):
        if os.environ.get(name):
            return name, Path(os.environ[name]).expanduser()
    return None


def ray_auth_token() -> str | None:
    """The Ray cluster's token: read from ray_token_file(), else RAY_AUTH_TOKEN (which every child process's
    environment shows: prefer the file). A secret: sent as a request header only, never logged or tagged,
    never passed to a job."""
    named = ray_token_file()
    if named is None:
        return os.environ.get("RAY_AUTH_TOKEN", "").strip() or None
    token = _secret(*named).strip()
    if not token:
        raise SettingError(f"{named[0]}={named[1]} is empty: it should hold the Ray cluster's token")
    return token


def _secret(name: str, path: Path) -> str:
    """What a secret file named by the variable `name` holds; a SettingError when it cannot be read or other
    users can read it."""
    try:
        text = path.read_text()
    except OSError as e:
        raise SettingError(f"{name}={path} cannot be read: {e.strerror}") from None
    if path.stat().st_mode & 0o077:
        raise SettingError(f"{name}={path} can be read by other users: chmod 600 it")
    return text


def ray_python() -> str:
    """RUNBOARD_RAY_PYTHON: the Python that runs a training job on a Ray node; default this one (the same
    path on every node, e.g. the project's .venv installed alike everywhere)."""
    return os.environ.get("RUNBOARD_RAY_PYTHON") or sys.executable


def max_attempts() -> int:
    """RUNBOARD_MAX_ATTEMPTS: attempts a run gets when its process or worker dies (1: never resume on its own)."""
    return max(1, _int("RUNBOARD_MAX_ATTEMPTS", 3))


def checkpoint_seconds() -> int | None:
    """RUNBOARD_CHECKPOINT_SECONDS: a checkpoint within an epoch this often (every epoch's end has one
    anyway); 0 keeps to epoch ends. Default 300: a long epoch cut off loses five minutes, not hours."""
    seconds = _int("RUNBOARD_CHECKPOINT_SECONDS", 300)
    if seconds < 0:
        raise SettingError(f"RUNBOARD_CHECKPOINT_SECONDS must be 0 or more, got {seconds}")
    return seconds or None


def log_dir() -> Path:
    """RUNBOARD_LOG_DIR: where the worker writes a run's log while it trains (uploaded when it ends)."""
    return Path(os.environ.get("RUNBOARD_LOG_DIR") or PROJECT_ROOT / "mlruns" / "logs").expanduser()


def run_log(run_id: str, folder: Path | None = None) -> Path:
    """Where a worker writes a run's log while it trains: <RUNBOARD_LOG_DIR or `folder`>/<run id>/train.log."""
    return (folder or log_dir()) / run_id / LOG_NAME


def memory_budget_mb() -> int:
    """RUNBOARD_MEMORY_BUDGET_MB: an image folder larger than this (as uint8 pixels) streams from disk."""
    return max(0, _int("RUNBOARD_MEMORY_BUDGET_MB", 4096))


def predict_threads() -> int:
    """RUNBOARD_PREDICT_THREADS: torch threads for the dashboard's predictions. 1 keeps one image fast
    while training shares the CPU (more threads then wait on each other); raise it for big batches."""
    return max(1, _int("RUNBOARD_PREDICT_THREADS", 1))


def worker_prewarm() -> bool:
    """RUNBOARD_WORKER_PREWARM: keep a spare training process ready (~0.6 GB memory): runs start in ~1 s."""
    return os.environ.get("RUNBOARD_WORKER_PREWARM", "1").strip().lower() not in ("0", "false", "no", "off")
