"""Sampled metric histories (dashboard/store/histories.sampled_histories), what Compare draws first, on a real
SQLite store: the bound holds, a spike, a dip and both ends survive, short histories come back whole, and
without MLflow's internals the public API gives the same sample.

Run: .venv/bin/python -m pytest tests/dashboard/test_sampled_histories.py -q
"""
from __future__ import annotations

import numpy as np
import pytest
import streamlit as st

from dashboard.store import histories, mlflow_internals
from pipeline import names
from pipeline.runs import tracking
from tests.dashboard.conftest import DIP, LONG_STEPS, SHORT_STEPS, SPIKE

KEY = names.TRAIN_LOSS_STEP


@pytest.fixture(autouse=True)
def cold():
    st.cache_resource.clear()  # the history caches: every test reads the store
    yield


def versions(long_runs) -> dict[str, int]:
    client = tracking.connect()
    return {run_id: client.get_run(run_id).info.end_time for run_id in long_runs.values()}


def curve(frame, run_id: str) -> dict[int, float]:
    rows = frame[(frame["run_id"] == run_id) & (frame["key"] == KEY)]
    return dict(zip(rows["step"], rows["value"]))


def test_a_spike_a_dip_and_both_ends_survive_within_the_bound(long_runs):
    sampled = histories.sampled_histories(versions(long_runs), [KEY], points=320)
    long = curve(sampled, long_runs["long"])
    assert 100 < len(long) <= 320
    assert long[SPIKE] == 50.0 and long[DIP] == -50.0
    assert min(long) == 1 and max(long) == LONG_STEPS
    assert sampled.attrs == {"logged": LONG_STEPS + SHORT_STEPS, "thinned": 1, "extremes": True}


def test_a_history_shorter_than_the_bound_comes_back_whole(long_runs):
    run = {long_runs["short"]: versions(long_runs)[long_runs["short"]]}
    sampled = histories.sampled_histories(run, [KEY], points=320)
    full = histories.metric_histories(run, [KEY])
    assert len(sampled) == SHORT_STEPS and sampled.equals(full)
    assert sampled.attrs["thinned"] == 0


def test_every_stretch_of_steps_keeps_its_lowest_and_highest_value(long_runs):
    """The envelope, not a lucky pick: each of the 159 equal step ranges gives its own min and max."""
    run = {long_runs["long"]: versions(long_runs)[long_runs["long"]]}
    full = curve(histories.metric_histories(run, [KEY]), long_runs["long"])
    sampled = curve(histories.sampled_histories(run, [KEY], points=320), long_runs["long"])
    steps, values = np.array(list(full)), np.array(list(full.values()))
    ranges = mlflow_internals.envelope_buckets(320)
    bucket = (steps - 1) * ranges // LONG_STEPS  # steps 1..10,000 cut into 159 ranges of 62 or 63
    assert ranges == 159 and len(set(bucket)) == ranges
    for b in range(0, ranges, 7):
        inside = [sampled[s] for s in steps[bucket == b] if s in sampled]
        assert len(inside) <= 3 and min(inside) == values[bucket == b].min()
        assert max(inside) == values[bucket == b].max()


def test_a_step_range_is_sampled_on_its_own(long_runs):
    run = {long_runs["long"]: versions(long_runs)[long_runs["long"]]}
    sampled = histories.sampled_histories(run, [KEY], points=100, step_range=(4000, 4999))
    long = curve(sampled, long_runs["long"])
    assert len(long) <= 100 and min(long) == 4000 and max(long) == 4999 and long[SPIKE] == 50.0
    assert sampled.attrs["logged"] == 1000


def test_warm_reads_come_from_the_cache(long_runs, monkeypatch):
    first = histories.sampled_histories(versions(long_runs), [KEY])
    monkeypatch.setattr(mlflow_internals, "sql_sampled_metric_rows", None)  # any store read would fail
    again = histories.sampled_histories(versions(long_runs), [KEY])
    assert again.equals(first) and again.attrs == first.attrs


def test_a_full_read_already_cached_is_sampled_without_the_store(long_runs, monkeypatch):
    histories.metric_histories(versions(long_runs), [KEY])
    monkeypatch.setattr(mlflow_internals, "sql_sampled_metric_rows", None)
    derived = histories.sampled_histories(versions(long_runs), [KEY])
    monkeypatch.undo()
    st.cache_resource.clear()
    assert derived.equals(histories.sampled_histories(versions(long_runs), [KEY]))


def test_without_internals_the_public_api_gives_the_same_sample(long_runs, monkeypatch):
    expected = histories.sampled_histories(versions(long_runs), [KEY])
    st.cache_resource.clear()

    def moved(*args, **kwargs):
        raise mlflow_internals.InternalsChanged("MLflow's SQL metric model moved (simulated)")

    monkeypatch.setattr(mlflow_internals, "sql_sampled_metric_rows", moved)
    slow = histories.sampled_histories(versions(long_runs), [KEY])
    assert slow.equals(expected) and slow.attrs == expected.attrs
