"""The run queue as the launch page's live view reads it; writes go through pipeline.queue.jobs."""
from __future__ import annotations

import re

import pandas as pd
import streamlit as st
from mlflow.exceptions import MlflowException

from dashboard import refresh, tables
from dashboard.store.connection import cache_key, client, store_failed
from pipeline import names, settings


@st.cache_data(ttl=refresh.QUEUE_TTL, show_spinner=False)
def _queue(uri: str, recent: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from pipeline.queue import jobs

    try:
        unfinished = jobs.unfinished(client())
        ended = jobs.search(client(), f"attributes.status != '{names.SCHEDULED}' AND "
                                      f"attributes.status != '{names.RUNNING}'", ["attributes.end_time DESC"], recent)
    except MlflowException as e:
        raise store_failed(e, "the run queue") from None
    return tables.runs_frame(unfinished), tables.runs_frame(ended)


def queue(recent: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Queue runs as runs frames: (SCHEDULED and RUNNING ones, the `recent` latest to end)."""
    return _queue(cache_key(), recent)


def live_log_tail(run_id: str) -> str | None:
    """The end of a running run's log as the worker writes it, when this machine holds the worker's log
    folder (RUNBOARD_LOG_DIR; `make run`); None elsewhere: the heartbeat's copy in the run's tags then."""
    from pipeline.queue.launcher import log_tail

    if not re.fullmatch(r"[0-9a-f]{32}", run_id):  # a path part: MLflow's run ids only
        return None
    path = settings.run_log(run_id)
    return log_tail(path) if path.is_file() else None


def forget_queue() -> None:
    """Drop the cached queue after a submit or cancel, so the live view shows it at once."""
    _queue.clear()
