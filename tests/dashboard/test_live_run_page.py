"""The run page across a run's life: it follows a resume, counts a resumed run's times honestly, and
asks before it cancels. Runs go through the real lifecycle (pipeline.runs.lifecycle, pipeline.queue.jobs)
on the session's SQLite store; a short sleep stands in for each phase a worker would spend.

Run: .venv/bin/python -m pytest tests/dashboard/test_live_run_page.py -q
"""
from __future__ import annotations

import time

import pytest
import streamlit as st
from mlflow.entities import Metric

from dashboard import follow, tables
from pipeline import names
from pipeline.config import RunConfig
from pipeline.queue import jobs
from pipeline.runs import lifecycle, tracking
from tests.dashboard.conftest import open_page, texts

EXPERIMENT = "live-run-page"
PHASE_S = 0.3    # each phase of training or waiting
STOPPED_S = 1.0  # the time it stands KILLED before the resume (and the page read)


@pytest.fixture(scope="module")
def client(store):
    return tracking.connect()


def _start(client, run_id: str, attempt: int = 1) -> None:
    """What a worker and the trainer do: claim the attempt, launch it, load the data, begin training."""
    assert lifecycle.claim(client, run_id, "test-worker", attempt)
    lifecycle.mark_running(client, run_id, {names.TAG_WORKER: "test-worker"})
    lifecycle.training_started(client, run_id)


def _epochs(client, run_id: str, epochs: range) -> None:
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(names.TRAIN_LOSS, 1.0 / e, now, e) for e in epochs])


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_a_resume_pressed_on_the_page_is_followed_at_once(client):
    run_id = jobs.submit(RunConfig(epochs=20, experiment=EXPERIMENT, run_name="resumed-here"), client=client)
    jobs.cancel(run_id, client)
    at = open_page("run_detail", run=run_id)  # its read is now cached, KILLED
    assert "This run was stopped" in texts(at.warning)
    at.button(key=f"resume-detail-{run_id}").click().run()
    assert not at.exception and client.get_run(run_id).info.status == names.SCHEDULED
    # the page follows the run it changed, not its first sight of it (it stayed on KILLED with a Resume button)
    assert "This run is scheduled: this page follows it" in texts(at.info) and not at.warning
    assert not [b for b in at.button if b.key == f"resume-detail-{run_id}"]
    jobs.cancel(run_id, client)


def test_an_ended_run_that_can_come_back_is_watched_a_finished_one_is_not():
    one = lambda status, attempt="1": ((status, attempt),)  # noqa: E731
    assert follow.mode(one(names.RUNNING)) == follow.mode(one(names.SCHEDULED, "2")) == follow.LIVE
    assert follow.mode(one(names.KILLED)) == follow.mode(one(names.FAILED)) == follow.RESUMABLE
    assert follow.mode(one(names.FINISHED)) == follow.FINAL
    sweep = (("FINISHED", "1"), ("KILLED", "1"))  # a sweep whose killed run may be resumed
    assert follow.mode(sweep) == follow.RESUMABLE and follow.mode(sweep + (("RUNNING", "2"),)) == follow.LIVE
    assert one(names.KILLED) != one(names.KILLED, "2")  # cancelled again after a resume between two looks


def test_a_resumed_runs_times_leave_out_the_time_it_stood_stopped(client):
    submitted = time.time()
    run_id = jobs.submit(RunConfig(epochs=20, experiment=EXPERIMENT, run_name="stopped-and-resumed"), client=client)
    time.sleep(PHASE_S)  # queued
    _start(client, run_id)
    _epochs(client, run_id, range(1, 6))
    time.sleep(PHASE_S)  # training
    lifecycle.finish(client, run_id, names.KILLED, "cancelled")
    killed = time.time()
    at = open_page("run_detail", run=run_id)
    assert _metrics(at)["epochs"] == "5 of 20"  # what it trained, not the 20 it was asked for
    time.sleep(STOPPED_S)  # stopped
    stood = time.time() - killed  # at least this long; the page reading it above is part of it
    assert jobs.resume(run_id, client).startswith(f"run {run_id} queued again as attempt 2")
    time.sleep(PHASE_S)  # queued again
    _start(client, run_id, attempt=2)
    _epochs(client, run_id, range(6, 21))
    time.sleep(PHASE_S)  # training again
    lifecycle.set_tags(client, run_id, {names.TAG_TRAIN_ENDED: f"{time.time():.3f}", names.TAG_EPOCHS_RUN: 20})
    lifecycle.finish(client, run_id, names.FINISHED)
    wall = time.time() - submitted

    st.cache_data.clear()
    at = open_page("run_detail", run=run_id)
    assert not at.exception and _metrics(at)["epochs"] == "20"
    run = tables.runs_frame([client.get_run(run_id)]).iloc[0]
    training, queued, stopped = run["duration_s"], run["queued_s"], run["stopped_s"]
    print(f"wall {wall:.2f} s: training {training:.2f}, queued {queued:.2f}, stopped {stopped:.2f} (stood {stood:.2f})")
    assert stopped >= stood and 2 * PHASE_S <= training and 2 * PHASE_S <= queued
    assert training + queued + stopped <= wall  # each second counted once, at most: the stopped time in neither
    shown = _metrics(at)
    assert shown["training time"] == tables.format_duration(training)
    assert shown["queued"] == tables.format_duration(queued) and shown["stopped"] == tables.format_duration(stopped)
    # the Runs table counts alike
    at = open_page("runs")
    table = next(d.value for d in at.dataframe if "training" in d.value.columns)
    row = table[table["run_id"] == run_id].iloc[0]
    assert row["training"] == tables.format_duration(training) and row["queued"] == tables.format_duration(queued)


def test_cancel_on_the_run_page_asks_first_and_shows_the_progress(client):
    run_id = jobs.submit(RunConfig(epochs=20, experiment=EXPERIMENT, run_name="long-one"), client=client)
    _start(client, run_id)
    _epochs(client, run_id, range(1, 4))
    at = open_page("run_detail", run=run_id)
    at.button(key=f"cancel-detail-{run_id}").click().run()
    assert names.TAG_CANCEL not in client.get_run(run_id).data.tags  # one click only asks
    assert "**Stop long-one?** Progress: 3 of 20 epochs trained" in texts(at.markdown)
    at.button(key=f"cancel-keep-detail-{run_id}").click().run()
    assert "Stop long-one?" not in texts(at.markdown) and names.TAG_CANCEL not in client.get_run(run_id).data.tags
    at.button(key=f"cancel-detail-{run_id}").click().run()
    at.button(key=f"cancel-confirm-detail-{run_id}").click().run()
    assert not at.exception and names.TAG_CANCEL in client.get_run(run_id).data.tags
    assert at.button(key=f"stopping-detail-{run_id}").disabled and "Stop long-one?" not in texts(at.markdown)
    lifecycle.finish(client, run_id, names.KILLED, "cancelled")  # what its worker does next
