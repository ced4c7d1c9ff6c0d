"""Which columns the Runs table shows, in what order, which are pinned, and what it is sorted by: all in the URL.

`?columns=name&columns=status&…&pin=name&sort=test acc&order=ascending` restores the same table from a shared
link, as the filters do. Params, metrics and the person's own tags can join the standard columns. Sorting by a
column here (not by a header click, which the grid keeps to itself) is what the link carries.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from dashboard import run_search, tables

FIXED = ("sweep", "open")  # always first: a sweep's fold button and the link to the run's page
STANDARD = ("name", "status", "test acc", "best val acc", "test F1", "model", "lr", "training", "start")
BASE = (*STANDARD, "note", "queued", "dataset", "epochs", "batch_size", "optimizer", "weight_decay", "schedule",
        "augment", "mlflow")  # every column runs_table builds, beyond FIXED
ORDERS = ("descending", "ascending")


@dataclass(frozen=True)
class Layout:
    shown: tuple[str, ...] = STANDARD  # table column names, in order
    pinned: tuple[str, ...] = ("name",)
    sort: str = "start"
    descending: bool = True

    @property
    def extra(self) -> list[str]:
        """The params, metrics and tags columns runs_table must add (their `params.` form), the sort's too."""
        return list(dict.fromkeys(c for c in (*self.shown, self.sort) if c not in BASE))

    def column(self, name: str) -> str:
        """A choice's column in the table: `params.seed` is shown as `seed`."""
        return name.split(".", 1)[-1] if name not in BASE else name


def noted(runs: pd.DataFrame) -> bool:
    """Whether some run has a note of a person's (a sweep's own note is Runboard's: its row says the same)."""
    return run_search.NOTE_COLUMN in runs and runs.loc[~tables.is_sweep(runs), run_search.NOTE_COLUMN].notna().any()


def standard(noted: bool) -> list[str]:
    """The columns a 1,400 px window fits; when some run has a note, its first line takes the start time's place."""
    return [("note" if c == "start" and noted else c) for c in STANDARD]


def extra_options(runs: pd.DataFrame) -> list[str]:
    """Params, metrics and the person's own tags beyond the standard columns (not system metrics)."""
    params = [c for c in runs.columns if c.startswith("params.") and c.removeprefix("params.") not in tables.KEY_PARAMS]
    metrics = [c for c in runs.columns if c.startswith("metrics.") and not c.startswith("metrics.system/")]
    return sorted(params) + sorted(metrics) + sorted(run_search.own_tag_columns(runs))


def current_sort() -> tuple[str, bool]:
    """(column, descending) the Columns popover holds, read before it is drawn: the store sorts the page by it,
    and the popover's choices come from that page."""
    sort = st.session_state.get("sort") or st.query_params.get("sort") or "start"
    order = st.session_state.get("order") if "order" in st.session_state else st.query_params.get("order")
    return sort, order != ORDERS[1]


def choose(runs: pd.DataFrame) -> Layout:
    """The Columns popover; its four choices live in the URL (bind="query-params")."""
    options = [*BASE, *extra_options(runs)]
    if "columns" not in st.session_state and "columns" not in st.query_params:
        st.session_state["columns"] = standard(noted(runs))  # the first look; a shared link's columns win
    with st.popover("Columns", icon=":material/view_column:", help="choose, order and pin columns, and sort"):
        shown = st.multiselect("Show, in this order", options, key="columns", bind="query-params",
                               help="params, metrics and your tags too; the order picked is the table's")
        pinned = st.multiselect("Pin", options, key="pin", default=["name"], bind="query-params",
                                help="pinned columns stay on the left while the table scrolls sideways")
        sort = st.selectbox("Sort by", options, index=options.index("start"), key="sort", bind="query-params")
        order = st.segmented_control("Order", ORDERS, default=ORDERS[0], key="order", bind="query-params")
    return Layout(tuple(shown), tuple(pinned), sort or "start", order != ORDERS[1])
