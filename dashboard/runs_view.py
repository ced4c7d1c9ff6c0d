"""The runs table as the Runs page and a sweep's page show it: the same cells from the same reads, one look.

Its standard columns fit a 1,400 px window beside the sidebar; the rest are one click away in the table's
column menu (hidden, not dropped), and the Runs page's Columns popover (run_columns) chooses, orders, pins and
sorts them. A note's first line, when some run has one, takes the start time's place. A sweep's parent folds
its runs under a "> 3 runs" button.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pandas as pd
import streamlit as st

from dashboard import formatting, run_columns, store, tables, ui
from pipeline import names, settings


def best_val_accuracy(runs: pd.DataFrame) -> pd.Series:
    """Per run, the best val_accuracy it reached: one bulk read of the histories, cached per run version."""
    histories = store.metric_histories(store.versions(runs), [names.VAL_ACCURACY])
    return tables.best(histories, names.VAL_ACCURACY)


def _unfolded_key(key: str) -> str:
    return f"{key}_unfolded"


def _toggle(key: str, run_ids: tuple[str, ...]) -> None:
    """The fold button's callback: the clicked sweep's runs shown or hidden."""
    click = st.session_state.get(f"{key}_fold")
    if not click or click["row"] >= len(run_ids):
        return
    unfolded = set(st.session_state.get(_unfolded_key(key), ()))
    unfolded ^= {run_ids[click["row"]]}
    st.session_state[_unfolded_key(key)] = sorted(unfolded)


def column_config(key: str, run_ids: Sequence[str]) -> dict:
    cc = st.column_config
    return {
        "sweep": cc.ButtonColumn("sweep", type="tertiary", width=75, on_click=_toggle, args=(key, tuple(run_ids)),
                                 key=f"{key}_fold", help="a sweep's runs: click to show them under it, or fold them"),
        "open": cc.LinkColumn("", display_text="open", help="the run's detail page", width=50),
        "name": cc.TextColumn("name", width=160),
        "status": cc.MultiselectColumn("status", options=[*tables.STATUS_LABELS.values(), tables.SWEEP_LABEL],
                                       color=[*(ui.STATUS_CSS[s] for s in tables.STATUS_LABELS), ui.SWEEP_CSS],
                                       width=105),
        "test acc": formatting.percent_column("test acc", width=70),
        "best val acc": formatting.percent_column("best val", width=80, help="the best val accuracy of its epochs"),
        "test F1": formatting.score_column("test F1", width=60),
        "start": cc.DatetimeColumn("start (UTC)", format="MMM D HH:mm", width=100,
                                   help="when it was queued or started, in UTC"),
        "training": cc.TextColumn("training", width=70, help="from the first epoch to the end of the test "
                                  "evaluation; time in the queue is not counted"),
        "queued": cc.TextColumn("queued", help="waiting for a worker before it started"),
        "model": cc.TextColumn("model", width=65), "epochs": cc.NumberColumn("epochs", width=60),
        "batch_size": cc.NumberColumn("batch size"), "lr": formatting.lr_column("lr", width=70),
        "weight_decay": cc.NumberColumn("weight decay", format="%.1e"),
        "mlflow": cc.LinkColumn("MLflow", display_text="↗", help="the same run in mlflow ui", width=55),
        "note": cc.TextColumn("note", width=100, help="the first line of the run's note (its page shows all)"),
    }


def _with(column_config, **changes):
    """A column's config with `changes`; a ButtonColumn's config sits inside the object it returns."""
    if dataclasses.is_dataclass(column_config):
        return dataclasses.replace(column_config, config={**column_config.config, **changes})
    return {**column_config, **changes}


def arranged(config: dict, table: pd.DataFrame, layout: run_columns.Layout) -> tuple[list[str], dict]:
    """(column order, config) for a layout: its columns first, pinned ones marked; the rest hidden, still in
    the table's column menu."""
    shown = [c for c in (*run_columns.FIXED, *map(layout.column, layout.shown)) if c in table]
    pinned = {*run_columns.FIXED, *map(layout.column, layout.pinned)} if layout.pinned else set()  # fold, link lead
    config = {column: _with(config.get(column, {}), hidden=column not in shown,
                            **({"pinned": True} if column in pinned and column in shown else {}))
              for column in table.columns.drop("run_id")}  # a config for a column not there still takes room
    return [*shown, *(c for c in table.columns if c not in shown and c != "run_id")], config


def show(runs: pd.DataFrame, key: str, layout: run_columns.Layout | None = None, selectable: bool = True,
         newest_first: bool = True):
    """The table of `runs` (sweep parents fold their runs) as `layout` arranges it, else the standard columns
    newest first; (the table as shown, the selected run ids)."""
    unfolded = st.session_state.get(_unfolded_key(key), [])
    layout = layout or run_columns.Layout(shown=tuple(run_columns.standard(run_columns.noted(runs))))
    table = tables.runs_table(runs, best_val_accuracy(runs), settings.mlflow_ui_url(), layout.extra, unfolded,
                              (layout.column(layout.sort), layout.descending))
    if not newest_first:
        table = table.iloc[::-1].reset_index(drop=True)
    if not tables.is_sweep(runs).any():
        table = table.drop(columns=["sweep"])
    shown = table.assign(status=table["status"].map(lambda label: [label]))  # a list shows as a colored pill
    order, config = arranged(column_config(key, list(table["run_id"])), table, layout)
    options = {"on_select": "rerun", "selection_mode": "multi-row"} if selectable else {}
    event = st.dataframe(shown, key=key, hide_index=True, placeholder=formatting.MISSING, column_order=order,
                         column_config=config, **options)
    selected = [table["run_id"].iloc[i] for i in event.selection.rows if i < len(table)] if selectable else []
    return table, selected


def range_tests(runs: pd.DataFrame) -> None:
    """Learning-rate range tests in their own table: what they suggest, not a training run's scores."""
    if runs.empty:
        return
    st.markdown(f"**Learning-rate range tests** ({len(runs)})")
    st.caption("Each is a short test (up to 100 steps, no model) that suggests an lr: a tenth of the lr where the "
               "smoothed loss was lowest. The Launch page's *Suggest a learning rate* runs one.")
    st.dataframe(tables.range_test_table(runs), key="range_tests", hide_index=True, placeholder=formatting.MISSING,
                 column_config={"open": st.column_config.LinkColumn("", display_text="open", width=50),
                                "status": st.column_config.TextColumn("status", width=110),
                                "suggested lr": formatting.lr_column("suggested lr"),
                                "batch_size": st.column_config.NumberColumn("batch size"),
                                "start": st.column_config.DatetimeColumn("start (UTC)", format="YYYY-MM-DD HH:mm")})
