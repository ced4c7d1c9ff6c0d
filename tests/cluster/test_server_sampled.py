"""Sampled histories over a tracking server on PostgreSQL (MLflow's bulk-interval endpoint, as its own
charts read it): the bound, both ends and a step range hold; what the server's even sample cannot promise
(a spike between two samples) is said on the Compare page, and a full read brings the extremes back.

Run: .venv/bin/python -m pytest tests/cluster/test_server_sampled.py -q -m cluster
"""
from __future__ import annotations

import time

import pytest
import streamlit as st
from mlflow.entities import Metric

from dashboard.store import histories, mlflow_internals
from pipeline import names
from pipeline.runs import tracking
from tests.dashboard.conftest import open_page, texts

pytestmark = pytest.mark.cluster
KEY, STEPS, SPIKE = names.TRAIN_LOSS_STEP, 10_000, 4321


@pytest.fixture(scope="module")
def server_runs(cluster) -> dict[str, str]:
    """Over REST: a finished run of 10,000 points (a spike of 50.0 at step 4321) and one of 150."""
    client, now, runs = tracking.connect(), int(time.time() * 1000), {}  # as the service account
    experiment = client.create_experiment("cluster-sampled")
    for name, steps in (("long", STEPS), ("short", 150)):
        run_id = client.create_run(experiment, run_name=f"{name}-history").info.run_id
        metrics = [Metric(KEY, 50.0 if s == SPIKE else 1.0 / s, now + s, s) for s in range(1, steps + 1)]
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i:i + 1000])
        client.set_terminated(run_id)
        runs[name] = run_id
    return runs


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_data.clear()
    st.cache_resource.clear()
    yield


def steps_of(rows, run_id: str) -> list[int]:
    return [r[2] for r in rows if r[0] == run_id]


def test_the_bulk_interval_sample_is_bounded_and_keeps_both_ends(server_runs):
    client = tracking.connect()
    rows = mlflow_internals.server_sampled_metric_rows(client, list(server_runs.values()), [KEY], 320)
    long, short = steps_of(rows, server_runs["long"]), steps_of(rows, server_runs["short"])
    assert len(long) <= 320 and min(long) == 1 and max(long) == STEPS
    assert short == list(range(1, 151))  # shorter than the bound: whole
    inside = steps_of(mlflow_internals.server_sampled_metric_rows(client, [server_runs["long"]], [KEY], 100,
                                                                  step_range=(4000, 4999)), server_runs["long"])
    assert len(inside) <= 100 and min(inside) == 4000 and max(inside) == 4999


def test_sampled_histories_over_the_server_say_what_they_cannot_promise(server_runs):
    versions = {r: tracking.connect().get_run(r).info.end_time for r in server_runs.values()}
    sampled = histories.sampled_histories(versions, [KEY])
    assert sampled.attrs == {"logged": None, "thinned": 1, "extremes": False}
    histories.metric_histories(versions, [KEY])  # a full read, e.g. the Full detail toggle
    histories._sampled_cache.clear()
    again = histories.sampled_histories(versions, [KEY])  # now sampled from every point: the spike is kept
    spike = again[(again["run_id"] == server_runs["long"]) & (again["step"] == SPIKE)]
    assert again.attrs["extremes"] and again.attrs["logged"] == STEPS + 150 and spike["value"].tolist() == [50.0]


def test_compare_page_over_the_server_draws_the_sample_and_says_so(server_runs):
    at = open_page("compare", runs=f"{server_runs['long']},{server_runs['short']}", metrics=KEY)
    assert not at.exception and not at.error
    assert "evenly sampled by the tracking server" in texts(at.caption)
    assert at.download_button(key="csv").label == "Download CSV (every point)"
