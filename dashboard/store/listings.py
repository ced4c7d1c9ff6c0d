"""Experiments and runs as DataFrames: one cached search_runs per listing."""
from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd
import streamlit as st
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from dashboard import refresh, tables
from dashboard.store.connection import (FilterError, RunDeletedError, RunNotFoundError, client, not_found,
                                        store_failed, uri)
from pipeline import names

MAX_RUNS = 5000  # newest runs listed per query; more belong in a filter (a link's runs are read by id)
MAX_EXPERIMENTS = 5000


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _experiments(uri: str) -> pd.DataFrame:
    try:
        found = client().search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=MAX_EXPERIMENTS)
    except MlflowException as e:
        raise store_failed(e, "experiments") from None
    return pd.DataFrame([{"experiment_id": e.experiment_id, "name": e.name, "last_update": e.last_update_time}
                         for e in found], columns=["experiment_id", "name", "last_update"])


def experiments() -> pd.DataFrame:
    """Active experiments (experiment_id, name, last_update), most recently updated first."""
    return _experiments(uri()).sort_values("last_update", ascending=False, ignore_index=True)


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
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
        raise store_failed(e, "runs") from None
    return tables.runs_frame(found)


def runs(experiment_ids: Sequence[str] | None = None, filter_string: str = "") -> pd.DataFrame:
    """Active runs of the experiments (all when None) matching an MLflow filter: one row per run.

    One search_runs query for the lot (params, latest metrics and tags come with it), cached for
    refresh.LISTING_TTL. Raises FilterError for an invalid filter string.
    """
    ids = tuple(experiment_ids) if experiment_ids is not None else tuple(experiments()["experiment_id"])
    if not ids:
        return tables.runs_frame([])
    return _runs(uri(), ids, filter_string.strip())


RUN_ID = re.compile(r"[0-9a-f]{32}")  # MLflow's run ids; anything else in a link is not one
BY_ID_CHUNK = 100


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _runs_by_id(uri: str, experiment_ids: tuple[str, ...], run_ids: tuple[str, ...]) -> pd.DataFrame:
    found = []
    try:
        for start in range(0, len(run_ids), BY_ID_CHUNK):
            quoted = ", ".join(f"'{r}'" for r in run_ids[start:start + BY_ID_CHUNK])
            found += client().search_runs(list(experiment_ids), f"attributes.run_id IN ({quoted})",
                                          ViewType.ACTIVE_ONLY, max_results=BY_ID_CHUNK)
    except MlflowException as e:
        raise store_failed(e, "runs") from None
    return tables.runs_frame(found)


def runs_by_id(run_ids: Sequence[str]) -> pd.DataFrame:
    """Active runs by id, wherever they are in the store: a link names runs that a capped listing of the
    newest may not hold. Ids that are not MLflow run ids, and deleted runs, are simply not returned."""
    ids = tuple(sorted({r for r in run_ids if RUN_ID.fullmatch(r)}))
    experiment_ids = tuple(experiments()["experiment_id"])
    if not ids or not experiment_ids:
        return tables.runs_frame([])
    return _runs_by_id(uri(), experiment_ids, ids)


def versions(runs_frame: pd.DataFrame) -> dict[str, int]:
    """run id -> last update (ms): what keys every cached read of that run's data."""
    return dict(zip(runs_frame["run_id"], runs_frame["last_update"].astype(int)))


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _run(uri: str, run_id: str) -> dict:
    try:
        found = client().get_run(run_id)
    except MlflowException as e:
        if not_found(e) or e.error_code == "INVALID_PARAMETER_VALUE":
            raise RunNotFoundError(f"no run {run_id} in this store") from None
        raise store_failed(e, f"run {run_id}") from None
    if found.info.lifecycle_stage == "deleted":
        deleted = found.data.tags.get(names.TAG_DELETED)
        raise RunDeletedError(f"run {run_id} ({found.info.run_name}) was deleted", run_id, found.info.run_name,
                              float(deleted) if deleted else None)
    row = tables.runs_frame([found]).iloc[0]
    summary = {k: row[k] for k in tables.BASE_COLUMNS}
    for prefix in ("params.", "metrics.", "tags."):
        summary[prefix[:-1]] = {k.removeprefix(prefix): row[k] for k in row.index if k.startswith(prefix)}
    return summary


def run(run_id: str) -> dict:
    """One run: the runs-frame columns plus params, metrics and tags dicts; RunNotFoundError if gone."""
    return _run(uri(), run_id)


def forget_run(run_id: str) -> None:
    """Drop the cached read of one run after this session changed it (resume, cancel): shown at once."""
    _run.clear(uri(), run_id)


def forget_runs() -> None:
    """Drop every cached run and listing after this session edited runs (rename, tags, delete): shown at once."""
    _runs.clear()
    _run.clear()
