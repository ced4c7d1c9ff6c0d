"""A study's page and its Runs-page group row through AppTest, on a real 3-trial study whose trials
train in this process (tiny digits/mlp runs of 2 epochs), then Continue and Cancel from the page.

Run: .venv/bin/python -m pytest tests/dashboard/test_study_page.py
"""
from __future__ import annotations

import dataclasses

import pytest

from pipeline import names
from pipeline.config import RunConfig
from pipeline.queue import study
from pipeline.runs import lifecycle, tracking, train
from tests.dashboard.conftest import open_page, texts

EXPERIMENT = "study-page"
BASE = RunConfig(dataset="digits", model="mlp", epochs=2, device="cpu", experiment=EXPERIMENT, run_name="page")
SPACE = {"lr": {"kind": "float", "low": 1e-5, "high": 0.3, "log": True},
         "optimizer": {"kind": "choice", "choices": ["adamw", "sgd"], "log": False}}


def run_study(client, study_id: str) -> None:
    """What a worker does, in this process: drive the study, train each queued trial, until it ends."""
    while client.get_run(study_id).info.status == "RUNNING":
        study.drive_one(client, client.get_run(study_id))
        queued = client.search_runs([client.get_run(study_id).info.experiment_id],
                                    f"tags.\"{names.TAG_STUDY_ID}\" = '{study_id}' AND attributes.status = 'SCHEDULED'")
        for run in queued:
            run_id = run.info.run_id
            assert lifecycle.claim(client, run_id, "test-study-page")
            lifecycle.mark_running(client, run_id, {})
            train.run_queued(run_id, progress=False)


@pytest.fixture(scope="module")
def finished_study(store) -> str:
    client = tracking.connect()
    study_id = study.submit(BASE, SPACE, 3, parallel=2, client=client)
    run_study(client, study_id)
    return study_id


def test_the_study_page_shows_optunas_figures_and_its_trials(finished_study):
    at = open_page("run_detail", run=finished_study)
    assert not at.exception and not at.error, at.exception or at.error
    assert at.title[0].value.startswith("page (study, 3 trials)")
    assert "3/3 trials" in at.get("progress")[0].proto.text
    charts = at.get("plotly_chart")
    assert len(charts) >= 3  # history, parallel coordinates, slices, intermediate values (+ importances)
    table = at.dataframe[0].value
    assert list(table["trial"]) == [0, 1, 2]
    assert table["open"].str.startswith("run_detail?run=").all()
    assert set(table["state"]) <= {"✓ complete", "✂ pruned", "✗ failed"}


def test_the_runs_page_folds_the_trials_under_one_group_row(finished_study):
    at = open_page("runs")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    row = table[table["name"].str.startswith("page (study")]
    assert len(row) == 1 and "3/3 trials ·" in row["name"].iloc[0] and "pruned · best 0." in row["name"].iloc[0]
    assert not table["name"].str.contains("page-0").any()  # folded


@pytest.fixture
def own_study(store) -> str:
    """A finished 2-trial study of this test's own: continuing and cancelling it leaves `finished_study`
    as the other tests expect it, in any order (pytest -p randomly)."""
    client = tracking.connect()
    study_id = study.submit(dataclasses.replace(BASE, run_name="own"), SPACE, 2, parallel=2, client=client)
    run_study(client, study_id)
    return study_id


def test_continue_then_cancel_from_the_page(own_study):
    client = tracking.connect()
    at = open_page("run_detail", run=own_study)
    at.number_input(key=f"more_{own_study}").set_value(2)
    at.button(key=f"continue_{own_study}").click().run()
    assert not at.exception, at.exception
    run = client.get_run(own_study)
    assert run.info.status == "RUNNING" and run.data.tags[names.TAG_STUDY_TRIALS] == "4"
    assert "2/4 trials" in at.get("progress")[0].proto.text, texts(at.get("progress"))  # the same page, at once
    at.button(key=f"cancel_{own_study}").click().run()
    assert not at.exception, at.exception
    assert client.get_run(own_study).info.status == "KILLED"
    trials = client.search_runs([run.info.experiment_id], f"tags.\"{names.TAG_STUDY_ID}\" = '{own_study}'")
    assert len(trials) == 4 and sum(t.info.status == "KILLED" for t in trials) == 2


def test_the_launch_pages_study_tab_says_what_will_run(store):
    at = open_page("launch")
    assert not at.exception, at.exception
    summary = [m.value for m in at.markdown if m.value.startswith("**Will run:**")]
    assert summary == ["**Will run:** 16 trials × up to 5 epochs each (at most 80 epochs), 2 at a time, over "
                       "lr in [0.0001, 0.09] (log), weight_decay in [0, 0.01], batch_size in {32, 64, 128}."], summary
    assert any(b.label == "Queue a study of 16 trials" for b in at.button)
