"""Dashboard fixtures: AppTest on the real app against the session's temp store, plus edge-case runs.

The edge runs (still RUNNING, FAILED with a traceback, FINISHED without evaluation, deleted) are
made directly with MlflowClient in their own experiment, so other tests' counts of `tests` hold.
"""
from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest
import streamlit as st
from mlflow.entities import Metric, Param
from streamlit.testing.v1 import AppTest

from pipeline import names
from pipeline.runs import tracking
from pipeline.config import RunConfig

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
EDGE_EXPERIMENT = "dashboard-edge"


def open_page(page: str = "runs", **query: str) -> AppTest:
    """The app on `page` (a file stem in dashboard/views) with these query params, after one run."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    if page != "runs":
        at.switch_page(f"views/{page}.py")
    at.query_params.update(query)
    return at.run()


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


@pytest.fixture(autouse=True)
def fresh_listings():
    """Listings are cached for seconds; each test starts from what the store holds now."""
    st.cache_data.clear()
    yield


@pytest.fixture(scope="session")
def edge_runs(store, trained_runs) -> dict[str, str]:
    """Runs in the states a page must explain in place: running, failed, unevaluated, deleted."""
    client = tracking.connect()
    experiment = tracking.experiment_id(client, EDGE_EXPERIMENT)
    params = [Param(k, v) for k, v in RunConfig(dataset="digits", model="cnn", epochs=3).to_params().items()]
    now = int(time.time() * 1000)

    def make(name: str, steps: int = 0, with_params: bool = True) -> str:
        run_id = client.create_run(experiment, run_name=name).info.run_id
        metrics = [Metric(names.TRAIN_LOSS_STEP, 2.0 / (s + 1), now + s, s) for s in range(1, steps + 1)]
        metrics += [Metric(names.TRAIN_LOSS, 1.0 / e, now + e, e) for e in range(1, steps // 20 + 1)]
        client.log_batch(run_id, metrics=metrics, params=params if with_params else [])
        return run_id

    runs = {"running": make("still-running", 40), "failed": make("broken", 20, with_params=False),
            "unevaluated": make("no-evaluation", 60), "deleted": make("thrown-away", 20)}
    client.set_tag(runs["failed"], names.TAG_ERROR, "TrainingError: loss became nan at step 17")
    client.set_tag(runs["failed"], names.TAG_TRACEBACK, "Traceback (most recent call last):\n  ...\n"
                                                           "TrainingError: loss became nan at step 17")
    client.set_terminated(runs["failed"], "FAILED")
    for name in ("unevaluated", "deleted"):
        client.set_terminated(runs[name], "FINISHED")
    client.delete_run(runs["deleted"])
    return runs


@pytest.fixture(scope="session")
def empty_store_uri(tmp_path_factory) -> str:
    """A store with no runs, made once: creating MLflow's tables takes seconds."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('empty') / 'mlflow.db'}"
    mlflow.MlflowClient(uri).search_experiments()
    return uri


@pytest.fixture
def empty_store(empty_store_uri, monkeypatch):
    """The dashboard pointed at a store with no runs at all, for this test only."""
    before = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", empty_store_uri)
    yield
    mlflow.set_tracking_uri(before)  # the dashboard's connect() pointed MLflow's global URI here


@pytest.fixture
def unreachable_store(monkeypatch):
    before = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    yield
    mlflow.set_tracking_uri(before)


def figures(at: AppTest) -> list[dict]:
    """The Plotly figures on the page, as the JSON specs the browser would draw."""
    import json

    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def plotted(values) -> list:
    """A trace's x or y as a list: Plotly 7 ships numeric arrays as {"dtype", "bdata"} (base64)."""
    import base64

    import numpy as np

    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"])).tolist()
    return list(values)


SWEEP_EXPERIMENT = "dashboard-sweep"


@pytest.fixture(scope="package")
def sweep_runs(store):
    """A sweep as the queue makes it: a parent that only groups, two ended runs and one still queued.
    The ended runs logged val_accuracy per epoch (best 0.81 and 0.85) and test_accuracy (0.91 and 0.95).

    The first run waited 20 s in the queue and trained for 12 s (its tags say so), as the worker and
    pipeline.runs.train record it.
    """
    from pipeline.runs import lifecycle

    client = tracking.connect()
    experiment = tracking.experiment_id(client, SWEEP_EXPERIMENT)
    parent = lifecycle.record(client, experiment, "lr-sweep (grid, 3 runs)",
                              {names.TAG_SWEEP: "grid", names.TAG_NOTE: "Grid sweep of 3 runs over lr in [...]."})
    t0 = time.time() - 600
    runs = {"parent": parent}
    for i, (lr, accuracy) in enumerate(((0.01, 0.91), (0.001, 0.95), (0.1, None)), 1):
        config = RunConfig(dataset="digits", model="cnn", epochs=2, lr=lr)
        tags = {names.TAG_SWEEP_ID: parent, names.TAG_PARENT: parent, names.TAG_QUEUED: f"{t0:.3f}"}
        if i == 1:
            tags |= {names.TAG_STARTED: f"{t0 + 20:.3f}", names.TAG_TRAIN_STARTED: f"{t0 + 22:.3f}",
                     names.TAG_TRAIN_ENDED: f"{t0 + 34:.3f}"}
        run_id = client.create_run(experiment, start_time=int(t0 * 1000) + i, run_name=f"lr-sweep-{i:02d} lr={lr:g}",
                                   tags=tags).info.run_id
        metrics = [Metric(names.TEST_ACCURACY, accuracy, int(t0 * 1000) + 35_000, 2),
                   *(Metric(names.VAL_LOSS, 1.0 / epoch, int((t0 + 22 + 4 * epoch) * 1000), epoch) for epoch in (1, 2)),
                   *(Metric(names.VAL_ACCURACY, (accuracy or 0) - 0.2 / epoch, int((t0 + 22 + 4 * epoch) * 1000), epoch)
                     for epoch in (1, 2))]  # best val acc: 0.81 and 0.85
        client.log_batch(run_id, params=[Param(k, v) for k, v in config.to_params().items()],
                         metrics=metrics if accuracy else [])
        if accuracy:
            client.set_terminated(run_id, "FINISHED", end_time=int((t0 + 36) * 1000))
        else:
            client.update_run(run_id, status="SCHEDULED")
        runs[f"run{i}"] = run_id
    client.set_tag(parent, names.TAG_SWEEP_RUNS, ",".join(runs[f"run{i}"] for i in (1, 2, 3)))
    yield runs
    client.set_terminated(runs["run3"], "KILLED")  # out of the queue: a later worker test must not train it


LONG_EXPERIMENT = "dashboard-long"
LONG_STEPS, SPIKE, DIP, SHORT_STEPS = 10_000, 4321, 7777, 150


@pytest.fixture(scope="session")
def long_runs(store) -> dict[str, str]:
    """A finished run whose train_loss_step has 10,000 points with a spike (50.0 at step 4321) and a dip
    (-50.0 at step 7777) in a gently falling curve, and one with 150 points; in their own experiment."""
    import numpy as np

    client = tracking.connect()
    experiment = tracking.experiment_id(client, LONG_EXPERIMENT)
    rng, now = np.random.default_rng(7), int(time.time() * 1000)
    runs = {}
    for name, steps in (("long", LONG_STEPS), ("short", SHORT_STEPS)):
        values = 2.0 / np.sqrt(np.arange(1, steps + 1)) + rng.normal(0, 0.01, steps)
        if name == "long":
            values[SPIKE - 1], values[DIP - 1] = 50.0, -50.0
        run_id = client.create_run(experiment, run_name=f"{name}-history").info.run_id
        metrics = [Metric(names.TRAIN_LOSS_STEP, float(v), now + s, s) for s, v in enumerate(values, 1)]
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i:i + 1000])
        client.set_terminated(run_id, "FINISHED")
        runs[name] = run_id
    return runs
