"""The Launch page's Study tab: a search-space editor (a row per field), the study's budget, and Queue.

Each row becomes the CLI's NAME=SPEC and goes through pipeline.queue.study.parse_spec, so the tab
refuses exactly what `python -m pipeline study` refuses, with the same message.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import store
from pipeline import names
from pipeline.config import ConfigError, RunConfig
from pipeline.queue import study

KEY = "study."
KINDS = ("range", "log range", "choices")


def default_rows(base: RunConfig) -> pd.DataFrame:
    return pd.DataFrame([
        {"field": "lr", "kind": "log range", "low": f"{base.lr / 30:.2g}", "high": f"{min(base.lr * 30, 1):.2g}",
         "choices": ""},
        {"field": "weight_decay", "kind": "range", "low": "0", "high": "0.01", "choices": ""},
        {"field": "batch_size", "kind": "choices", "low": "", "high": "", "choices": "32, 64, 128"},
    ])


def spec_of(row) -> str:
    """An editor row as the CLI's SPEC: LOW:HIGH, LOW:HIGH:log or A,B,C."""
    if row["kind"] == "choices":
        return str(row["choices"] or "")
    spec = f"{str(row['low'] or '').strip()}:{str(row['high'] or '').strip()}"
    return spec + (":log" if row["kind"] == "log range" else "")


def space_from(rows: pd.DataFrame) -> dict[str, dict]:
    """The edited rows as a study's space; ConfigError names the first field that is refused."""
    rows = rows.dropna(subset=["field"])
    return study.parse_search([f"{r['field']}={spec_of(r)}" for _, r in rows.iterrows()])


def launch_study(base: RunConfig | None, blocked: bool = False) -> None:
    if base is None:
        st.info("Fix the form above first: a study's trials start from its values.")
        return
    searchable = [f for f, v in RunConfig.__dataclass_fields__.items() if v.metadata["param"]]
    st.caption("Optuna samples each trial's values from these ranges (TPE learns from the trials so far) and the "
               "pruner stops a trial at the end of an epoch where it trails the others.")
    rows = st.data_editor(default_rows(base), key=KEY + "space", num_rows="dynamic", hide_index=True,
                          column_config={"field": st.column_config.SelectboxColumn("field", options=searchable,
                                                                                   required=True),
                                         "kind": st.column_config.SelectboxColumn("kind", options=KINDS, required=True),
                                         "low": st.column_config.TextColumn("low"),
                                         "high": st.column_config.TextColumn("high"),
                                         "choices": st.column_config.TextColumn("choices", help="A, B, C")})
    a, b, c, d, e = st.columns(5)
    n = int(a.number_input("trials", 1, study.MAX_TRIALS, 16, key=KEY + "trials"))
    parallel = int(b.number_input("parallel trials", 1, study.MAX_TRIALS, 2, key=KEY + "parallel"))
    objective = c.selectbox("objective", (names.VAL_ACCURACY, names.VAL_LOSS), key=KEY + "objective")
    pruner = d.selectbox("pruner", ("median", "hyperband", "none"), key=KEY + "pruner")
    sampler = e.selectbox("sampler", ("tpe", "random"), key=KEY + "sampler")
    try:
        space = space_from(rows)
    except ConfigError as err:
        st.error(str(err), icon=":material/block:")
        return
    st.markdown(f"**Will run:** {n} trials × up to {base.epochs} epochs each (at most {n * base.epochs} epochs), "
                f"{min(parallel, n)} at a time, over {study.describe(space)}.")
    if st.button(f"Queue a study of {n} trials", type="primary", icon=":material/model_training:", key=KEY + "go",
                 disabled=blocked):
        study_id = study.submit(base, space, n, parallel, objective, pruner, sampler, client=store.client())
        store.forget_queue()
        st.session_state[KEY + "queued"] = study_id
    queued = st.session_state.get(KEY + "queued")
    if queued:
        st.success(f"Queued study `{queued}`: a worker runs its trials.", icon=":material/schedule:")
        st.page_link("views/run_detail.py", label="Open the study's page", icon=":material/analytics:",
                     query_params={"run": queued})
