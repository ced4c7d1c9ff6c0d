"""Experiments and runs as DataFrames: one cached search_runs per listing."""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import streamlit as st
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from dashboard import refresh, run_query, run_search, tables
from dashboard.store import mlflow_internals
from dashboard.store.connection import (FilterError, RunDeletedError, RunNotFoundError, cache_key, client,
                                        not_found, store_failed)
from pipeline import names

MAX_RUNS = 5000  # runs listed per query at most; more belong in a filter (a link's runs are read by id)
PICKER_RUNS = 250  # runs a picker offers from a listing: newest (or best); the Runs page and links reach the rest
MAX_EXPERIMENTS = 5000
log = logging.getLogger("runboard.dashboard")


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _experiments(uri: str) -> pd.DataFrame:
    try:
        found = client().search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=MAX_EXPERIMENTS)
    except MlflowException as e:
        raise store_failed(e, "experiments") from None
    return pd.DataFrame([{"experiment_id": e.experiment_id, "name": e.name, "last_update": e.last_update_time}
                         for e in found], columns=["experiment_id", "name", "last_update"])


def experiments(named: str | None = None) -> pd.DataFrame:
    """Active experiments (experiment_id, name, last_update), most recently updated first.

    `named`: an experiment a link asks for. A listing cached before it was created is read again rather than
    telling the person it does not exist.
    """
    found = _experiments(cache_key())
    if named and named not in set(found["name"]):
        _experiments.clear(cache_key())
        _run_counts.clear(cache_key())  # its count would be as old
        found = _experiments(cache_key())
    return found.sort_values("last_update", ascending=False, ignore_index=True)


def _search_failed(e: MlflowException, filter_string: str) -> Exception:
    if e.error_code == "INVALID_PARAMETER_VALUE" and filter_string:
        return FilterError(f"invalid filter {filter_string!r}: {e.message}. Example: "
                           "params.model = 'cnn' and metrics.test_accuracy > 0.9")
    return store_failed(e, "runs")


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _runs(uri: str, experiment_ids: tuple[str, ...], filter_string: str, order_by: tuple[str, ...],
          limit: int) -> pd.DataFrame:
    found, token = [], None
    try:
        while len(found) < limit:  # one call unless more than a page of runs is asked for
            page = client().search_runs(list(experiment_ids), filter_string, ViewType.ACTIVE_ONLY,
                                        max_results=min(1000, limit - len(found)), order_by=list(order_by),
                                        page_token=token)
            found += page
            token = page.token
            if not token:
                break
    except MlflowException as e:
        raise _search_failed(e, filter_string) from None
    return tables.runs_frame(found)


def runs(experiment_ids: Sequence[str] | None = None, filter_string: str = "", order_by: Sequence[str] | None = None,
         limit: int = MAX_RUNS) -> pd.DataFrame:
    """Up to `limit` active runs of the experiments (all when None) matching an MLflow filter, newest first
    unless `order_by` says otherwise: one row per run. A picker asks for PICKER_RUNS; the Runs page pages
    (runs_page) and links read by id (runs_by_id), so no page depends on a listing holding every run.

    One search_runs query for the lot (params, latest metrics and tags come with it), cached for
    refresh.LISTING_TTL. Raises FilterError for an invalid filter string.
    """
    ids = tuple(experiment_ids) if experiment_ids is not None else tuple(experiments()["experiment_id"])
    if not ids:
        return tables.runs_frame([])
    return _runs(cache_key(), ids, filter_string.strip(), tuple(order_by or [run_query.NEWEST_FIRST]), limit)


def sweep_runs(experiment_id: str, parent_id: str) -> pd.DataFrame:
    """The runs of one sweep or study, found by their tag in SQL, wherever they are among the experiment's."""
    return runs([experiment_id], run_query.joined(run_query.clauses(tags=[f"{names.TAG_SWEEP_ID}={parent_id}"])))


@dataclass(frozen=True)
class RunsPage:
    """One page of an experiment's runs as the store ordered and counted them."""
    runs: pd.DataFrame  # the page's runs, then (when `top_level`) the runs of the sweeps among them
    offset: int         # rows before this page
    rows: int           # rows of this page (a sweep's runs brought with it not counted)
    size: int           # rows a page holds
    total: int | None   # rows matching in the whole store; None where the store cannot count (a tracking server)
    more: bool          # another page follows


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _runs_page(uri: str, experiment_id: str, filter_string: str, order_by: tuple[str, ...], offset: int, size: int,
               top_level: bool) -> RunsPage:
    mlflow_client = client()
    query = run_query.joined(filter_string, run_query.TOP_LEVEL if top_level else "")
    try:
        found = mlflow_client.search_runs([experiment_id], query, ViewType.ACTIVE_ONLY, max_results=size,
                                          order_by=list(order_by), page_token=mlflow_internals.page_token(offset))
        children = []
        for run in found if top_level else ():
            if names.TAG_SWEEP in run.data.tags:  # a sweep's runs, at most MAX_SWEEP_RUNS, come with its row
                children += mlflow_client.search_runs(
                    [experiment_id], run_query.joined(filter_string, run_query.clauses(
                        tags=[f"{names.TAG_SWEEP_ID}={run.info.run_id}"])), ViewType.ACTIVE_ONLY, max_results=1000)
    except MlflowException as e:
        raise _search_failed(e, query) from None
    try:
        total = mlflow_internals.sql_run_count(mlflow_client, [experiment_id], query)
    except mlflow_internals.InternalsChanged as e:
        log.warning("run counts are off: %s", e)
        total = None
    except Exception as e:  # the database itself failed (sqlalchemy errors)
        raise store_failed(e, "runs") from None
    return RunsPage(tables.runs_frame([*found, *children]), offset, len(found), size, total, bool(found.token))


def runs_page(experiment_id: str, filter_string: str = "", order_by: Sequence[str] | None = None, page: int = 1,
              size: int = 100, top_level: bool = True) -> RunsPage:
    """Page `page` (from 1) of an experiment's active runs matching an MLflow filter, filtered, ordered (newest
    first by default), counted and paged by MLflow's search in SQL, so every run can be reached and a page
    costs the same with 100 runs or 100,000. `top_level` leaves a sweep's runs out of the paging and brings
    them with their parent's row. Cached for refresh.LISTING_TTL; FilterError for an invalid filter."""
    return _runs_page(cache_key(), experiment_id, filter_string.strip(), tuple(order_by or [run_query.NEWEST_FIRST]),
                      (max(1, page) - 1) * size, size, top_level)


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _run_counts(uri: str) -> dict[str, int] | None:
    return mlflow_internals.sql_run_counts(client())


def run_counts() -> dict[str, int] | None:
    """experiment id -> active runs, counted in SQL; None where the store cannot count (a tracking server)."""
    return _run_counts(cache_key())


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _first_run(uri: str, experiment_ids: tuple[str, ...], filter_string: str) -> str | None:
    try:
        found = client().search_runs(list(experiment_ids), filter_string, ViewType.ACTIVE_ONLY, max_results=1,
                                     order_by=[run_query.NEWEST_FIRST])
    except MlflowException as e:
        raise store_failed(e, "runs") from None
    return found[0].info.experiment_id if found else None


def newest_run_experiment() -> str | None:
    """The experiment of the newest active run in the store; None when there is no run."""
    ids = tuple(experiments()["experiment_id"])
    return _first_run(cache_key(), ids, "") if ids else None


def has_live_runs(experiment_id: str) -> bool:
    """Whether a run of the experiment is queued or running (one search of one row)."""
    active = run_query.joined(run_query.clauses(statuses=names.ACTIVE))
    return _first_run(cache_key(), (experiment_id,), active) is not None


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _filter_choices(uri: str, experiment_id: str) -> dict[str, list[str]] | None:
    return mlflow_internals.sql_distinct_values(client(), experiment_id, ("dataset", "model"), run_search.RESERVED)


def filter_choices(experiment_id: str) -> dict[str, list[str]] | None:
    """What the Runs page's filters offer, over every run of the experiment: "params.dataset", "params.model"
    and each own "tags.<key>" -> values. None where the store cannot tell (a tracking server): then a page's
    own values are offered."""
    try:
        return _filter_choices(cache_key(), experiment_id)
    except mlflow_internals.InternalsChanged as e:
        log.warning("filter choices come from one page: %s", e)
        return None


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
    return _runs_by_id(cache_key(), experiment_ids, ids)


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
    return _run(cache_key(), run_id)


def forget_run(run_id: str) -> None:
    """Drop the cached read of one run after this session changed it (resume, cancel): shown at once."""
    _run.clear(cache_key(), run_id)


def forget_runs() -> None:
    """Drop every cached run and listing after this session edited runs (rename, tags, delete): shown at once."""
    _runs.clear()
    _runs_page.clear()
    _run_counts.clear()
    _filter_choices.clear()
    _run.clear()
