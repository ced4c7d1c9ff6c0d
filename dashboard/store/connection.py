"""The dashboard's MLflow client and the errors pages show in place of a traceback."""
from __future__ import annotations

import streamlit as st
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline import settings
from pipeline.runs import tracking
from pipeline.runs.tracking import TrackingError


class RunNotFoundError(LookupError):
    """The run does not exist in this store, or was deleted."""


class RunDeletedError(RunNotFoundError):
    """The run is in MLflow's Deleted view: it can be restored."""

    def __init__(self, message: str, run_id: str, run_name: str, deleted_at: float | None):
        super().__init__(message)
        self.run_id, self.run_name, self.deleted_at = run_id, run_name, deleted_at


class ArtifactNotFoundError(LookupError):
    """The run has no such artifact (not logged yet, or never: e.g. a failed run)."""


class FilterError(ValueError):
    """The free-text MLflow filter string is not valid."""


ERRORS = (TrackingError, RunNotFoundError, ArtifactNotFoundError, FilterError)  # what pages show in place


@st.cache_resource(show_spinner=False)
def _client(uri: str) -> MlflowClient:
    return tracking.connect()


def client() -> MlflowClient:
    """The MLflow client for the configured store; raises TrackingError when it cannot be reached."""
    return _client(uri())


def uri() -> str:
    """The configured store, read at call time: caches are keyed by it."""
    return settings.tracking_uri()


def store_failed(e: Exception, what: str) -> TrackingError:
    return TrackingError(f"the MLflow store {uri()} failed while reading {what}: {str(e).splitlines()[0]}")


def not_found(e: Exception) -> bool:
    return isinstance(e, FileNotFoundError) or (isinstance(e, MlflowException)
                                                and e.error_code == "RESOURCE_DOES_NOT_EXIST")
