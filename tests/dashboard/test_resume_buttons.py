"""Resume from the dashboard: the run detail header and the queue view's recently ended runs.

Run: .venv/bin/python -m pytest tests/dashboard/test_resume_buttons.py -q
"""
from __future__ import annotations

import streamlit as st

from pipeline import names
from pipeline.config import RunConfig
from pipeline.queue import jobs
from pipeline.runs import lifecycle, tracking
from tests.dashboard.conftest import open_page, texts

CONFIG = RunConfig(dataset="digits", model="mlp", epochs=1, experiment="resume-page", run_name="stopped-early")


def test_a_killed_run_resumes_from_its_page_and_from_the_queue_view(store):
    client = tracking.connect()
    run_id = jobs.submit(CONFIG, client=client)
    jobs.cancel(run_id, client)  # KILLED before it started
    at = open_page("run_detail", run=run_id)
    assert not at.exception
    at.button(key=f"resume-detail-{run_id}").click().run()
    run = client.get_run(run_id)
    assert run.info.status == names.SCHEDULED and lifecycle.attempt_of(run) == 2
    st.cache_data.clear()
    at = open_page("run_detail", run=run_id)
    assert "attempt 2 (by hand)" in texts(at.caption)
    lifecycle.set_tags(client, run_id, {names.TAG_CHECKPOINT: 2, names.TAG_CHECKPOINT_STEP: 25})  # within epoch 3
    st.cache_data.clear()
    at = open_page("run_detail", run=run_id)
    assert "last checkpoint: step 25 (epoch 2 done)" in texts(at.caption)
    assert not [b for b in at.button if b.key == f"resume-detail-{run_id}"]  # queued: nothing to resume
    jobs.cancel(run_id, client)
    st.cache_data.clear()
    at = open_page("launch")
    at.button(key=f"resume-ended-{run_id}").click().run()
    assert not at.exception and lifecycle.attempt_of(client.get_run(run_id)) == 3
    jobs.cancel(run_id, client)
