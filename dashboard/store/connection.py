"""The dashboard's MLflow client and the errors pages show in place of a traceback."""
from __future__ import annotations

import streamlit as st
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from streamlit.runtime.scriptrunner import get_script_run_ctx

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


class PermissionRefused(TrackingError):
    """MLflow refused the signed-in person an action (HTTP 403): the store works, the person lacks a grant."""


class FilterError(ValueError):
    """The free-text MLflow filter string is not valid."""


ERRORS = (TrackingError, RunNotFoundError, ArtifactNotFoundError, FilterError)  # what pages show in place


@st.cache_resource(show_spinner=False)
def _client(uri: str) -> MlflowClient:
    return tracking.connect()


PERSON, PERSON_CLIENT = "person", "person_client"  # session state: who signed in (store/people.py), their client


def person():
    """The person this browser session signed in as (store/people.py), or None: nobody signs in, or this is
    no page session (a bench or test calling the store directly)."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    return st.session_state.get(PERSON)


def client() -> MlflowClient:
    """The MLflow client for the configured store, calling as the person signed in where people sign in with
    their MLflow users (store/people.py); raises TrackingError when the store cannot be reached."""
    signed_in = person()
    if signed_in is None:
        return _client(uri())
    made = st.session_state.get(PERSON_CLIENT)
    if made is None or made[0] != (uri(), signed_in.username):
        from dashboard.store import mlflow_internals

        _client(uri())  # the server answers, and this process holds its own login (artifacts travel with it)
        made = (uri(), signed_in.username), mlflow_internals.client_as(uri(), signed_in.username, signed_in.password)
        st.session_state[PERSON_CLIENT] = made
    return made[1]


def uri() -> str:
    """The configured store, read at call time."""
    return settings.tracking_uri()


def cache_key() -> str:
    """What every cached read is keyed by: the store, and the person signed in, so one person's reads never
    reach another who may not see the same experiments."""
    signed_in = person()
    return uri() if signed_in is None else f"{uri()} as {signed_in.username}"


def store_failed(e: Exception, what: str) -> TrackingError:
    return refused(e) or TrackingError(f"the MLflow store {uri()} failed while reading {what}: "
                                       f"{str(e).splitlines()[0]}")


def not_found(e: Exception) -> bool:
    return isinstance(e, FileNotFoundError) or (isinstance(e, MlflowException)
                                                and e.error_code == "RESOURCE_DOES_NOT_EXIST")


def refused(e: Exception) -> PermissionRefused | None:
    """MLflow's 403 as the one line a page shows; None for any other error."""
    if not (isinstance(e, MlflowException) and e.error_code == "PERMISSION_DENIED"):
        return None
    signed_in = person()
    who = f"{signed_in.username} lacks" if signed_in else "the dashboard's MLflow user lacks"
    return PermissionRefused(f"MLflow refused this: {who} the permission it needs "
                             f"({str(e).splitlines()[0][:200]}). An MLflow admin can grant it.")
