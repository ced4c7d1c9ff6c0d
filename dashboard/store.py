"""The dashboard's one door to MLflow: cached reads that return plain data (DataFrames, dicts).

Pages never call MlflowClient themselves. The client is a cached resource; queries are cached
with a short TTL and keyed by what changes their answer (run ids and their last update), so a
rerun of a page costs no MLflow query at all.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import streamlit as st
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from dashboard import tables
from pipeline import tracking
from pipeline.tracking import TrackingError

TTL_SECONDS = 5  # how stale a listing may be; live views refresh faster through fragments
CONFUSION_MATRIX, PER_CLASS = "evaluation/confusion_matrix.json", "evaluation/per_class.json"
MISCLASSIFIED = "evaluation/misclassified.png"

__all__ = ["client", "TrackingError"]


@st.cache_resource(show_spinner=False)
def _client(uri: str) -> MlflowClient:
    return tracking.connect()


def client() -> MlflowClient:
    """The MLflow client for the configured store; raises TrackingError when it cannot be reached."""
    return _client(tracking.settings.tracking_uri())


# ---------------------------------------------------------------------------------------------
# runs, histories, artifacts and models for the runs / compare / run detail pages (issue 3)

# A page must fail in seconds, not after MLflow's default of 7 retries with backoff (minutes);
# values a user exported win.
for _name, _value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                      ("MLFLOW_HTTP_REQUEST_TIMEOUT", "15"), ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")):
    os.environ.setdefault(_name, _value)

MAX_RUNS = 5000                 # newest runs listed per query; more belong in a filter
HISTORY_CACHE_POINTS = 5_000_000  # metric points kept in memory (~120 MB) across sessions
BULK_RUNS = 500                   # runs per bulk history query (SQL parameter limits)
FETCH_THREADS = 8               # parallel history requests to a tracking server


class RunNotFoundError(LookupError):
    """The run does not exist in this store, or was deleted."""


class ArtifactNotFoundError(LookupError):
    """The run has no such artifact (not logged yet, or never: e.g. a failed run)."""


class FilterError(ValueError):
    """The free-text MLflow filter string is not valid."""


ERRORS = (TrackingError, RunNotFoundError, ArtifactNotFoundError, FilterError)  # what pages show in place


def _uri() -> str:
    return tracking.settings.tracking_uri()


def _store_failed(e: Exception, what: str) -> TrackingError:
    return TrackingError(f"the MLflow store {_uri()} failed while reading {what}: {str(e).splitlines()[0]}")


def _not_found(e: Exception) -> bool:
    return isinstance(e, FileNotFoundError) or (isinstance(e, MlflowException)
                                                and e.error_code == "RESOURCE_DOES_NOT_EXIST")


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def _experiments(uri: str) -> pd.DataFrame:
    try:
        found = client().search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=MAX_RUNS)
    except MlflowException as e:
        raise _store_failed(e, "experiments") from None
    return pd.DataFrame([{"experiment_id": e.experiment_id, "name": e.name, "last_update": e.last_update_time}
                         for e in found], columns=["experiment_id", "name", "last_update"])


def experiments() -> pd.DataFrame:
    """Active experiments (experiment_id, name, last_update), most recently updated first."""
    return _experiments(_uri()).sort_values("last_update", ascending=False, ignore_index=True)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def _runs(uri: str, experiment_ids: tuple[str, ...], filter_string: str) -> pd.DataFrame:
    found, token = [], None
    try:
        while len(found) < MAX_RUNS:  # one call unless an experiment holds more than a page of runs
            page = client().search_runs(list(experiment_ids), filter_string, ViewType.ACTIVE_ONLY,
                                        max_results=min(1000, MAX_RUNS - len(found)),
                                        order_by=["attributes.start_time DESC"], page_token=token)
            found += page
            token = page.token
            if not token:
                break
    except MlflowException as e:
        if e.error_code == "INVALID_PARAMETER_VALUE" and filter_string:
            raise FilterError(f"invalid filter {filter_string!r}: {e.message}. Example: "
                              "params.model = 'cnn' and metrics.test_accuracy > 0.9") from None
        raise _store_failed(e, "runs") from None
    return tables.runs_frame(found)


def runs(experiment_ids: Sequence[str] | None = None, filter_string: str = "") -> pd.DataFrame:
    """Active runs of the experiments (all when None) matching an MLflow filter: one row per run.

    One search_runs query for the lot (params, latest metrics and tags come with it), cached for
    TTL_SECONDS. Raises FilterError for an invalid filter string.
    """
    ids = tuple(experiment_ids) if experiment_ids is not None else tuple(experiments()["experiment_id"])
    if not ids:
        return tables.runs_frame([])
    return _runs(_uri(), ids, filter_string.strip())


def versions(runs_frame: pd.DataFrame) -> dict[str, int]:
    """run id -> last update (ms): what keys every cached read of that run's data."""
    return dict(zip(runs_frame["run_id"], runs_frame["last_update"].astype(int)))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def _run(uri: str, run_id: str) -> dict:
    try:
        found = client().get_run(run_id)
    except MlflowException as e:
        if _not_found(e) or e.error_code == "INVALID_PARAMETER_VALUE":
            raise RunNotFoundError(f"no run {run_id} in this store") from None
        raise _store_failed(e, f"run {run_id}") from None
    if found.info.lifecycle_stage == "deleted":
        raise RunNotFoundError(f"run {run_id} ({found.info.run_name}) was deleted; restore it in mlflow ui to see it")
    row = tables.runs_frame([found]).iloc[0]
    summary = {k: row[k] for k in tables.BASE_COLUMNS}
    for prefix in ("params.", "metrics.", "tags."):
        summary[prefix[:-1]] = {k.removeprefix(prefix): row[k] for k in row.index if k.startswith(prefix)}
    return summary


def run(run_id: str) -> dict:
    """One run: the runs-frame columns plus params, metrics and tags dicts; RunNotFoundError if gone."""
    return _run(_uri(), run_id)


class _HistoryCache:
    """(run id, metric) -> (version, steps, timestamps, values), least recently used evicted first."""

    def __init__(self):
        self.lock, self.entries, self.points = threading.Lock(), OrderedDict(), 0

    def get(self, key: tuple[str, str], version: int):
        with self.lock:
            entry = self.entries.get(key)
            if entry is None or entry[0] != version:
                return None
            self.entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str], entry: tuple) -> None:
        with self.lock:
            old = self.entries.pop(key, None)
            self.points += len(entry[1]) - (len(old[1]) if old else 0)
            self.entries[key] = entry
            while self.points > HISTORY_CACHE_POINTS and len(self.entries) > 1:
                self.points -= len(self.entries.popitem(last=False)[1][1])


@st.cache_resource(show_spinner=False)
def _history_cache(uri: str) -> _HistoryCache:
    return _HistoryCache()


def _arrays(metrics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.fromiter((m.step for m in metrics), np.int64), np.fromiter((m.timestamp for m in metrics), np.int64),
            np.fromiter((m.value for m in metrics), np.float64))


def _sql_histories(sql_store, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], tuple] | None:
    """Histories straight from a SQL store's metrics table: one query per BULK_RUNS runs and plain
    rows instead of ORM objects (~10x the public per-run API on 20 runs x 1,000 steps).

    MLflow's SQL schema is internal, so any surprise (None) falls back to the public API.
    """
    try:
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import SqlMetric

        columns = (SqlMetric.run_uuid, SqlMetric.key, SqlMetric.step, SqlMetric.timestamp, SqlMetric.value,
                   SqlMetric.is_nan)
        run_ids, keys, rows = sorted({r for r, _ in pairs}), sorted({k for _, k in pairs}), []
        with sql_store.ManagedSessionMaker() as session:
            for i in range(0, len(run_ids), BULK_RUNS):
                query = sa.select(*columns).where(SqlMetric.run_uuid.in_(run_ids[i:i + BULK_RUNS]),
                                                  SqlMetric.key.in_(keys))
                rows += session.execute(query.order_by(SqlMetric.step, SqlMetric.timestamp)).all()
    except (ImportError, AttributeError):
        return None
    except sa.exc.SQLAlchemyError as e:
        raise _store_failed(e, "metric histories") from None
    run_col, key_col, steps, stamps, values, nans = (np.array(c) for c in zip(*rows)) if rows else [np.zeros(0)] * 6
    values = np.where(nans.astype(bool), np.nan, values.astype(np.float64))
    out = dict.fromkeys(pairs, (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)))
    run_codes, run_names = pd.factorize(run_col)
    key_codes, key_names = pd.factorize(key_col)
    codes = run_codes * max(1, len(key_names)) + key_codes
    order = np.argsort(codes, kind="stable")  # grouped by (run, key), still by step inside
    for group in np.split(order, np.flatnonzero(np.diff(codes[order])) + 1) if len(order) else []:
        pair = (run_names[run_codes[group[0]]], key_names[key_codes[group[0]]])
        if pair in out:
            out[pair] = (steps[group].astype(np.int64), stamps[group].astype(np.int64), values[group])
    return out


def _fetch_histories(missing: list[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
    """Full histories of (run, metric) pairs: in bulk from a SQL store, else (a tracking server)
    by parallel get_metric_history requests."""
    mlflow_client = client()
    sql_store = getattr(getattr(mlflow_client, "_tracking_client", None), "store", None)
    if hasattr(sql_store, "ManagedSessionMaker"):
        found = _sql_histories(sql_store, missing)
        if found is not None:
            return found
    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        fetched = pool.map(lambda pair: _arrays(mlflow_client.get_metric_history(*pair)), missing)
        return dict(zip(missing, fetched))


def metric_histories(run_versions: Mapping[str, int], keys: Sequence[str]) -> pd.DataFrame:
    """Every logged point of `keys` for the runs: columns run_id, key, step, timestamp, value.

    Cached per (run, metric) and keyed by the run's last update, so a finished run's history is
    read once per server process and a running run's only when it has logged something new.
    """
    cache = _history_cache(_uri())
    entries, missing = {}, []
    for run_id, version in run_versions.items():
        for key in keys:
            entry = cache.get((run_id, key), int(version))
            if entry is None:
                missing.append((run_id, key))
            else:
                entries[run_id, key] = entry
    if missing:
        try:
            fetched = _fetch_histories(missing)
        except MlflowException as e:
            if _not_found(e):
                raise RunNotFoundError(f"a run was deleted while reading its metrics: {e.message}") from None
            raise _store_failed(e, "metric histories") from None
        for pair, arrays in fetched.items():
            entry = (int(run_versions[pair[0]]), *arrays)
            cache.put(pair, entry)
            entries[pair] = entry
    pairs = [(r, k) for r in run_versions for k in keys if len(entries[r, k][1])]
    if not pairs:
        return pd.DataFrame({"run_id": pd.Series(dtype=str), "key": pd.Series(dtype=str),
                             "step": pd.Series(dtype="int64"), "timestamp": pd.Series(dtype="int64"),
                             "value": pd.Series(dtype=float)})
    sizes = [len(entries[p][1]) for p in pairs]
    return pd.DataFrame({
        "run_id": np.repeat([r for r, _ in pairs], sizes), "key": np.repeat([k for _, k in pairs], sizes),
        "step": np.concatenate([entries[p][1] for p in pairs]),
        "timestamp": np.concatenate([entries[p][2] for p in pairs]),
        "value": np.concatenate([entries[p][3] for p in pairs])})


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


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def _artifacts(uri: str, run_id: str, version: int) -> pd.DataFrame:
    try:
        return pd.DataFrame(_walk(lambda path: client().list_artifacts(run_id, path)), columns=["path", "size"])
    except MlflowException as e:
        raise _store_failed(e, f"the artifacts of run {run_id}") from None


def artifacts(run_id: str, version: int) -> pd.DataFrame:
    """The run's artifact files (path, size in bytes); the logged model is listed by model_info."""
    return _artifacts(_uri(), run_id, int(version))


@st.cache_data(max_entries=256, show_spinner=False)
def _download(uri: str, artifact_uri: str, version: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tmp,
                                                        tracking_uri=uri)
            return Path(local).read_bytes()
        except (MlflowException, OSError) as e:  # a dropped connection is an OSError too: not "missing"
            if _not_found(e):
                raise ArtifactNotFoundError(f"{artifact_uri.split('/', 3)[-1]} was not logged") from None
            raise _store_failed(e, artifact_uri) from None


def artifact_bytes(run_id: str, path: str, version: int) -> bytes:
    """One artifact file of a run; ArtifactNotFoundError when the run never logged it."""
    return _download(_uri(), f"runs:/{run_id}/{path}", int(version))


def model_file_bytes(artifact_location: str, path: str) -> bytes:
    """One file of a logged model (its files live apart from the run's artifacts in MLflow 3)."""
    return _download(_uri(), f"{artifact_location.rstrip('/')}/{path}", 0)


def confusion_matrix(run_id: str, version: int) -> tuple[list[str], np.ndarray]:
    """evaluation/confusion_matrix.json as (class names, counts with rows = true class)."""
    doc = json.loads(artifact_bytes(run_id, CONFUSION_MATRIX, version))
    return [str(label) for label in doc["labels"]], np.asarray(doc["matrix"], dtype=np.int64)


def per_class(run_id: str, version: int) -> dict[str, dict[str, float]]:
    """evaluation/per_class.json: precision, recall, f1 and support per class name."""
    return json.loads(artifact_bytes(run_id, PER_CLASS, version))


@st.cache_data(max_entries=128, show_spinner=False)
def _model_info(uri: str, run_id: str, version: int) -> dict:
    mlflow.set_tracking_uri(uri)  # get_model_info resolves runs:/ through the global URI
    try:
        info = mlflow.models.get_model_info(f"runs:/{run_id}/{tracking.MODEL_NAME}")
        files = _walk(lambda path: client().list_logged_model_artifacts(info.model_id, path)) if info.model_id else []
    except (MlflowException, OSError) as e:
        if _not_found(e):
            raise ArtifactNotFoundError(f"run {run_id} has no logged model (yet)") from None
        raise _store_failed(e, f"the model of run {run_id}") from None
    signature = info.signature
    return {"model_uri": f"runs:/{run_id}/{tracking.MODEL_NAME}", "model_id": info.model_id,
            "artifact_location": info.artifact_path, "files": files, "flavors": sorted(info.flavors),
            "inputs": str(signature.inputs) if signature else None,
            "outputs": str(signature.outputs) if signature else None,
            "preprocessing": (info.metadata or {}).get(tracking.PREPROCESSING_KEY)}


def model_info(run_id: str, version: int) -> dict:
    """The run's logged model: URI, signature, preprocessing metadata, files; ArtifactNotFoundError if none."""
    return _model_info(_uri(), run_id, int(version))


# ---------------------------------------------------------------------------------------------
# model registry and playground (issue 5): the version listing cached briefly, models by version

MODEL_CACHE_ENTRIES = 8  # loaded models kept in memory (a resnet18 is ~45 MB)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def _model_versions(uri: str) -> list:
    from pipeline import registry

    try:
        return registry.list_versions(client())
    except MlflowException as e:
        raise _store_failed(e, "the model registry") from None


def model_versions() -> list:
    """Every registered model version (pipeline.registry.ModelVersionInfo), by name, newest first."""
    return _model_versions(_uri())


def forget_model_versions() -> None:
    """Drop the cached listing after a registry change (or a vanished version) so the next read sees it."""
    _model_versions.clear()


@st.cache_resource(max_entries=MODEL_CACHE_ENTRIES, show_spinner=False)
def _predictor(uri: str, name: str, version: int, created: str):
    import torch

    from pipeline import predict

    torch.set_num_threads(tracking.settings.predict_threads())  # this process only predicts; see settings
    return predict.load(f"models:/{name}/{version}", client())


def predictor(version):
    """The loaded model (pipeline.predict.Predictor) of a registered version, cached per version.

    Keyed by name, version and creation time, so a model deleted and registered anew is reloaded.
    Raises pipeline.predict.ModelError when the version is gone or cannot be loaded.
    """
    return _predictor(_uri(), version.name, int(version.version), version.created.isoformat())


# ---------------------------------------------------------------------------------------------
# the run queue: the launch page's live view (issue 4); writes go through pipeline.jobs

LIVE_TTL_SECONDS = 2  # the live queue view re-reads at most this often


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def _queue(uri: str, recent: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from pipeline import jobs

    try:
        unfinished = jobs.unfinished(client())
        ended = jobs.search(client(), "attributes.status != 'SCHEDULED' AND attributes.status != 'RUNNING'",
                            ["attributes.end_time DESC"], recent)
    except MlflowException as e:
        raise _store_failed(e, "the run queue") from None
    return tables.runs_frame(unfinished), tables.runs_frame(ended)


def queue(recent: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Queue runs as runs frames: (SCHEDULED and RUNNING ones, the `recent` latest to end)."""
    return _queue(_uri(), recent)


def forget_queue() -> None:
    """Drop the cached queue after a submit or cancel, so the live view shows it at once."""
    _queue.clear()
