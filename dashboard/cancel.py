"""Cancel in two steps, wherever it is offered (the run page, the queue view): the button asks, a box
that shows the run's progress confirms. One click must not stop hours of training.

The step is kept in st.session_state, not in a popover or dialog: the live views re-draw every few
seconds, and that must not close a half-made choice. Callbacks only move the step; the request
itself is made in the script run, where its toast (or refusal) can be shown.
"""
from __future__ import annotations

import streamlit as st

from dashboard import store, ui
from pipeline import names
from pipeline.queue import jobs

ASKING, CONFIRMED = "asking", "confirmed"


def _step_key(where: str, run_id: str) -> str:
    return f"cancel-step-{where}-{run_id}"


def _move(key: str, step: str | None) -> None:
    st.session_state[key] = step


def progress_words(status: str, epochs_done: int, epochs: object) -> str:
    """Where a run stands, for the person about to stop it: "5 of 30 epochs trained"."""
    trained = f"{epochs_done} of {epochs if epochs not in (None, '') else '?'} epochs trained"
    return trained if status == names.RUNNING else f"queued, {trained}"


def cancel_button(run_id: str, where: str, requested: bool) -> bool:
    """The first step (or "Stopping…" once asked); True when the request was just confirmed and sent."""
    key = _step_key(where, run_id)
    sent = st.session_state.get(key) == CONFIRMED
    if sent:
        st.session_state[key] = None
        ui.queue_request(jobs.cancel, run_id)
    if requested or sent:
        st.button("Stopping…", key=f"stopping-{where}-{run_id}", disabled=True)
    elif refusal := store.refusal("cancel", run_id=run_id):
        st.button("Cancel", key=f"cancel-{where}-{run_id}", icon=":material/stop_circle:", disabled=True, help=refusal)
    else:
        st.button("Cancel", key=f"cancel-{where}-{run_id}", icon=":material/stop_circle:", on_click=_move,
                  args=(key, ASKING), help="stop it (you confirm next): it ends KILLED, keeps what it logged, "
                                           "and can be resumed from its last checkpoint")
    return sent


def cancel_confirmation(run_id: str, run_name: str, progress: str, where: str) -> None:
    """The second step, once Cancel was pressed: what is about to stop, and the two answers."""
    key = _step_key(where, run_id)
    if st.session_state.get(key) != ASKING:
        return
    with st.container(border=True, key=f"cancel-box-{where}-{run_id}"):
        st.markdown(f"**Stop {run_name}?** Progress: {progress}. It ends KILLED and keeps what it logged; "
                    "Resume continues it from its last checkpoint.")
        stop, keep, _ = st.columns([1, 1, 3])
        stop.button("Stop run", key=f"cancel-confirm-{where}-{run_id}", type="primary", icon=":material/stop_circle:",
                    on_click=_move, args=(key, CONFIRMED))
        keep.button("Keep training", key=f"cancel-keep-{where}-{run_id}", on_click=_move, args=(key, None))
