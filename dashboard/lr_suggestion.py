"""The Launch page's "Suggest a learning rate": a range test run OUTSIDE the Streamlit process.

The test trains for up to 100 steps, so the page never runs it itself (training happens in other
processes): it starts `python -m pipeline lr-find ... --json` as a child process (an argv list, no
shell), waits for it under a spinner for at most TIMEOUT seconds, and fills the suggestion into the
form's lr. Not queued for the worker: the worker's slots train runs, and a user waiting on the form
should not queue behind them; the test is short and logged as its own MLflow run all the same.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import streamlit as st

from dashboard import charts, formatting
from dashboard.launch_form import KEY
from pipeline.config import RunConfig
from pipeline.settings import PROJECT_ROOT

TIMEOUT = 300  # seconds: the test is 100 steps; a 224 px resnet on a CPU may need minutes
STATE = KEY + "lr_find"  # the last test's result (or error) in session state


def argv(config: RunConfig) -> list[str]:
    """The lr-find command for `config`: every field as its flag, as `submit` would take it."""
    args = [sys.executable, "-m", "pipeline", "lr-find", "--json"]
    for f in dataclasses.fields(RunConfig):
        if f.name not in ("run_name", "register"):
            args += ["--" + f.name.replace("_", "-"), str(getattr(config, f.name))]
    return args


def run_test(config: RunConfig) -> dict:
    """The range test's JSON, or {"error": one line}."""
    try:
        done = subprocess.run(argv(config), capture_output=True, text=True, timeout=TIMEOUT, cwd=PROJECT_ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"the range test took over {TIMEOUT} s and was stopped; try a smaller model or image size"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"the range test failed (exit {done.returncode}): {reason}"}
    return json.loads(lines[-1])


def _suggest(config: RunConfig) -> None:
    """Button callback: it runs before the widgets, so it may set the lr widget's value."""
    with st.spinner("Running a learning-rate range test (up to 100 training steps)…"):
        result = run_test(config)
    st.session_state[STATE] = result
    if "suggestion" in result:
        st.session_state[KEY + "lr"] = f"{result['suggestion']:.2g}"


def suggest_button(config: RunConfig | None, blocked: bool = False) -> None:
    """The action and, once it ran, its curve and the run it was logged as."""
    st.button("Suggest a learning rate", icon=":material/query_stats:", disabled=config is None or blocked,
              on_click=_suggest, args=(config,), key=KEY + "suggest",
              help="runs Smith's range test (fastai's lr_find) on this data and model in a separate process, "
                   "logs it as its own run and fills the suggested value into lr")
    result = st.session_state.get(STATE)
    if not result:
        return
    if "error" in result:
        st.error(result["error"], icon=":material/error:")
        return
    st.success(f"Suggested lr **{formatting.lr(result['suggestion'])}** (filled in above): a tenth of the lr where "
               f"the smoothed loss was lowest ({formatting.lr(result['min_lr'])}). Logged as run `{result['run_id']}`.",
               icon=":material/query_stats:")
    st.plotly_chart(charts.lr_find_figure(result), key=KEY + "lr_find_chart")
