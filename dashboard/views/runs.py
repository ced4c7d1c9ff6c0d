"""Runs: every run of an experiment in one sortable, filterable table; pick runs to compare or open.

URL: `?experiment=NAME`, plus the filters (`filter_status`, `filter_dataset`, `filter_model`, `filter_tag`,
`search`, `filter`), the columns (`columns`, `pin`, `sort`, `order`: run_columns) and `view=Deleted`: a link
shows the same table. Selected rows can be renamed or deleted.
The table comes from one cached search_runs query; best val accuracy
from one bulk read of the val_accuracy histories, cached per run until the run changes (runs_view).
A sweep's runs fold under its parent row; learning-rate range tests have a table of their own.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import formatting, refresh, run_columns, run_edits, run_search, runs_view, store, tables, ui

MAX_COMPARE = 50
VIEWS = ("Active", "Deleted")  # MLflow's lifecycle: a deleted run waits in the Deleted view until restored
FILTERS = (("Status", "status"), ("Dataset", "params.dataset"), ("Model", "params.model"))  # key: filter_<label>


def pick_experiment(all_runs: pd.DataFrame) -> tuple[str, str]:
    """The experiment from the URL, else the one with the newest run; kept in the URL."""
    experiments = store.experiments()
    counts = all_runs["experiment_id"].value_counts()
    experiment_names = list(experiments["name"])
    wanted = st.query_params.get("experiment")
    if wanted and wanted not in experiment_names:
        st.warning(f"No experiment named **{wanted}** in this store: showing the newest one instead.",
                   icon=":material/search_off:")
    if wanted not in experiment_names:
        newest = all_runs.sort_values("start_time", ascending=False)["experiment_id"]
        by_id = experiments.set_index("experiment_id")["name"]
        wanted = by_id.get(newest.iloc[0]) if len(newest) else experiment_names[0]
    ids = dict(zip(experiments["name"], experiments["experiment_id"]))
    name = st.selectbox("Experiment", experiment_names, index=experiment_names.index(wanted), key="experiment",
                        format_func=lambda n: f"{n} ({counts.get(ids[n], 0)} runs)")
    st.query_params["experiment"] = name
    return name, ids[name]


def filtered(runs: pd.DataFrame) -> pd.DataFrame:
    """Status, dataset, model and tag filters and the search box, applied to the cached listing."""
    columns = st.columns([2, 2, 2, 2, 3])
    for column, (label, field) in zip(columns, FILTERS):
        options = sorted(runs[field].dropna().unique()) if field in runs else []
        chosen = column.multiselect(label, options, key=f"filter_{label.lower()}", placeholder="all",
                                    bind="query-params")  # filter_model: the playground's ?model= is another
        if chosen:
            runs = runs[runs[field].isin(chosen)]
    tags = columns[3].multiselect("Tag", run_search.tag_options(runs), key="filter_tag", placeholder="any",
                                  bind="query-params", help="your own tags (key=value); a run must have every one")
    text = columns[4].text_input("Search", key="search", bind="query-params", placeholder="name, note or tag",
                                 help="finds the words in a run's name, its note or your tags, whatever the case")
    return run_search.search(run_search.with_tags(runs, tags), text)


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
    """Filters, the table and its actions; re-run every few seconds while a run is still going."""
    runs = store.runs([experiment_id], query) if query else store.runs().query("experiment_id == @experiment_id")
    if runs.empty and not query:
        ui.no_runs_yet(name)
        return
    runs = filtered(runs)
    if runs.empty:
        st.info("No run matches these filters.", icon=":material/filter_alt_off:")
        return
    tests = runs[tables.range_tests(runs)]
    runs = runs[~tables.range_tests(runs)]  # a range test is no training run: its own table below
    if runs.empty:
        st.info("No training run matches yet: only range tests.", icon=":material/query_stats:")
        runs_view.range_tests(tests)
        return
    table, selected = runs_view.show(runs, "runs_table", run_columns.choose(runs))
    st.caption(f"{len(table)} runs shown · select rows to compare (2 to {MAX_COMPARE}) or open one · "
               "Columns chooses, orders, pins and sorts them, and a link keeps that")
    actions(table, selected)
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
    all_runs = store.runs()
    if all_runs.empty and "experiment" not in st.query_params and st.query_params.get("view") != VIEWS[1]:
        ui.no_runs_yet()
        st.page_link("views/runs.py", label="Deleted runs", icon=":material/delete:",
                     query_params={"view": VIEWS[1]}, help="runs deleted earlier wait there to be restored")
        return
    name, experiment_id = pick_experiment(all_runs)
    view = st.segmented_control("View", VIEWS, default=VIEWS[0], key="view", bind="query-params",
                                label_visibility="collapsed")
    if view == VIEWS[1]:
        deleted_section(experiment_id)
        return
    query = st.text_input("MLflow filter", key="filter", bind="query-params",
                          placeholder="params.lr = '0.01' and metrics.test_accuracy > 0.9",
                          help="MLflow search syntax: params.X, metrics.X, tags.X, attributes.status; "
                               "strings in quotes, joined by `and`").strip()
    mine = all_runs[all_runs["experiment_id"] == experiment_id]
    live = mine["status"].isin(ui.LIVE_STATUSES).any()
    st.fragment(table_section, run_every=refresh.LIVE_REFRESH if live else None)(name, experiment_id, query)


if __name__ == "__main__":
    page()
