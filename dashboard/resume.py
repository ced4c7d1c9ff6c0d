"""Resume in the dashboard: a FAILED or KILLED run queued again (pipeline.queue.jobs.resume), and its attempts.

A resumed run continues in the same MLflow run from its last checkpoint; a worker picks it up.
The run detail header and the queue view's recently ended runs each call one function here.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import store, ui
from pipeline import names
from pipeline.queue import jobs


def resume_button(run_id: str, status: str, key: str = "detail") -> bool:
    """A Resume button for a FAILED or KILLED run (nothing for any other); True when it just queued the run."""
    if status not in names.RESUMABLE:
        return False
    refusal = store.refusal("launch", run_id=run_id)
    return st.button("Resume", key=f"resume-{key}-{run_id}", icon=":material/replay:", disabled=bool(refusal),
                     help=refusal or "queue it again: a worker continues it from its last checkpoint, in this same "
                                     "run") and ui.queue_request(jobs.resume, run_id)


def attempts_caption(tags: dict[str, str]) -> None:
    """Which attempt the run is on and why each resume happened, when it was ever resumed."""
    history = tags.get(names.TAG_ATTEMPT_HISTORY)
    if history:
        epoch, step = tags.get(names.TAG_CHECKPOINT), tags.get(names.TAG_CHECKPOINT_STEP)
        where = (f" · last checkpoint: step {step} (epoch {epoch} done)" if step else
                 f" · last checkpoint: epoch {epoch}" if epoch else "")
        st.caption(f"attempt {tags.get(names.TAG_ATTEMPT, '1')}{where}  \n" + "  \n".join(history.splitlines()))


def resume_buttons(recent: pd.DataFrame) -> None:
    """One Resume button per FAILED or KILLED run of a runs frame (the queue view's recently ended)."""
    resumable = recent[recent["status"].isin(names.RESUMABLE)]
    if resumable.empty:
        return
    for column, (_, row) in zip(st.columns(min(4, len(resumable))), resumable.head(4).iterrows()):
        with column:
            refusal = store.refusal("launch", run_id=row["run_id"])
            if st.button(f"Resume {row['run_name']}", key=f"resume-ended-{row['run_id']}", icon=":material/replay:",
                         disabled=bool(refusal),
                         help=refusal or "queue it again: it continues from its last checkpoint"):
                ui.queue_request(jobs.resume, row["run_id"])
