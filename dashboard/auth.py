"""A password gate for a dashboard reachable from other machines.

On loopback (the default) no login is asked unless RUNBOARD_PASSWORD is set. Bound to any other
address the server refuses to start without a password. For single sign-on in production, use
Streamlit's OIDC login (`st.login`, configured under [auth] in .streamlit/secrets.toml) instead.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import tomllib
from pathlib import Path

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


def gate() -> None:
    """Ask for the password once per browser session when one is configured; stop the page until then."""
    import streamlit as st

    password = configured_password()
    if not password or st.session_state.get("authenticated"):
        return
    st.title("Runboard")
    with st.form("login"):
        typed = st.text_input("Password", type="password")
        if st.form_submit_button("Sign in"):
            if hmac.compare_digest(typed.encode(), password.encode()):
                st.session_state["authenticated"] = True
                st.rerun()
            st.error("Wrong password.")
    st.stop()
