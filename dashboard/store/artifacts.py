"""A run's artifact files, its evaluation (confusion matrix, per-class scores) and its logged model's description."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import streamlit as st
from mlflow.exceptions import MlflowException

from dashboard import refresh
from dashboard.store.connection import ArtifactNotFoundError, cache_key, client, not_found, store_failed
from pipeline import names


def _walk(list_files, root: str | None = None) -> list[dict]:
    """Every file under `root` of an artifact listing, recursively: (path, size) rows by path."""
    rows, folders = [], [root]
    while folders:
        for f in list_files(folders.pop()):
            if f.is_dir:
                folders.append(f.path)
            else:
                rows.append({"path": f.path, "size": f.file_size})
    return sorted(rows, key=lambda row: row["path"])


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _artifacts(uri: str, run_id: str, version: int) -> pd.DataFrame:
    try:
        return pd.DataFrame(_walk(lambda path: client().list_artifacts(run_id, path)), columns=["path", "size"])
    except MlflowException as e:
        raise store_failed(e, f"the artifacts of run {run_id}") from None


def artifacts(run_id: str, version: int) -> pd.DataFrame:
    """The run's artifact files (path, size in bytes); the logged model is listed by model_info."""
    return _artifacts(cache_key(), run_id, int(version))


@st.cache_data(max_entries=refresh.DOWNLOADS_KEPT, show_spinner=False)
def _download(uri: str, artifact_uri: str, version: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tmp, tracking_uri=uri)
            return Path(local).read_bytes()
        except (MlflowException, OSError) as e:  # a dropped connection is an OSError too: not "missing"
            if not_found(e):
                raise ArtifactNotFoundError(f"{artifact_uri.split('/', 3)[-1]} was not logged") from None
            raise store_failed(e, artifact_uri) from None


def artifact_bytes(run_id: str, path: str, version: int) -> bytes:
    """One artifact file of a run; ArtifactNotFoundError when the run never logged it."""
    return _download(cache_key(), f"runs:/{run_id}/{path}", int(version))


def model_file_bytes(artifact_location: str, path: str) -> bytes:
    """One file of a logged model (its files live apart from the run's artifacts in MLflow 3)."""
    return _download(cache_key(), f"{artifact_location.rstrip('/')}/{path}", 0)


def confusion_matrix(run_id: str, version: int) -> tuple[list[str], np.ndarray]:
    """evaluation/confusion_matrix.json as (class names, counts with rows = true class)."""
    doc = json.loads(artifact_bytes(run_id, names.CONFUSION_MATRIX_JSON, version))
    return [str(label) for label in doc["labels"]], np.asarray(doc["matrix"], dtype=np.int64)


def kept_predictions(run_id: str, version: int) -> dict:
    """evaluation/predictions.npz as arrays (no pickle): probabilities, labels, predicted, ids, classes."""
    from pipeline.serving.paired import arrays

    return arrays(artifact_bytes(run_id, names.PREDICTIONS_NPZ, version))


def embedding(run_id: str, version: int) -> dict:
    """evaluation/embedding.npz as arrays (no pickle): xy, labels, predicted, ids."""
    from pipeline.serving.paired import arrays

    return arrays(artifact_bytes(run_id, names.EMBEDDING_NPZ, version))


def calibration(run_id: str, version: int) -> dict:
    """evaluation/calibration.json: ece, mce, bins, temperature, ece_after_temperature."""
    return json.loads(artifact_bytes(run_id, names.CALIBRATION_JSON, version))


def per_class(run_id: str, version: int) -> dict[str, dict[str, float]]:
    """evaluation/per_class.json: precision, recall, f1 and support per class name."""
    return json.loads(artifact_bytes(run_id, names.PER_CLASS_JSON, version))


@st.cache_data(max_entries=refresh.MODEL_INFOS_KEPT, show_spinner=False)
def _model_info(uri: str, run_id: str, version: int) -> dict:
    mlflow.set_tracking_uri(uri)  # get_model_info resolves runs:/ through the global URI
    try:
        info = mlflow.models.get_model_info(f"runs:/{run_id}/{names.MODEL_NAME}")
        files = _walk(lambda path: client().list_logged_model_artifacts(info.model_id, path)) if info.model_id else []
    except (MlflowException, OSError) as e:
        if not_found(e):
            raise ArtifactNotFoundError(f"run {run_id} has no logged model (yet)") from None
        raise store_failed(e, f"the model of run {run_id}") from None
    signature = info.signature
    return {"model_uri": f"runs:/{run_id}/{names.MODEL_NAME}", "model_id": info.model_id,
            "artifact_location": info.artifact_path, "files": files, "flavors": sorted(info.flavors),
            "inputs": str(signature.inputs) if signature else None,
            "outputs": str(signature.outputs) if signature else None,
            "preprocessing": (info.metadata or {}).get(names.PREPROCESSING_KEY)}


def model_info(run_id: str, version: int) -> dict:
    """The run's logged model: URI, signature, preprocessing metadata, files; ArtifactNotFoundError if none."""
    return _model_info(cache_key(), run_id, int(version))
