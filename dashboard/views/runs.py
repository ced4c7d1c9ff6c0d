"""Runs: every run of an experiment in one sortable, filterable table; pick runs to compare or open.

URL: `?experiment=NAME`, plus the filters (`filter_status`, `filter_dataset`, `filter_model`, `filter_tag`,
`search`, `filter`), the columns (`columns`, `pin`, `sort`, `order`: run_columns) and `view=Deleted`: a link
shows the same table. Selected rows can be renamed or deleted.
The table comes from one cached search_runs query; best val accuracy
from one bulk read of the val_accuracy histories, cached per run until the run changes (runs_view).
A sweep's runs fold under its parent row; learning-rate range tests have a table of their own.
"""
from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from dashboard import (formatting, refresh, run_columns, run_edits, run_query, run_search, runs_view, store, tables,
                       ui)

MAX_COMPARE = 50
VIEWS = ("Active", "Deleted")  # MLflow's lifecycle: a deleted run waits in the Deleted view until restored
PAGE_SIZES = (100, 250, 500)  # MLflow's UI pages 100 at a time
PARAM_FILTERS = (("Dataset", "dataset"), ("Model", "model"))  # key: filter_<label>; one value each (no OR in MLflow)


def pick_experiment() -> tuple[str, str]:
    """The experiment from the URL, else the one with the newest run; kept in the URL."""
    wanted = st.query_params.get("experiment")
    experiments = store.experiments(named=wanted)
    counts = store.run_counts()  # None where the store cannot count: the names alone
    experiment_names = list(experiments["name"])
    ids = dict(zip(experiments["name"], experiments["experiment_id"]))
    if wanted and wanted not in experiment_names:
        st.warning(f"No experiment named **{wanted}** in this store: showing the newest one instead.",
                   icon=":material/search_off:")
    if wanted not in experiment_names:
        newest = store.newest_run_experiment()
        wanted = next((n for n, i in ids.items() if i == newest), experiment_names[0])
    name = st.selectbox("Experiment", experiment_names, index=experiment_names.index(wanted), key="experiment",
                        format_func=lambda n: n if counts is None else f"{n} ({counts.get(ids[n], 0):,} runs)")
    st.query_params["experiment"] = name
    return name, ids[name]


def filters(experiment_id: str) -> tuple[list[str], list[str], str]:
    """Status, dataset, model and tag filters as MLflow clauses over every run; (clauses, tags, search text).
    Their choices come from the whole experiment where the store can list them (SQL), else from the runs
    shown so far in this session's page (a tracking server has no distinct-values call)."""
    choices = store.filter_choices(experiment_id) or st.session_state.get("runs_page_choices", {})
    columns = st.columns([2, 2, 2, 2, 3])
    statuses = columns[0].multiselect("Status", run_query.STATUSES, key="filter_status", placeholder="all",
                                      bind="query-params")
    params = {}
    for column, (label, key) in zip(columns[1:3], PARAM_FILTERS):
        chosen = column.multiselect(label, choices.get(f"params.{key}", []), key=f"filter_{label.lower()}",
                                    placeholder="all", bind="query-params", max_selections=1,
                                    help="one at a time: MLflow's search has no OR for params")
        if chosen:  # filter_model: the playground's ?model= is another
            params[key] = chosen[0]
    tag_options = sorted(f"{k.removeprefix('tags.')}={v}" for k, values in choices.items() if k.startswith("tags.")
                         for v in values)
    tags = columns[3].multiselect("Tag", tag_options, key="filter_tag", placeholder="any", bind="query-params",
                                  help="your own tags (key=value); a run must have every one")
    text = columns[4].text_input("Search", key="search", bind="query-params", placeholder="name, note or tag",
                                 help="finds the words in a run's name, its note or your tags, whatever the case, "
                                      "among the runs of this page; across every run: the MLflow filter, e.g. "
                                      "attributes.run_name ILIKE '%words%'")
    return run_query.clauses(statuses, params, tags), tags, text


def remember_choices(runs: pd.DataFrame) -> None:
    """A page's own dataset, model and tag values, offered by the filters where the store cannot list them."""
    seen = st.session_state.setdefault("runs_page_choices", {})
    for column in ["params.dataset", "params.model", *run_search.own_tag_columns(runs)]:
        if column in runs:
            seen[column] = sorted(set(seen.get(column, [])) | set(runs[column].dropna()))


def pager(found: store.RunsPage) -> None:
    """Where this page sits among every matching run, and the way to the others."""
    left, middle, right = st.columns([1, 1, 4])
    pages = None if found.total is None else max(1, -(-found.total // found.size))
    middle.selectbox("Rows per page", PAGE_SIZES, key="page_size", bind="query-params")
    left.number_input("Page", min_value=1, max_value=pages, step=1, key="runs_page", bind="query-params")
    last = found.offset + found.rows
    where = f"Runs {found.offset + 1:,}–{last:,}" if found.rows else "No runs on this page"
    if found.total is not None:
        where += f" of {found.total:,} · page {found.offset // found.size + 1:,} of {pages:,}"
    else:
        where += " · more follow" if found.more else " · the last page"
    right.caption(where + " · filtered, sorted and paged by MLflow's search")


def first_page_on_change(signature: tuple) -> None:
    """Back to page 1 when the filters, sort or page size change: page 7 of another question is no answer."""
    if st.session_state.get("runs_page_question") not in (None, signature):
        st.session_state["runs_page"] = 1
    st.session_state["runs_page_question"] = signature


def actions(table: pd.DataFrame, selected: list[str]) -> None:
    """Compare / open / rename / delete for the selected rows, and the same run in mlflow ui."""
    left, middle, right, rename, delete, _ = st.columns([1.3, 1.3, 1.3, 1, 1.3, 0.7])
    if left.button(f"Compare {len(selected)} selected", icon=":material/stacked_line_chart:", key="compare",
                   disabled=not 2 <= len(selected) <= MAX_COMPARE, type="primary",
                   help=f"select 2 to {MAX_COMPARE} rows in the table"):
        st.switch_page("views/compare.py", query_params={"runs": ",".join(selected)})
    if middle.button("Open selected", icon=":material/analytics:", key="open",
                     disabled=not 1 <= len(selected) <= 2, help="one row, or two to compare their evaluations"):
        params = {"run": selected[0], **({"vs": selected[1]} if len(selected) == 2 else {})}
        st.switch_page("views/run_detail.py", query_params=params)
    if len(selected) == 1:
        url = table.loc[table["run_id"] == selected[0], "mlflow"].iloc[0]
        right.link_button("Open in MLflow", url, icon=":material/open_in_new:")
        with rename.popover("Rename", icon=":material/edit:"):
            name = table.loc[table["run_id"] == selected[0], "name"].iloc[0].removeprefix("└ ")
            run_edits.rename_form(selected[0], name, "table")
    with delete:
        run_edits.delete_button(selected, "table", f"Delete {len(selected)}" if selected else "Delete",
                                help="MLflow's soft delete of the selected runs (you confirm next): restorable "
                                     "from the Deleted view")
    run_edits.delete_confirmation("table")

@ui.guarded
def table_section(name: str, experiment_id: str, query: str) -> None:
    """Filters, one page of the table and its actions; re-run every few seconds while a run is still going."""
    clauses, tags, text = filters(experiment_id)
    sort, descending = run_columns.current_sort()
    order_by = run_query.order_by(sort, descending)
    size = st.session_state.get("page_size") or int(st.query_params.get("page_size", PAGE_SIZES[0]))
    first_page_on_change((query, tuple(clauses), sort, descending, size))
    page = max(1, int(st.session_state.get("runs_page") or st.query_params.get("runs_page", 1)))
    read = functools.partial(store.runs_page, experiment_id, run_query.joined(query, clauses), order_by,
                             size=int(size), top_level=not (query or clauses))  # filtered: a sweep's runs stand alone
    found = read(page=page)
    if found.rows == 0 and found.offset and found.total:  # an old link's page 9 of 3: the last page instead
        page = -(-found.total // found.size)
        st.session_state["runs_page"] = page
        found = read(page=page)
    if found.rows == 0 and found.offset == 0:
        if query or clauses:
            st.info("No run matches these filters.", icon=":material/filter_alt_off:")
        else:
            ui.no_runs_yet(name)
        return
    if found.rows == 0:  # past the end where the store cannot count (a tracking server)
        st.info(f"Page {page} is past the last run: go back a page.", icon=":material/last_page:")
        pager(found)
        return
    remember_choices(found.runs)
    runs = run_search.search(found.runs, text)  # MLflow's search has no OR: name, note or tag is matched here
    tests = runs[tables.range_tests(runs)]
    runs = runs[~tables.range_tests(runs)]  # a range test is no training run: its own table below
    layout = run_columns.choose(found.runs)
    if runs.empty:
        st.info("No run on this page matches the search." if text else "No training run on this page: only range "
                "tests.", icon=":material/query_stats:")
    else:
        table, selected = runs_view.show(runs, "runs_table", layout)
        sorted_here = "" if order_by else f" · {sort} is sorted within this page (MLflow cannot sort by it)"
        if order_by and order_by[0].startswith("params.") and found.more:  # a page is sorted as numbers
            sorted_here = f" · {sort} sorts as text across pages (MLflow keeps params as text: 10 before 9)"
        st.caption(f"Select rows to compare (2 to {MAX_COMPARE}) or open one · Columns chooses, orders, pins and "
                   f"sorts them, and a link keeps that{sorted_here}")
        actions(table, selected)
    pager(found)
    runs_view.range_tests(tests)


@ui.guarded
def deleted_section(experiment_id: str) -> None:
    """MLflow's Deleted view of this experiment: the runs deleted here or in mlflow ui, to restore."""
    table = run_edits.deleted_table(store.deleted_runs(experiment_id))
    if table.empty:
        st.info("No deleted runs in this experiment.", icon=":material/delete:")
        return
    event = st.dataframe(table, key="deleted_table", hide_index=True, on_select="rerun", selection_mode="multi-row",
                         column_order=["name", "status", "deleted", "note"], placeholder=formatting.MISSING)
    selected = [table["run_id"].iloc[i] for i in event.selection.rows if i < len(table)]
    st.caption(f"{len(table)} deleted runs · select rows to restore them (a sweep's parent brings its runs back)")
    if st.button(f"Restore {len(selected)} selected", key="restore_selected", icon=":material/restore_from_trash:",
                 disabled=not selected, type="primary"):
        run_edits.restore(selected)


@ui.guarded
def page() -> None:
    run_edits.flash()
    st.title("Runs")
    if store.newest_run_experiment() is None and "experiment" not in st.query_params \
            and st.query_params.get("view") != VIEWS[1]:
        ui.no_runs_yet()
        st.page_link("views/runs.py", label="Deleted runs", icon=":material/delete:",
                     query_params={"view": VIEWS[1]}, help="runs deleted earlier wait there to be restored")
        return
    name, experiment_id = pick_experiment()
    view = st.segmented_control("View", VIEWS, default=VIEWS[0], key="view", bind="query-params",
                                label_visibility="collapsed")
    if view == VIEWS[1]:
        deleted_section(experiment_id)
        return
    query = st.text_input("MLflow filter", key="filter", bind="query-params",
                          placeholder="params.lr = '0.01' and metrics.test_accuracy > 0.9",
                          help="MLflow search syntax: params.X, metrics.X, tags.X, attributes.status; "
                               "strings in quotes, joined by `and`").strip()
    live = store.has_live_runs(experiment_id)
    st.fragment(table_section, run_every=refresh.LIVE_REFRESH if live else None)(name, experiment_id, query)


if __name__ == "__main__":
    page()
