"""The dashboard reading a tracking server on PostgreSQL: the Runs, Compare, Run detail, Registry and
Playground pages through AppTest, and the bulk history endpoint (MLflow's own UI endpoint) against the
public API.

Run: .venv/bin/python -m pytest tests/cluster -q
"""
from __future__ import annotations

import pytest
import streamlit as st

from dashboard.store import mlflow_internals
from tests.cluster.conftest import MODEL
from tests.dashboard.conftest import figures, open_page
from tests.dashboard.test_mlflow_internals import assert_bulk_read_matches_public_api

pytestmark = pytest.mark.cluster


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_data.clear()
    st.cache_resource.clear()  # the client and history caches are keyed by URI; start clean anyway
    yield


def test_the_bulk_history_endpoint_matches_the_public_api(finished_runs):
    """Fails loudly when an MLflow upgrade moves or reshapes the UI's bulk history endpoint."""
    assert_bulk_read_matches_public_api(mlflow_internals.server_metric_rows, finished_runs)


def test_runs_page_lists_the_server_runs(finished_runs):
    at = open_page(experiment="cluster")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert set(finished_runs) <= set(table["run_id"])


def test_runs_page_pages_through_a_thousand_runs_over_the_server(cluster):
    """The scale bench's small configuration: 1,000 runs, read over REST in pages of 100; the server cannot
    count, so the page says whether more follow, and the oldest run is on the last page."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    experiment = MlflowClient(cluster.tracking_uri).create_experiment("cluster-many")
    direct, t0 = MlflowClient(cluster.db_url), 1_700_000_000_000  # straight into the server's tables: fast
    for i in range(1000):
        run_id = direct.create_run(experiment, start_time=t0 + i, run_name=f"many-{i:04d}").info.run_id
        direct.log_batch(run_id, metrics=[Metric("test_accuracy", i / 1000, t0 + i, 0)], params=[Param("model", "cnn")])
    at = open_page(experiment="cluster-many")
    assert not at.exception and not at.error
    assert len(at.dataframe[0].value) == 100 and at.dataframe[0].value["name"].iloc[0] == "many-0999"
    assert any(c.value.startswith("Runs 1–100 · more follow") for c in at.caption)
    at.number_input(key="runs_page").set_value(10).run()
    assert at.dataframe[0].value["name"].iloc[-1] == "many-0000"
    assert any(c.value.startswith("Runs 901–1,000 · the last page") for c in at.caption)
    at = open_page(experiment="cluster-many", sort="test acc", order="ascending", page_size="500")
    assert at.dataframe[0].value["name"].iloc[0] == "many-0000" and len(at.dataframe[0].value) == 500


def test_compare_page_draws_the_server_runs(finished_runs):
    at = open_page("compare", runs=",".join(finished_runs))
    assert not at.exception and not at.error
    titles = {(f["layout"].get("title") or {}).get("text") for f in figures(at)
              if f["data"] and f["data"][0]["type"].startswith("scatter")}  # the legend strip above has no title
    assert {"val_loss", "train_loss_step"} <= titles


def test_run_detail_shows_the_ray_job_and_node(finished_runs):
    at = open_page("run_detail", run=finished_runs[0])
    assert not at.exception and not at.error
    header = " ".join(c.value for c in at.caption)
    assert f"runboard-{finished_runs[0]}" in header and "127.0.0.1" in header
    assert any("correct" in ((f["layout"].get("title") or {}).get("text", "")) for f in figures(at))


def test_registry_and_playground_use_the_servers_models(finished_runs):
    from pipeline.serving import registry

    registry.set_alias(MODEL, registry.CHAMPION, 1)
    at = open_page("registry")
    assert not at.exception and not at.error
    versions = next(d.value for d in at.dataframe if "version" in d.value.columns)
    [row] = versions[versions["model"] == MODEL].to_dict("records")
    assert row["aliases"] == ["@champion"] and row["source run"] == f"run_detail?run={finished_runs[0]}"
    at = open_page("playground")
    assert not at.exception and not at.error
    assert at.selectbox[0].value == MODEL and at.selectbox[1].value == "@champion"


def test_artifacts_land_in_the_bucket_and_the_playground_predicts_from_them(cluster, finished_runs):
    """The server keeps artifacts in an S3 bucket (moto's S3 server); clients go through the server, which holds
    the bucket's keys alone; the playground's prediction comes from the model files read back from there."""
    from pipeline.serving import predict, registry

    registry.set_alias(MODEL, registry.CHAMPION, 1)
    keys = cluster.s3.keys()
    for run_id in finished_runs:
        assert any(run_id in k and k.endswith("train.log") for k in keys), run_id  # every run's artifacts
    assert not (cluster.root / "artifacts").exists()  # nothing on the server's disk
    at = open_page("playground", model=MODEL, ref="champion")
    sample = next(b for b in at.button if b.key.startswith("pg_sample_"))
    name = sample.key.removeprefix("pg_sample_")
    at = sample.click().run()
    assert not at.exception and not at.error
    [expected] = predict.load(f"models:/{MODEL}/1").predict([at.session_state["pg_samples"][name]])
    [shown] = [m for m in at.metric if m.label == "Prediction"]
    assert shown.value == expected.label
