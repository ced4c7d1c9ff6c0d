"""A password gate for a dashboard reachable from other machines.

On loopback (the default) no login is asked unless RUNBOARD_PASSWORD is set. Bound to any other
address the server refuses to start without a password. With RUNBOARD_SIGN_IN=mlflow (`make cluster`)
each person signs in with their own user of the tracking server instead, and MLflow's permissions apply
to what they do. Guessing is slowed per client address either way: after 5 wrong passwords within a
minute, each further try waits twice as long as the last (2 s, 4 s, ... up to 15 minutes); each failure
is logged with the address, never with what was typed. For single sign-on in production, use
Streamlit's OIDC login (`st.login`, configured under [auth] in .streamlit/secrets.toml).
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import os
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

SECRETS = Path(__file__).resolve().parent.parent / ".streamlit" / "secrets.toml"


class AuthError(RuntimeError):
    """The server would be exposed without a password."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: assume it is reachable from outside


def configured_password() -> str:
    """RUNBOARD_PASSWORD, else `password` in .streamlit/secrets.toml, else empty."""
    if os.environ.get("RUNBOARD_PASSWORD"):
        return os.environ["RUNBOARD_PASSWORD"]
    if SECRETS.is_file():
        with SECRETS.open("rb") as f:
            return str(tomllib.load(f).get("password", ""))
    return ""


def check_startup(host: str) -> None:
    """Refuse to serve a public address without sign-in, or a sign-in setting that cannot work."""
    from pipeline import settings

    people = settings.sign_in() == "mlflow"
    if people:
        settings.use_tracking_credentials()  # the process's own login (artifacts), refused early when unusable
    if not is_loopback(host) and not configured_password() and not people:
        raise AuthError(f"RUNBOARD_HOST={host} exposes the dashboard beyond this machine: set RUNBOARD_PASSWORD "
                        "(or `password` in .streamlit/secrets.toml) first, or bind to 127.0.0.1")


@dataclass
class Throttle:
    """Wrong passwords per client, shared by every session of the server process: after `free` failures
    within `window_s`, the client waits before its next try is even checked, twice as long each time."""
    free: int = 5
    window_s: float = 60.0
    first_wait_s: float = 2.0
    max_wait_s: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _throttled: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, client: str) -> list[float]:
        """This client's failures since its last success; forgotten after a quiet spell as long as the longest wait."""
        failures = self._failures.setdefault(client, [])
        if failures and self.clock() - failures[-1] > self.max_wait_s + self.window_s:
            failures.clear()
            self._throttled.discard(client)
        return failures

    def wait_s(self, client: str) -> float:
        """Seconds before this client's next try is checked (0: it may try now)."""
        with self._lock:
            failures = self._recent(client)
            if client not in self._throttled:
                return 0.0
            wait = min(self.first_wait_s * 2 ** (len(failures) - self.free), self.max_wait_s)
            return max(0.0, wait - (self.clock() - failures[-1]))

    def failed(self, client: str) -> int:
        """Record a wrong password; how many in a row this client has typed."""
        with self._lock:
            failures = self._recent(client)
            failures.append(self.clock())
            if len(failures) >= self.free and failures[-1] - failures[-self.free] <= self.window_s:
                self._throttled.add(client)
            return len(failures)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
            self._throttled.discard(client)


THROTTLE = Throttle()


def locked() -> bool:
    """True until this browser session signs in, where sign-in is on."""
    import streamlit as st

    from pipeline import settings

    on = settings.sign_in() == "mlflow" or bool(configured_password())
    return on and not st.session_state.get("authenticated")


def gate() -> None:
    """Ask who is there once per browser session where sign-in is on; stop the page until then. With
    RUNBOARD_SIGN_IN=mlflow each person signs in with their own MLflow user (the tracking server checks the
    password); otherwise one shared password, when one is configured."""
    import streamlit as st

    from pipeline import settings

    people = settings.sign_in() == "mlflow"
    password = configured_password()
    if not locked():
        if people:
            _signed_in_as()
        return
    address = st.context.ip_address  # None on loopback (and not a string in Streamlit's AppTest)
    client = address if isinstance(address, str) and address else "localhost"
    st.title("Runboard")
    if people:
        st.caption(f"Sign in with your user of the MLflow tracking server {settings.tracking_uri()}.")
    with st.form("login"):
        username = st.text_input("Username") if people else ""
        typed = st.text_input("Password", type="password")
        if st.form_submit_button("Sign in"):
            wait = THROTTLE.wait_s(client)
            if wait > 0:
                log.warning("dashboard sign-in from %s refused unchecked: throttled for %.0f s more", client, wait)
                st.error(f"Too many wrong passwords from your address: try again in {math.ceil(wait)} s.")
            elif (checked := _check(username, typed, password)) is None:
                pass  # the tracking server did not answer: said in place, not counted as a guess
            elif checked:
                THROTTLE.succeeded(client)
                st.session_state["authenticated"] = True
                st.rerun()
            else:
                failures = THROTTLE.failed(client)
                log.warning("wrong dashboard %s from %s (%d in a row)",
                            f"sign-in for user {username!r}" if people else "password", client, failures)
                st.error("Wrong username or password." if people else "Wrong password.")
    st.stop()


def _check(username: str, typed: str, password: str) -> bool | None:
    """The shared password, compared in constant time; or the MLflow user, checked by the tracking server
    (the person is then kept in the session, and every MLflow call of the session is made as them)."""
    import streamlit as st

    from dashboard.store import people

    if not username:
        return bool(password) and hmac.compare_digest(typed.encode(), password.encode())
    try:
        people.keep(people.sign_in(username.strip(), typed))
    except people.SignInRefused:
        return False
    except people.TrackingError as e:
        st.error(f"Cannot check your password: {e}", icon=":material/cloud_off:")
        return None
    return True


def _signed_in_as() -> None:
    """Who this session calls MLflow as, and the way out, in the sidebar."""
    import streamlit as st

    from dashboard.store import people

    person = people.current()
    if person is None:
        return
    with st.sidebar:
        st.caption(f"Signed in as **{person.username}**{' (MLflow admin)' if person.is_admin else ''}")
        if st.button("Sign out", key="sign_out", icon=":material/logout:"):
            st.session_state.pop("authenticated", None)
            people.sign_out()
            st.rerun()
