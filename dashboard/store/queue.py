"""The run queue as the launch page's live view reads it; writes go through pipeline.queue.jobs."""
from __future__ import annotations

import pandas as pd
import streamlit as st
from mlflow.exceptions import MlflowException

from dashboard import refresh, tables
from dashboard.store.connection import client, store_failed, uri
from pipeline import names


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
    return _queue(uri(), recent)


def forget_queue() -> None:
    """Drop the cached queue after a submit or cancel, so the live view shows it at once."""
    _queue.clear()
