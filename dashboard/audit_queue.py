"""Queue a data audit from any page (the Data page's form, the Launch page's Audit tab): one way to ask.

An audit is a queued run (pipeline.queue.jobs.submit_audit); a folder that cannot take the folds is refused
before anything is queued, and the page says why in place.
"""
from __future__ import annotations

import streamlit as st

from dashboard import store
from pipeline.config import RunConfig
from pipeline.errors import UserError
from pipeline.queue import jobs


def queue(config: RunConfig, folds: int) -> str | None:
    """The queued audit's run id, or None after showing the refusal."""
    try:
        run_id = jobs.submit_audit(config, folds, client=store.client())
    except UserError as e:
        st.error(str(e), icon=":material/block:")
        return None
    store.forget_queue()
    st.cache_data.clear()  # the new run shows in every listing at once
    return run_id
