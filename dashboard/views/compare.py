"""Compare: overlaid curves of 2 to 50 runs, what differs between them, and params vs a metric.

URL: `?runs=ID1,ID2,...` holds the selection, and `metrics`, `x_axis`, `smoothing`, `log_y`, `detail` the view,
so a comparison is shared, exactly as seen, by copying the link. A sweep's parent stands for its runs.
Curves first draw sampled histories (store.sampled_histories: at most SAMPLED_POINTS a curve, each stretch
of steps keeping its lowest and highest value), cached per run version; "Zoom to steps" (`steps` in the URL)
samples a range on its own, so a short stretch shows every point; "Full detail" draws every point.
The CSV download reads every point, only when it is clicked.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, formatting, lineage_view, refresh, store, tables, ui
from pipeline import names, settings

MAX_RUNS = 50
PARCOORDS_MIN_RUNS = 3  # below this a table says more than lines
WIDE_ABOVE = 4          # more runs than this: one chart per row
DEFAULT_METRICS = (names.TRAIN_LOSS, names.VAL_LOSS, names.VAL_ACCURACY, names.TRAIN_LOSS_STEP)


def pick_runs(all_runs: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """The runs from the URL (unknown or deleted ones reported), editable; written back to the URL. Runs
    of the link that the newest-first listing does not hold are read by id, and added to the listing."""
    wanted = ui.query_list("runs")
    unlisted = [r for r in wanted if r not in set(all_runs["run_id"])]
    if unlisted:
        all_runs = pd.concat([all_runs, store.runs_by_id(unlisted)], ignore_index=True)
    known = set(all_runs["run_id"])
    gone = [r for r in wanted if r not in known]
    if gone:
        st.warning(f"Left out {len(gone)} run(s) from the link that are deleted or not in this store: "
                   + ", ".join(f"`{r}`" for r in gone), icon=":material/search_off:")
    wanted = tables.expand_sweeps([r for r in wanted if r in known], all_runs)
    all_runs = tables.trained(all_runs)
    if len(wanted) > MAX_RUNS:
        st.warning(f"Showing the first {MAX_RUNS} of the {len(wanted)} runs in the link.")
        wanted = wanted[:MAX_RUNS]
    chosen = st.multiselect("Runs", list(all_runs["run_id"]), default=wanted, key="runs",
                            max_selections=MAX_RUNS, format_func=ui.run_options(all_runs).get,
                            placeholder="pick 2 to 50 runs")
    if chosen:
        st.query_params["runs"] = ",".join(chosen)
    else:
        st.query_params.pop("runs", None)
    return chosen, all_runs


def controls(selected: pd.DataFrame) -> tuple[list[str], str, float, bool, bool]:
    logged = [c.removeprefix("metrics.") for c in tables.prefixed(selected, "metrics.") if selected[c].notna().any()]
    ordered = [m for m in DEFAULT_METRICS if m in logged] + sorted(
        (m for m in logged if m not in DEFAULT_METRICS), key=lambda m: (m.startswith("system/"), m))
    metrics = st.multiselect("Metrics", ordered, default=[m for m in DEFAULT_METRICS if m in logged], key="metrics",
                             bind="query-params")
    left, middle, right, detail = st.columns([2, 3, 1, 1])
    axis = left.radio("x axis", charts.X_AXES, horizontal=True, key="x_axis", bind="query-params")
    smoothing = middle.slider("Smoothing (EMA weight)", 0.0, 0.99, 0.0, 0.01, key="smoothing", bind="query-params",
                              help="exponential moving average, as in TensorBoard, of per-step series and of "
                                   f"series with at least {charts.SMOOTH_MIN_POINTS} points; the raw curve stays "
                                   "faint behind; it averages the drawn points")
    log_y = right.toggle("log y", key="log_y", bind="query-params")
    full = detail.toggle("Full detail", key="detail", bind="query-params",
                         help=f"draw every logged point; off, each curve draws at most {store.SAMPLED_POINTS} points "
                              "that keep its first and last point and its spikes")
    return metrics, axis, smoothing, log_y, full


def sampling_note(history: pd.DataFrame) -> str | None:
    """What a sampled drawing leaves out, for under the charts; None when every point is drawn."""
    if not history.attrs.get("thinned"):
        return None
    logged = history.attrs.get("logged")
    if logged is not None:
        return (f"Drawing {len(history):,} of {logged:,} logged points: every stretch of steps keeps its lowest and "
                "highest value, each curve its first and last point. Full detail draws them all.")
    return (f"Drawing {len(history):,} points, at most {store.SAMPLED_POINTS} a curve, evenly sampled by the tracking "
            "server with each curve's first and last point: a spike between two samples may not show. Full detail "
            "draws every point.")


def zoomed(versions: dict[str, int], metrics: list[str]) -> pd.DataFrame:
    """The sampled curves, or only those between the steps picked on the zoom slider, sampled on their own: a
    short stretch comes back with every logged point, a long one with the same bound (as MLflow's charts fetch
    a zoomed range). The slider shows once a curve was thinned; its range is in the link."""
    history = store.sampled_histories(versions, metrics)
    if history.empty or not (history.attrs.get("thinned") or st.session_state.get("steps")):
        return history
    first, last = int(history["step"].min()), int(history["step"].max())
    if last <= first:
        return history
    lo, hi = st.slider("Zoom to steps", first, last, (first, last), key="steps", bind="query-params",
                       help="draw only these steps, read again for them alone: a short stretch shows every point "
                            "logged there; the x axis may still show epochs or time")
    if (lo, hi) == (first, last):
        return history
    return store.sampled_histories(versions, metrics, step_range=(int(lo), int(hi)))


def comparison_csv(run_versions: dict[str, int], metrics: list[str], labels: dict[str, str]) -> bytes:
    """Every logged point of the compared curves as CSV, read when the download is clicked."""
    return tables.history_csv(store.metric_histories(run_versions, metrics), labels)


@ui.guarded
def curves(chosen: list[str], metrics: list[str], axis: str, smoothing: float, log_y: bool, full: bool = False) -> None:
    """The curve grid and its CSV; a fragment, re-read on a timer while a run is still going."""
    selected = store.runs_by_id(chosen).set_index("run_id").reindex(chosen).dropna(subset=["run_name"]).reset_index()
    colors, labels, versions = charts.run_colors(chosen), tables.run_labels(selected), store.versions(selected)
    history = store.metric_histories(versions, metrics) if full else zoomed(versions, metrics)
    start_ms = (selected["train_start"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(milliseconds=1)  # not queue time
    drawn, x_title = charts.with_x(history, axis, tables.steps_per_epoch(selected),
                                   dict(zip(selected["run_id"], start_ms)))
    raw = charts.left_raw(history, metrics, smoothing)
    if raw:  # right under the slider, which visibly does nothing to these
        st.caption(charts.smoothing_note(raw))
    if not history.empty:  # one legend for the grid, above it, where no chart's tool bar covers it
        st.plotly_chart(charts.legend_figure({r: colors[r] for r in selected["run_id"]}, labels), key="curve_legend",
                        config={"staticPlot": True})
    per_row = 2 if len(chosen) <= WIDE_ABOVE else 1  # many runs: full-width charts read better
    columns = st.columns(per_row)
    for i, metric in enumerate(metrics):
        with columns[i % per_row]:
            if (history["key"] == metric).any():
                st.plotly_chart(charts.metric_figure(drawn, metric, colors, labels, smoothing, log_y, x_title,
                                                     legend=False),
                                key=f"curve_{metric}", config={"displaylogo": False})
            else:
                st.info(f"No history of {metric} for these runs yet.")
    note = None if full else sampling_note(history)
    if note:
        st.caption(note)
    logged = len(history) if full else history.attrs.get("logged")
    st.download_button(f"Download CSV ({logged:,} points)" if logged is not None else "Download CSV (every point)",
                       lambda: comparison_csv(versions, metrics, labels), file_name="runboard-comparison.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore", key="csv")


def differences(selected: pd.DataFrame, colors: dict[str, str]) -> None:
    st.subheader("What differs")
    sampled = store.sampled_histories(store.versions(selected), [names.VAL_ACCURACY])  # keeps each run's best
    if not sampled.attrs["extremes"]:  # a tracking server's even sample may miss it
        sampled = store.metric_histories(store.versions(selected), [names.VAL_ACCURACY])
    best_val = tables.best(sampled, names.VAL_ACCURACY)
    table = tables.diff_table(selected, best_val)
    styled = table.style.apply(lambda _: [f"color: {colors[r]}; font-weight: 600" for r in table.index],
                               subset=["run"]).format(formatting.table_formats(table), na_rep=formatting.MISSING)
    st.dataframe(styled, key="diff_table", hide_index=True, placeholder=formatting.MISSING)
    params = tables.differing(selected, tables.prefixed(selected, "params."))
    if not params:
        st.caption("These runs share every param: only their metrics differ.")
    if len(selected) >= PARCOORDS_MIN_RUNS and params:
        finals = [f"metrics.{m}" for m in tables.FINAL_METRICS if f"metrics.{m}" in selected]
        if finals:
            metric = st.selectbox("Color by", finals, key="parcoords_metric",
                                  format_func=lambda m: m.removeprefix("metrics."))
            st.plotly_chart(charts.parallel_coordinates_figure(selected, params, metric), key="parcoords")


@ui.guarded
def page() -> None:
    all_runs = ui.reading_page("Compare runs")
    if all_runs is None:
        return
    chosen, all_runs = pick_runs(all_runs)
    if len(chosen) < 2:
        st.info("Pick at least two runs above, or select rows on the Runs page and press Compare.",
                icon=":material/stacked_line_chart:")
        st.page_link("views/runs.py", label="Runs", icon=":material/table_rows:")
        return
    selected = all_runs.set_index("run_id").loc[chosen].reset_index()  # chosen among trained runs only
    experiments = sorted(set(selected["experiment_id"]))
    mlflow_compare = tables.mlflow_compare_url(settings.mlflow_ui_url(), chosen, experiments)
    st.caption(f"{len(chosen)} runs · share this comparison, as you see it, by copying the page URL · "
               f"[open in MLflow]({mlflow_compare})")
    changed = lineage_view.conflict_warning(lineage_view.digest_conflicts(selected))
    if changed:
        st.warning(changed, icon=":material/difference:")
    metrics, axis, smoothing, log_y, full = controls(selected)
    live = selected["status"].isin(ui.LIVE_STATUSES).any()
    st.fragment(curves, run_every=refresh.LIVE_REFRESH if live else None)(chosen, metrics, axis, smoothing, log_y, full)
    differences(selected, charts.run_colors(chosen))


if __name__ == "__main__":
    page()
