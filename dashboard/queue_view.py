"""The live view of the run queue: running runs with progress, ETA, metrics, loss curve and log tail;
queued runs in order; the latest to end. A fragment that re-reads the store every few seconds.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, formatting, store, tables, ui
from dashboard.cancel import cancel_button, cancel_confirmation, progress_words
from dashboard.resume import resume_buttons
from dashboard import refresh
from pipeline import names
from pipeline.queue import jobs

NO_WORKER_AFTER_SECONDS = 20  # a run waiting this long with no live worker anywhere: say how to start one
WHERE = "queue"  # the Cancel buttons' key part here
LATEST = (names.TRAIN_LOSS_STEP, names.TRAIN_LOSS, names.VAL_LOSS, names.VAL_ACCURACY)


@dataclass
class Progress:
    fraction: float       # 0..1
    text: str             # "epoch 2/5 · step 40/105"
    eta_s: float | None   # seconds left at the recent pace, None before it is known


def progress(history: pd.DataFrame, steps_per_epoch: float, epochs: float) -> Progress:
    """Where a run is, from its train_loss_step points (step, timestamp) and the size of its job."""
    if not (steps_per_epoch > 0 and epochs > 0):
        return Progress(0.0, "loading data", None)
    per_epoch = int(steps_per_epoch)
    total = per_epoch * int(epochs)
    if history.empty:
        return Progress(0.0, f"epoch 1/{int(epochs)} · step 0/{total}", None)
    done = int(history["step"].max())
    epoch = min(int(epochs), done // per_epoch + 1)
    eta = None
    first, last = history.loc[history["step"].idxmin()], history.loc[history["step"].idxmax()]
    seconds = (last["timestamp"] - first["timestamp"]) / 1000
    if seconds > 0 and last["step"] > first["step"]:
        eta = (total - done) * seconds / (last["step"] - first["step"])
    return Progress(min(1.0, done / total), f"epoch {epoch}/{int(epochs)} · step {done}/{total}", eta)


def _age(seconds_since: str | float | None, now: float) -> float | None:
    try:
        return now - float(seconds_since)
    except (TypeError, ValueError):
        return None


def _value(row: pd.Series, column: str):
    value = row.get(column)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _progress_words(row: pd.Series) -> str:
    return progress_words(row["status"], int(_value(row, "epochs_done") or 0), _value(row, "params.epochs"))


def _running_card(row: pd.Series, history: pd.DataFrame, experiment: str, now: float) -> None:
    run_id = row["run_id"]
    with st.container(border=True):
        head, actions = st.columns([5, 1])
        with head:
            ui.status_badge(row["status"])
            st.markdown(f"**{row['run_name']}** · `{run_id[:8]}` · {experiment} · "
                        f"{row.get('params.dataset')} / {row.get('params.model')}")
        with actions:
            cancel_button(run_id, WHERE, bool(_value(row, f"tags.{names.TAG_CANCEL}")))
        cancel_confirmation(run_id, row["run_name"], _progress_words(row), WHERE)
        steps = history[(history["run_id"] == run_id) & (history["key"] == names.TRAIN_LOSS_STEP)]
        p = progress(steps, float(_value(row, f"tags.{names.TAG_STEPS_PER_EPOCH}") or 0),
                     float(_value(row, "params.epochs") or 0))
        eta = f" · ETA {tables.format_duration(p.eta_s)}" if p.eta_s is not None else ""
        started = _age(_value(row, f"tags.{names.TAG_STARTED}"), now)
        st.progress(p.fraction, text=f"{p.text}{eta} · running {tables.format_duration(started)}")
        for column, key in zip(st.columns(len(LATEST)), LATEST):
            value = _value(row, f"metrics.{key}")
            column.metric(key, formatting.kind_of(key)(value))
        if not steps.empty:
            fig = charts.metric_figure(steps, names.TRAIN_LOSS_STEP, {run_id: charts.run_colors([run_id])[run_id]},
                                       {run_id: row["run_name"]})
            fig.update_layout(height=220, showlegend=False, title=None)
            st.plotly_chart(fig, key=f"live-loss-{run_id}", config={"displayModeBar": False})
        beat = _age(_value(row, f"tags.{names.TAG_HEARTBEAT}"), now)
        if beat is not None and beat > jobs.STALE_SECONDS:
            st.warning(f"Its worker sent no heartbeat for {beat:.0f} s; a restarted worker marks it FAILED.")
        # on the worker's machine the tail is read from its log file, current at every refresh; elsewhere it
        # comes with the worker's heartbeat (every few seconds), so it says how old it is
        live = store.live_log_tail(run_id)
        as_of = "live" if live is not None else (
            f"as of {tables.format_duration(beat)} ago" if beat is not None else "not sent yet")
        with st.expander(f"Log (tail, {as_of})", expanded=True):
            st.code(live or _value(row, f"tags.{names.TAG_LOG_TAIL}") or "(nothing yet)", language=None, height=220)
        st.caption(f"worker {_value(row, f'tags.{names.TAG_WORKER}') or '—'} · heartbeat "
                   f"{tables.format_duration(beat)} ago")
        st.page_link("views/run_detail.py", label="Run details", icon=":material/analytics:",
                     query_params={"run": run_id})


def _queued_rows(queued: pd.DataFrame, experiments: dict[str, str], now: float) -> None:
    for position, (_, row) in enumerate(queued.iterrows(), 1):
        run_id = row["run_id"]
        cols = st.columns([1, 5, 2, 1])
        cols[0].markdown(f"**#{position}**")
        cols[1].markdown(f"{row['run_name']} · `{run_id[:8]}` · {experiments.get(row['experiment_id'], '')}")
        waited = _age(_value(row, f"tags.{names.TAG_QUEUED}"), now)
        cols[2].caption(f"queued {tables.format_duration(waited)} ago")
        with cols[3]:
            cancel_button(run_id, WHERE, bool(_value(row, f"tags.{names.TAG_CANCEL}")))
        cancel_confirmation(run_id, row["run_name"], _progress_words(row), WHERE)


def _worker_hint(running: pd.DataFrame, queued: pd.DataFrame, now: float) -> None:
    if queued.empty:
        return
    reasons = queued.get(f"tags.{names.TAG_BLOCKED}", pd.Series(dtype=object)).dropna()
    if not reasons.empty:  # put there by a worker whose launcher cannot start runs (pipeline/queue/worker.py)
        st.error(f"**The worker cannot start queued runs:** {reasons.iloc[0]}. They stay queued and start once "
                 "this is fixed (the worker checks every 10 s).", icon=":material/block:")
        return
    beats = [_age(b, now) for b in running.get(f"tags.{names.TAG_HEARTBEAT}", pd.Series(dtype=str))]
    alive = any(b is not None and b < jobs.STALE_SECONDS for b in beats)
    waited = max((_age(q, now) or 0) for q in queued[f"tags.{names.TAG_QUEUED}"])
    if not alive and waited > NO_WORKER_AFTER_SECONDS:
        st.warning(f"No worker has taken a run for {tables.format_duration(waited)}. Start one in the project "
                   "folder: `python -m pipeline worker` (`make run` starts one too).", icon=":material/engineering:")
    elif alive:
        st.caption(f"{len(queued)} run(s) wait for a free worker slot.")


def _ended(recent: pd.DataFrame, experiments: dict[str, str]) -> None:
    if recent.empty:
        return
    st.markdown("**Recently ended**")
    table = pd.DataFrame({
        "open": "run_detail?run=" + recent["run_id"],
        "name": recent["run_name"],
        "status": recent["status"].map(lambda s: tables.STATUS_LABELS.get(s, s)),
        "experiment": recent["experiment_id"].map(experiments),
        "ran": recent["duration_s"].map(tables.format_duration),  # training only, as on every page
        "test accuracy": recent.get(f"metrics.{names.TEST_ACCURACY}", pd.Series(np.nan, index=recent.index)),
        "reason": recent.get(f"tags.{names.TAG_ERROR}", pd.Series("", index=recent.index)).fillna(""),
        "attempt": recent.get(f"tags.{names.TAG_ATTEMPT}", pd.Series("1", index=recent.index)).fillna("1"),
    })
    st.dataframe(table, hide_index=True, placeholder=formatting.MISSING, column_config={
        "open": st.column_config.LinkColumn("open", display_text="details"),
        "test accuracy": formatting.percent_column()})
    resume_buttons(recent)


@st.fragment(run_every=refresh.QUEUE_REFRESH)
@ui.guarded
def live_queue() -> None:
    """Running and queued runs of every experiment, re-read every refresh.QUEUE_REFRESH seconds."""
    unfinished, recent = store.queue()
    experiments = dict(zip(store.experiments()["experiment_id"], store.experiments()["name"]))
    now = time.time()
    status = unfinished.get("status", pd.Series(dtype=str))
    running = unfinished[status == "RUNNING"]
    queued = unfinished[status == "SCHEDULED"]
    if not queued.empty:
        queued = queued.assign(_at=pd.to_numeric(queued[f"tags.{names.TAG_QUEUED}"])).sort_values("_at")
    st.subheader(f"Queue · {len(running)} running · {len(queued)} queued")
    _worker_hint(running, queued, now)
    if unfinished.empty:
        st.info("Nothing queued or running. Runs you launch appear here; a worker "
                "(`python -m pipeline worker`) trains them.", icon=":material/inbox:")
    history = store.metric_histories(store.versions(running), [names.TRAIN_LOSS_STEP]) if not running.empty \
        else pd.DataFrame(columns=["run_id", "key", "step", "timestamp", "value"])
    for _, row in running.iterrows():
        _running_card(row, history, experiments.get(row["experiment_id"], ""), now)
    _queued_rows(queued, experiments, now)
    _ended(recent, experiments)
