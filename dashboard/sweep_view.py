"""A sweep's own page (the run page of a sweep's parent): its progress, its best scores and its runs,
read and drawn as the Runs page draws them (runs_view), so both pages say the same of every run."""
from __future__ import annotations

import streamlit as st

from dashboard import formatting, runs_view, store, tables
from pipeline import names, settings


def sweep(run: dict) -> None:
    """A sweep's parent: a group of runs, not a trained model, so its runs instead of training cells."""
    st.title(run["run_name"])
    children = tables.sweep_children(store.sweep_runs(run["experiment_id"], run["run_id"]), run["run_id"])
    summary = tables.sweep_summary(children)
    st.badge(f"{run['tags'].get(names.TAG_SWEEP, '')} sweep", icon=":material/account_tree:",
             color="blue" if summary["live"] else "violet")
    mlflow_url = tables.mlflow_run_url(settings.mlflow_ui_url(), run["experiment_id"], run["run_id"])
    note = run["tags"].get(names.TAG_NOTE)
    st.caption(" · ".join([f"sweep `{run['run_id']}`", *([note] if note else []), f"[open in MLflow]({mlflow_url})"]))
    if children.empty:
        st.info("This sweep's runs are not in this store any more.")
        return
    st.progress(summary["ended"] / summary["runs"], text=summary["progress"])
    best_val = runs_view.best_val_accuracy(children)
    cells = (("runs", str(summary["runs"])),
             ("best test accuracy", formatting.percent(summary["best_test_accuracy"])),
             ("best val accuracy", formatting.percent(best_val.reindex(children["run_id"]).max())))
    for column, (label, value) in zip(st.columns(len(cells)), cells):
        column.metric(label, value)
    runs_view.show(children, "sweep_runs", selectable=False, newest_first=False)  # in queue order
    st.page_link("views/compare.py", label=f"Compare its {summary['runs']} runs", icon=":material/stacked_line_chart:",
                 query_params={"runs": ",".join(children["run_id"])})
