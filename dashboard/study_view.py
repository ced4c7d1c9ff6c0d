"""A study's own page (the run page of a study's run): progress, Optuna's figures, its trials, Cancel and Continue.

The trials are rebuilt from MLflow by the code the study's driver uses, so the page and the driver
agree on every trial's state; the figures are Optuna's own (optuna.visualization) in charts.py.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, formatting, store, tables
from pipeline import names, settings
from pipeline.errors import UserError
from pipeline.runs import trials as study_trials

STATE_LABELS = {"COMPLETE": "✓ complete", "PRUNED": "✂ pruned", "FAIL": "✗ failed", "RUNNING": "▶ running"}


def trials_table(setup: study_trials.Setup, frozen: list) -> pd.DataFrame:
    """One row per trial, in number order, with a link to its run."""
    rows = []
    for number, t in enumerate(frozen):
        run_id = t.user_attrs.get("run_id", "")
        rows.append({"trial": number, "open": f"run_detail?run={run_id}" if run_id else None,
                     "state": STATE_LABELS.get(t.state.name, t.state.name), "value": t.value,
                     "epochs": t.user_attrs.get("epochs"), **{k: t.params.get(k) for k in setup.space}})
    return pd.DataFrame(rows, columns=["trial", "open", "state", "value", "epochs", *setup.space])


def counts(setup: study_trials.Setup, frozen: list) -> dict:
    """How far the study is: trials made of all, ended, pruned, failed, and the best value so far."""
    states = [t.state.name for t in frozen]
    values = [t.value for t in frozen if t.state.name == "COMPLETE" and t.value is not None]
    pick = max if setup.direction == "maximize" else min
    return {"made": len(frozen), "all": setup.trials, "ended": sum(s != "RUNNING" for s in states),
            "pruned": states.count("PRUNED"), "failed": states.count("FAIL"), "best": pick(values) if values else None}


def summary_line(c: dict) -> str:
    """"12/16 trials · 5 pruned · best 0.987": the Runs page's group row says the same."""
    return f"{c['ended']}/{c['all']} trials · {c['pruned']} pruned · best {formatting.score(c['best'])}"


def _act(action, *args) -> None:
    """Continue or cancel; then the whole page again, since a continued study goes back to following its
    trials live (a rerun of this fragment alone would draw the run it read before the click: CI saw
    "3/3 trials · FINISHED" stay after Continue)."""
    try:
        st.toast(action(*args, client=store.client()))
    except UserError as e:
        st.error(str(e))
        return
    finally:
        store.forget_run(args[0])
        store.forget_queue()
    st.rerun()


def actions(run: dict) -> None:
    """Cancel (its queued trials end KILLED, its running ones are stopped) and Continue with N more trials."""
    from pipeline.queue import study

    run_id, live = run["run_id"], run["status"] in names.ACTIVE
    refusal = store.refusal("launch", experiment_id=run["experiment_id"])
    left, middle, right = st.columns([1, 1, 2], vertical_alignment="bottom")
    more = left.number_input("More trials", min_value=1, max_value=study.MAX_TRIALS, value=4, key=f"more_{run_id}")
    if middle.button(f"Continue with {more} more trials", key=f"continue_{run_id}", icon=":material/add:",
                     disabled=bool(refusal), help=refusal):
        _act(study.extend, run_id, int(more))
    if live and right.button("Cancel study", key=f"cancel_{run_id}", icon=":material/cancel:", type="secondary",
                             disabled=bool(refusal), help=refusal):
        _act(study.cancel, run_id)


def study(run: dict) -> None:
    """The page of a study's run."""
    import optuna  # noqa: F401  (only this page needs it)

    st.title(run["run_name"])
    setup, frozen = store.study(run["run_id"], run["last_update"])
    c = counts(setup, frozen)
    st.badge(f"{setup.sampler.upper() if setup.sampler == 'tpe' else 'random'} study · {setup.pruner} pruner",
             icon=":material/model_training:", color="blue" if run["status"] in names.ACTIVE else "violet")
    mlflow_url = tables.mlflow_run_url(settings.mlflow_ui_url(), run["experiment_id"], run["run_id"])
    note = run["tags"].get(names.TAG_NOTE)
    st.caption(" · ".join([f"study `{run['run_id']}`", *([note] if note else []), f"[open in MLflow]({mlflow_url})"]))
    if run["status"] == names.FAILED:
        st.error(run["tags"].get(names.TAG_ERROR, "the study failed"))
    st.progress(min(c["ended"] / max(c["all"], 1), 1.0), text=f"{summary_line(c)} · {run['status']}")
    cells = (("trials", f"{c['ended']}/{c['all']}"), ("pruned", str(c["pruned"])), ("failed", str(c["failed"])),
             (f"best {setup.objective}", formatting.score(c["best"])))
    for column, (label, value) in zip(st.columns(len(cells)), cells):
        column.metric(label, value)
    actions(run)
    if not frozen:
        st.info("No trial has been queued yet: a worker queues them (`python -m pipeline worker`).")
        return
    figures = charts.study_figures(study_trials.as_study(setup, frozen), setup.objective)
    for row in (charts.STUDY_FIGURES[:2], charts.STUDY_FIGURES[2:4], charts.STUDY_FIGURES[4:]):
        for column, name in zip(st.columns(len(row)), row):
            with column:
                if figures[name] is None:
                    st.caption(f"**{name}**: drawn once two trials have completed")
                else:
                    st.plotly_chart(figures[name], key=f"study_{name}")
    st.dataframe(trials_table(setup, frozen), key="study_trials", hide_index=True, placeholder=formatting.MISSING,
                 column_config={"open": st.column_config.LinkColumn("", display_text="open", width=50),
                                "value": formatting.score_column(setup.objective),
                                "lr": formatting.lr_column("lr")})
