"""Metric histories of many runs, cached per (run, metric) and keyed by the run's last update.

A finished run's history is read once per server process; a running run's again only when it has
logged more. The histories of many runs come in bulk (mlflow_internals): from one query on a SQL
store, from MLflow's bulk history endpoint on a tracking server; else, one public call per
(run, metric), in parallel.

metric_histories returns every point; sampled_histories (what Compare draws first) at most a few
hundred per (run, metric), sampled in SQL on a SQL store, by the bulk-interval endpoint over REST, or
here from a full history already cached; its own cache is keyed the same way.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import streamlit as st
from mlflow.exceptions import MlflowException

from dashboard import refresh
from dashboard.store import mlflow_internals
from dashboard.store.connection import RunNotFoundError, cache_key, client, not_found, store_failed

FETCH_THREADS = 8  # parallel history requests to a tracking server
EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
log = logging.getLogger("runboard.dashboard")


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
            while self.points > refresh.HISTORY_POINTS_KEPT and len(self.entries) > 1:
                self.points -= len(self.entries.popitem(last=False)[1][1])


@st.cache_resource(show_spinner=False)
def _history_cache(uri: str) -> _HistoryCache:
    return _HistoryCache()


def _arrays(metrics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.fromiter((m.step for m in metrics), np.int64), np.fromiter((m.timestamp for m in metrics), np.int64),
            np.fromiter((m.value for m in metrics), np.float64))


def _grouped(rows: list[tuple], pairs: list[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
    """(run, key, step, timestamp, value, is_nan) rows, ordered by step, as arrays per (run, key)."""
    out = dict.fromkeys(pairs, EMPTY)
    if not rows:
        return out
    run_col, key_col, steps, stamps, values, nans = (np.array(c) for c in zip(*rows))
    values = np.where(nans.astype(bool), np.nan, values.astype(np.float64))
    run_codes, run_names = pd.factorize(run_col)
    key_codes, key_names = pd.factorize(key_col)
    codes = run_codes * max(1, len(key_names)) + key_codes
    order = np.argsort(codes, kind="stable")  # grouped by (run, key), still by step inside
    for group in np.split(order, np.flatnonzero(np.diff(codes[order])) + 1):
        pair = (run_names[run_codes[group[0]]], key_names[key_codes[group[0]]])
        if pair in out:
            out[pair] = (steps[group].astype(np.int64), stamps[group].astype(np.int64), values[group])
    return out


def _fetch(missing: list[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
    """Full histories of (run, metric) pairs: in bulk (SQL store, tracking server), else by parallel public calls."""
    mlflow_client = client()
    run_ids, keys = [r for r, _ in missing], [k for _, k in missing]
    try:
        rows = mlflow_internals.sql_metric_rows(mlflow_client, run_ids, keys)
        if rows is None:
            rows = mlflow_internals.server_metric_rows(mlflow_client, run_ids, keys)
    except MlflowException:
        raise  # the caller tells a deleted run from a failing store
    except mlflow_internals.InternalsChanged as e:
        log.warning("fast history reads are off: %s", e)
        rows = None
    except Exception as e:  # the database itself failed (sqlalchemy errors)
        raise store_failed(e, "metric histories") from None
    return _public(missing) if rows is None else _grouped(rows, missing)


def _public(missing: list[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
    """Full histories through MLflow's public API: one call per (run, metric), in parallel."""
    mlflow_client = client()
    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        fetched = pool.map(lambda pair: _arrays(sorted(mlflow_client.get_metric_history(*pair),
                                                       key=lambda m: (m.step, m.timestamp))), missing)
        return dict(zip(missing, fetched))


def metric_histories(run_versions: Mapping[str, int], keys: Sequence[str]) -> pd.DataFrame:
    """Every logged point of `keys` for the runs: columns run_id, key, step, timestamp, value."""
    cache = _history_cache(cache_key())
    entries, missing = {}, []
    for run_id, version in run_versions.items():
        for key in keys:
            entry = cache.get((run_id, key), int(version))
            if entry is None:
                missing.append((run_id, key))
            else:
                entries[run_id, key] = entry
    if missing:
        for pair, arrays in _read(_fetch, missing).items():
            entry = (int(run_versions[pair[0]]), *arrays)
            cache.put(pair, entry)
            entries[pair] = entry
    return _frame(entries, [(r, k) for r in run_versions for k in keys])


def _read(fetch, missing: list[tuple[str, str]], *args):
    """fetch(missing, *args), with a run deleted meanwhile and a failing store told apart."""
    try:
        return fetch(missing, *args)
    except MlflowException as e:
        if not_found(e):
            raise RunNotFoundError(f"a run was deleted while reading its metrics: {e.message}") from None
        raise store_failed(e, "metric histories") from None


def _frame(entries: Mapping[tuple[str, str], tuple], pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Cached (version, steps, timestamps, values, ...) entries as one frame: run_id, key, step, timestamp, value."""
    pairs = [p for p in pairs if len(entries[p][1])]
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


# ---- sampled histories: what Compare draws first ------------------------------------------------------------

SAMPLED_POINTS = 320  # points per (run, metric) drawn first: MLflow's own charts ask its server for 320


def envelope(steps: np.ndarray, values: np.ndarray, points: int) -> np.ndarray:
    """Indices of at most `points` of a history ordered by step: the first, the last, and the lowest and the
    highest finite value of each of envelope_buckets(points) equal step ranges (the SQL sampling's twin)."""
    n = len(steps)
    if n <= points:
        return np.arange(n)
    lo, span = int(steps[0]), int(steps[-1]) - int(steps[0]) + 1
    ranges = min(mlflow_internals.envelope_buckets(points), span)
    bucket = (steps.astype(np.int64) - lo) * ranges // span
    finite = np.flatnonzero(~np.isnan(values))
    kept = [np.array([0, n - 1])]
    for signed in (values[finite], -values[finite]):  # lowest, then highest; ties: the earliest step
        order = finite[np.lexsort((signed, bucket[finite]))]
        b = bucket[order]
        kept.append(order[np.flatnonzero(np.r_[True, b[1:] != b[:-1]])])
    return np.unique(np.concatenate(kept))


@st.cache_resource(show_spinner=False)
def _sampled_cache(uri: str) -> _HistoryCache:
    return _HistoryCache()


def _sample_fetch(missing: list[tuple[str, str]], points: int, step_range: tuple[int, int] | None) -> dict:
    """(run, metric) -> (steps, timestamps, values, logged points, None where a server's sample hides it)."""
    mlflow_client = client()
    run_ids, keys = [r for r, _ in missing], [k for _, k in missing]
    try:
        found = mlflow_internals.sql_sampled_metric_rows(mlflow_client, run_ids, keys, points, step_range)
        if found is None:
            rows = mlflow_internals.server_sampled_metric_rows(mlflow_client, run_ids, keys, points, step_range)
            found = None if rows is None else (rows, None)
    except MlflowException:
        raise
    except mlflow_internals.InternalsChanged as e:
        log.warning("sampled history reads are off: %s", e)
        found = None
    except Exception as e:  # the database itself failed (sqlalchemy errors)
        raise store_failed(e, "metric histories") from None
    if found is not None:
        rows, logged = found
        cap = min(points, mlflow_internals.SERVER_MAX_POINTS)
        return {pair: (*arrays, logged.get(pair, 0) if logged is not None  # the server: whole when under its cap
                       else len(arrays[0]) if len(arrays[0]) < cap else None)
                for pair, arrays in _grouped(rows, missing).items()}
    return {pair: _sampled(*arrays, points, step_range) for pair, arrays in _public(missing).items()}


def _sampled(steps, stamps, values, points: int, step_range: tuple[int, int] | None) -> tuple:
    """A full history sampled here as the SQL store samples it: (steps, timestamps, values, logged)."""
    if step_range is not None:
        inside = (steps >= step_range[0]) & (steps <= step_range[1])
        steps, stamps, values = steps[inside], stamps[inside], values[inside]
    keep = envelope(steps, values, points)
    return steps[keep], stamps[keep], values[keep], len(steps)


def sampled_histories(run_versions: Mapping[str, int], keys: Sequence[str], points: int = SAMPLED_POINTS,
                      step_range: tuple[int, int] | None = None) -> pd.DataFrame:
    """At most `points` points of each (run, metric) in `step_range`, in metric_histories' shape; every point
    of a shorter history. attrs["logged"]: the points logged there (None where the store does not say);
    attrs["thinned"]: how many curves lost points; attrs["extremes"]: whether every curve kept its extremes.

    On a SQL store, and from a full history already read, each step range keeps its lowest and highest
    value, and the first and last points stay: no spike or dip is lost. From a tracking server, MLflow's
    bulk-interval endpoint samples evenly (first and last kept): a spike between samples can be missed
    until the full history is read (see mlflow_internals.server_sampled_metric_rows).
    """
    full, cache = _history_cache(cache_key()), _sampled_cache(cache_key())
    entries, missing = {}, []
    for run_id, version in run_versions.items():
        for key in keys:
            entry = cache.get((run_id, key, points, step_range), int(version))
            if entry is None and (whole := full.get((run_id, key), int(version))) is not None:
                entry = (int(version), *_sampled(*whole[1:4], points, step_range))
                cache.put((run_id, key, points, step_range), entry)
            if entry is None:
                missing.append((run_id, key))
            else:
                entries[run_id, key] = entry
    if missing:
        for pair, arrays in _read(_sample_fetch, missing, points, step_range).items():
            entry = (int(run_versions[pair[0]]), *arrays)
            cache.put((*pair, points, step_range), entry)
            entries[pair] = entry
    pairs = [(r, k) for r in run_versions for k in keys]
    frame = _frame(entries, pairs)
    counts = [entries[p][4] for p in pairs]
    frame.attrs["logged"] = None if None in counts else int(sum(counts))
    # None: a tracking server's even sample, maybe thinned, its extremes maybe lost
    frame.attrs["thinned"] = sum(1 for p, n in zip(pairs, counts) if n is None or len(entries[p][1]) < n)
    frame.attrs["extremes"] = None not in counts
    return frame
