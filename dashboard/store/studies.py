"""A study's trials for its page: rebuilt from MLflow by the same code the driver uses (pipeline.runs.trials)."""
from __future__ import annotations

import streamlit as st
from mlflow.exceptions import MlflowException

from dashboard import refresh
from dashboard.store.connection import cache_key, client, store_failed
from pipeline.runs import trials


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _study(uri: str, run_id: str, version: int) -> tuple[trials.Setup, list]:
    try:
        run = client().get_run(run_id)
        setup = trials.Setup.of(run)
        return setup, trials.frozen_trials(client(), run, setup)
    except MlflowException as e:
        raise store_failed(e, f"the trials of study {run_id}") from None


def study(run_id: str, version: int) -> tuple[trials.Setup, list]:
    """(its setup, its Optuna FrozenTrials in number order); `version` (the run's last update) renews the cache."""
    return _study(cache_key(), run_id, version)
