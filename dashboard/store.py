"""The dashboard's one door to MLflow: cached reads that return plain data (DataFrames, dicts).

Pages never call MlflowClient themselves. The client is a cached resource; queries are cached
with a short TTL and keyed by what changes their answer (run ids and their last update), so a
rerun of a page costs no MLflow query at all.
"""
from __future__ import annotations

import streamlit as st
from mlflow import MlflowClient

from pipeline import tracking
from pipeline.tracking import TrackingError

TTL_SECONDS = 5  # how stale a listing may be; live views refresh faster through fragments

__all__ = ["client", "TrackingError"]


@st.cache_resource(show_spinner=False)
def _client(uri: str) -> MlflowClient:
    return tracking.connect()


def client() -> MlflowClient:
    """The MLflow client for the configured store; raises TrackingError when it cannot be reached."""
    return _client(tracking.settings.tracking_uri())
