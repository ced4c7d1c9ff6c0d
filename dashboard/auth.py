"""A password gate for a dashboard reachable from other machines.

On loopback (the default) no login is asked unless RUNBOARD_PASSWORD is set. Bound to any other
address the server refuses to start without a password. Guessing is slowed per client address: after
5 wrong passwords within a minute, each further try waits twice as long as the last (2 s, 4 s, ... up to
15 minutes); each failure is logged with the address, never with what was typed. For single sign-on in
production, use Streamlit's OIDC login (`st.login`, configured under [auth] in .streamlit/secrets.toml).
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
    if not is_loopback(host) and not configured_password():
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


def gate() -> None:
    """Ask for the password once per browser session when one is configured; stop the page until then."""
    import streamlit as st

    password = configured_password()
    if not password or st.session_state.get("authenticated"):
        return
    address = st.context.ip_address  # None on loopback (and not a string in Streamlit's AppTest)
    client = address if isinstance(address, str) and address else "localhost"
    st.title("Runboard")
    with st.form("login"):
        typed = st.text_input("Password", type="password")
        if st.form_submit_button("Sign in"):
            wait = THROTTLE.wait_s(client)
            if wait > 0:
                log.warning("dashboard sign-in from %s refused unchecked: throttled for %.0f s more", client, wait)
                st.error(f"Too many wrong passwords from your address: try again in {math.ceil(wait)} s.")
            elif hmac.compare_digest(typed.encode(), password.encode()):
                THROTTLE.succeeded(client)
                st.session_state["authenticated"] = True
                st.rerun()
            else:
                failures = THROTTLE.failed(client)
                log.warning("wrong dashboard password from %s (%d in a row)", client, failures)
                st.error("Wrong password.")
    st.stop()
