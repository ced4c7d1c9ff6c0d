"""The pipeline's MLflow seam: the store, experiments, batched metrics, evaluation files, models.

Everything else hands plain data to these functions (a run's status is lifecycle.py's). Only the
defaults here know that the local store is SQLite with artifacts beside it; any other
MLFLOW_TRACKING_URI (an `mlflow server`) works the same way, with the server choosing where
artifacts go.
"""
from __future__ import annotations

import fcntl
import importlib.metadata
import os
import platform
import re
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from pipeline import names, settings
from pipeline.errors import ServiceError

MAX_BATCH = 1000             # MLflow's limit of metrics per log_batch call
SERVER_CHECK_SECONDS = 5     # how long a tracking server may take to answer /health
FLUSH_SECONDS = 2.0          # metrics reach the store at least this often, so live views see a run move


class TrackingError(ServiceError):
    """The tracking store cannot be used; the message names the URI."""


def connect() -> MlflowClient:
    """Point MLflow at the configured store and check it answers (in seconds, not after retries)."""
    uri = settings.tracking_uri()
    try:
        settings.use_tracking_credentials()
    except settings.SettingError as e:
        raise TrackingError(str(e)) from None
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    mlflow.set_tracking_uri(uri)
    try:
        with _first_open_lock(uri):
            client = MlflowClient(uri)  # opening a new database creates its tables
            client.search_experiments(max_results=1)
    except Exception as e:  # an unopenable database, or a server that refuses us
        if "error code 401" in str(e):
            raise TrackingError(f"the MLflow tracking server {uri} asks for a login"
                                f"{' and refused the one given' if settings.tracking_credentials() else ''}: set "
                                "RUNBOARD_MLFLOW_CREDENTIALS to a 0600 file with your MLflow user and password "
                                "(docs/cluster.md)") from None
        raise TrackingError(f"cannot reach the MLflow tracking store {uri}: {str(e).splitlines()[0]}") from None
    return client


@contextmanager
def _first_open_lock(uri: str):
    """Processes opening a new SQLite store together (dashboard, worker, `mlflow ui`) would race to
    create its tables and fail with "table already exists": take turns through a lock file beside it."""
    db = _sqlite_file(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check_server(uri: str) -> None:
    """MLflow's client retries for minutes; one short request tells a dead server at once."""
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=SERVER_CHECK_SECONDS).close()
    except urllib.error.HTTPError:
        pass  # it answered (e.g. 401 with auth on): the real request will say more
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingError(f"cannot reach the MLflow tracking server {uri}: {reason}") from None


def _sqlite_file(uri: str) -> Path | None:
    prefix = "sqlite:///"  # then a relative path, or a second slash for an absolute one
    if not uri.startswith(prefix):
        return None
    db = Path(unquote(uri[len(prefix):].split("?")[0]))
    return db if db.is_absolute() else Path.cwd() / db


def _local_artifact_root(uri: str) -> Path | None:
    """For a SQLite store, artifacts live in artifacts/ beside the database file."""
    db = _sqlite_file(uri)
    return db.parent / "artifacts" if db else None


def store_stamp() -> tuple[int, ...] | None:
    """Changes whenever a local SQLite store is written (its files' times); None for any other store.

    A waiting worker compares it between polls: a few stat calls instead of a query while idle.
    """
    db = _sqlite_file(settings.tracking_uri())
    if db is None:
        return None
    stamps = []
    for suffix in ("", "-wal", "-journal"):  # whichever journal mode the store runs in
        try:
            stamps.append(os.stat(f"{db}{suffix}").st_mtime_ns)
        except OSError:
            stamps.append(0)
    return tuple(stamps)


def user(client: MlflowClient) -> str:
    """Who is launching, for a run's mlflow.user: the MLflow user `client` signs in as on a tracking server with
    logins (a person in the dashboard, the service account in the worker), else the operating system's user."""
    import getpass

    host_creds = getattr(getattr(getattr(client, "_tracking_client", None), "store", None), "get_host_creds", None)
    return (host_creds().username if callable(host_creds) else None) or getpass.getuser()


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created (or restored from the trash) when needed."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    root = _local_artifact_root(settings.tracking_uri())
    location = (root / re.sub(r"[^A-Za-z0-9._-]+", "_", name)).as_uri() if root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # another process created it first
        return client.get_experiment_by_name(name).experiment_id


def environment_tags(device_name: str) -> dict[str, str]:
    import torch

    return {names.TAG_DEVICE: device_name, names.TAG_TORCH: torch.__version__,
            names.TAG_TORCHVISION: importlib.metadata.version("torchvision"),
            names.TAG_CUDA: str(torch.version.cuda or "none"),
            names.TAG_PYTHON: platform.python_version(), names.TAG_HOST: platform.node()}


class MlflowTracker:
    """Buffers metrics and writes them with log_batch: one call per flush, not one per step."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client, self.run_id, self.pending = client, run_id, []
        self.flushed = time.monotonic()

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now, step) for k, v in values.items()]
        if time.monotonic() - self.flushed >= FLUSH_SECONDS:  # long epochs: the live curve still moves
            self.flush()

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        self.flushed = time.monotonic()
        for i in range(0, len(pending), MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=pending[i:i + MAX_BATCH], synchronous=True)


def log_json(client: MlflowClient, run_id: str, obj, path: str) -> None:
    client.log_dict(run_id, obj, path)


def log_figure(client: MlflowClient, run_id: str, figure, path: str) -> None:
    client.log_figure(run_id, figure, path)


def log_arrays(client: MlflowClient, run_id: str, arrays: dict[str, np.ndarray], path: str) -> None:
    """Arrays as one compressed .npz (numeric and string arrays only: it loads with allow_pickle=False)."""
    import tempfile

    folder, name = path.rsplit("/", 1) if "/" in path else ("", path)
    with tempfile.TemporaryDirectory(prefix="runboard-arrays-") as tmp:
        np.savez_compressed(Path(tmp) / name, **arrays)
        client.log_artifact(run_id, str(Path(tmp) / name), folder or None)


def log_model(model, preprocessing: dict, register: str = ""):
    """Log `model` (pt2, no pickle) as `model` of the active run, with signature and preprocessing.

    The input example is a batch of 2: a batch of 1 would specialize the exported graph to size 1.
    pip requirements are given, not inferred (inference costs ~10 s per model).
    """
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    channels, (h, w) = preprocessing["channels"], preprocessing["image_size"]
    example = np.zeros((2, channels, h, w), dtype=np.float32)
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, channels, h, w))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(preprocessing["classes"])))]))
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                    f"numpy=={np.__version__}"]
    return mlflow.pytorch.log_model(
        model.cpu().eval(), name=names.MODEL_NAME, signature=signature, input_example=example,
        serialization_format="pt2", pip_requirements=requirements,
        metadata={names.PREPROCESSING_KEY: preprocessing}, registered_model_name=register or None)


def log_onnx_model(model: bytes, metadata: dict, register: str = ""):
    """Log ONNX bytes (an exported variant) as `model` of the active run: MLflow's ONNX flavor, one file.

    The signature takes float32 (N, C, H, W) normalized images and returns logits, as the pt2 model does.
    """
    import mlflow.onnx
    import onnx
    import onnxruntime
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    proto = onnx.load_from_string(model)
    pre = metadata[names.PREPROCESSING_KEY]
    channels, (h, w), classes = int(pre["channels"]), pre["image_size"], len(pre["classes"])
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, channels, h, w), name=proto.graph.input[0].name)]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes), name=proto.graph.output[0].name)]))
    requirements = [f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}",
                    f"numpy=={np.__version__}", f"mlflow=={mlflow.__version__}"]
    return mlflow.onnx.log_model(
        proto, name=names.MODEL_NAME, signature=signature, pip_requirements=requirements, metadata=metadata,
        input_example=np.zeros((2, channels, h, w), dtype=np.float32), save_as_external_data=False,
        onnx_execution_providers=["CPUExecutionProvider"], registered_model_name=register or None)
