"""People who sign in with their own MLflow user (RUNBOARD_SIGN_IN=mlflow), and what MLflow lets them do.

MLflow decides: every call the dashboard makes for a person carries that person's login, so its permissions
apply. What is here only lets a page say beforehand what a person cannot do ("you can read this experiment;
launching needs EDIT") instead of failing at the click; it asks MLflow the person's level on the experiment or
model (every role, DENY and the server's default permission resolved there, not here).
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import streamlit as st

from dashboard import refresh
from dashboard.store import connection
from dashboard.store.connection import TrackingError, uri

LEVELS = ("NO_PERMISSIONS", "READ", "USE", "EDIT", "MANAGE")  # MLflow's levels, weakest first (DENY counts as none)
NEEDS = {  # what MLflow asks of a person for each action a page offers, and how a refusal names it
    "launch": ("EDIT", "launching"), "cancel": ("EDIT", "cancelling"), "edit": ("EDIT", "changing runs"),
    "delete": ("MANAGE", "deleting runs"), "model": ("EDIT", "changing it (aliases, tags, descriptions, variants)"),
    "delete_model": ("MANAGE", "deleting its versions"),
}
CURRENT = "/api/2.0/mlflow/users/current"
PERMISSION = "/api/3.0/mlflow/users/permissions/get"  # a person may ask it about themselves


class SignInRefused(ValueError):
    """The tracking server does not know this username with this password."""


@dataclass(frozen=True)
class Person:
    username: str
    password: str = field(repr=False)
    is_admin: bool = False


def _get(path: str, username: str, password: str) -> dict:
    login = base64.b64encode(f"{username}:{password}".encode()).decode()
    request = urllib.request.Request(uri().rstrip("/") + path, headers={"Authorization": f"Basic {login}"})
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.load(response)


def sign_in(username: str, password: str) -> Person:
    """The person, once the tracking server has checked the password; SignInRefused when it does not."""
    try:
        user = _get(CURRENT, username, password)["user"]
    except urllib.error.HTTPError as e:
        if e.code == 401:
            raise SignInRefused("wrong username or password") from None
        raise TrackingError(f"the MLflow tracking server {uri()} answered {e.code} to a sign-in") from None
    except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
        raise TrackingError(f"cannot reach the MLflow tracking server {uri()}: {getattr(e, 'reason', e)}") from None
    return Person(user["username"], password, bool(user.get("is_admin")))


def keep(person: Person) -> None:
    """Remember who this browser session signed in as: every MLflow call of the session is then made as them."""
    st.session_state[connection.PERSON] = person


def sign_out() -> None:
    """Forget who this browser session signed in as, and the client that called MLflow as them."""
    for name in (connection.PERSON, connection.PERSON_CLIENT):
        st.session_state.pop(name, None)


def current() -> Person | None:
    """Who this browser session signed in as; None where people do not sign in with MLflow users."""
    return connection.person()


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _level(server: str, username: str, _password: str, resource_type: str, resource_id: str) -> str:
    """The person's level on one resource as the server works it out (grants through every role, DENY, the
    default permission). Cached per person for the listings' lifetime, so an admin's new grant shows within it."""
    query = urllib.parse.urlencode({"username": username, "resource_type": resource_type,
                                    "resource_id": resource_id})
    try:
        return _get(f"{PERMISSION}?{query}", username, _password)["permission"]
    except (urllib.error.URLError, OSError, KeyError, ValueError):
        return "MANAGE"  # a server that cannot say: nothing is closed beforehand, MLflow still refuses at the click


def level(resource_type: str, resource_id: str) -> str:
    """The signed-in person's MLflow level on one experiment or registered model (MANAGE when nobody signs in)."""
    person = current()
    if person is None or person.is_admin:
        return "MANAGE"
    return _level(uri(), person.username, person.password, resource_type, resource_id)


def refusal(action: str, experiment_id: str | None = None, model: str | None = None,
            run_id: str | None = None) -> str | None:
    """Why the signed-in person cannot do `action` on this experiment (a run's, or a registered model), in one
    line; None when they can, when nobody signs in, or when the experiment does not exist yet."""
    person = current()
    if person is None:
        return None
    if run_id is not None:
        from dashboard.store.listings import run

        experiment_id = run(run_id)["experiment_id"]
    if experiment_id is None and model is None:
        return None
    needed, doing = NEEDS[action]
    kind, name = ("experiment", experiment_id) if experiment_id is not None else ("registered_model", model)
    has = level(kind, str(name))
    if has in LEVELS and LEVELS.index(has) >= LEVELS.index(needed):
        return None
    what = "this experiment" if kind == "experiment" else f"model {name}"
    can = f"you can read {what}" if has != "NO_PERMISSIONS" else f"you have no permission on {what}"
    return f"Signed in as {person.username}: {can}; {doing} needs {needed}. An MLflow admin can grant it."
