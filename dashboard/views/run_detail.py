"""Run detail: one run's summary, curves, evaluation (confusion matrix, per-class scores, mistakes),
a two-run comparison of evaluations, its artifacts and its logged model.

URL: `?run=ID`, optionally `&vs=ID2` for the comparison. Each section that needs an artifact says
in place when the run has none (still running, failed, or never logged), never a traceback.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import (artifact_preview, charts, evaluation_view, follow, formatting, lineage_view, refresh, run_edits,
                       store, study_view, sweep_view, tables, ui)
from dashboard.cancel import cancel_button, cancel_confirmation, progress_words
from dashboard.resume import attempts_caption, resume_button
from pipeline import names, settings
from pipeline.training import metrics

CURVE_GROUPS = {  # one chart per group, its metrics overlaid
    "loss": (names.TRAIN_LOSS, names.VAL_LOSS), "accuracy": (names.TRAIN_ACCURACY, names.VAL_ACCURACY),
    names.TRAIN_LOSS_STEP: (names.TRAIN_LOSS_STEP,), "learning rate": (names.LR,),
    "throughput (img/s)": (names.THROUGHPUT,),
}
TOP_CONFUSED = 10


def pick_run() -> str | None:
    """The run in the URL, else one picked from the newest runs (written to the URL)."""
    wanted = st.query_params.get("run")
    if wanted:
        return wanted
    runs = store.runs(limit=store.PICKER_RUNS)
    if runs.empty:
        ui.no_runs_yet()
        return None
    chosen = st.selectbox("Run", list(runs["run_id"]), index=None, key="pick_run", placeholder="pick a run",
                          format_func=ui.run_options(runs).get)
    if chosen:
        st.query_params["run"] = chosen
    return chosen


def header(run: dict) -> None:
    st.title(run["run_name"])
    ui.status_badge(run["status"])
    mlflow_url = tables.mlflow_run_url(settings.mlflow_ui_url(), run["experiment_id"], run["run_id"])
    started = run["start_time"].strftime("%Y-%m-%d %H:%M UTC") if pd.notna(run["start_time"]) else "—"
    tags = run["tags"]
    ray = (f" · Ray job `{tags[names.TAG_RAY_JOB]}` on {tags.get(names.TAG_RAY_NODE, 'a node not known yet')}"
           if names.TAG_RAY_JOB in tags else "")
    st.caption(f"run `{run['run_id']}` · started {started}{ray} · [open in MLflow]({mlflow_url})")
    for line in filter(None, (lineage_view.trained_on(tags), lineage_view.left_out(tags))):
        st.caption(line)
    clone, register, rename, delete, _ = st.columns([1, 1, 1, 1, 2], vertical_alignment="center")
    clone.page_link("views/launch.py", label="Clone run", icon=":material/content_copy:",
                    query_params={"clone": run["run_id"]})
    if run["status"] == "FINISHED":
        register.page_link("views/registry.py", label="Register model", icon=":material/inventory_2:",
                           query_params={"register": run["run_id"]})
    with rename.popover("Rename", icon=":material/edit:"):
        run_edits.rename_form(run["run_id"], run["run_name"], "detail")
    with delete:
        run_edits.delete_button([run["run_id"]], f"detail-{run['run_id']}", "Delete run",
                                help="MLflow's soft delete: restorable from the Runs page's Deleted view")
    run_edits.delete_confirmation(f"detail-{run['run_id']}")
    tags, values = run["tags"], run["metrics"]
    queued, stopped = run.get("queued_s"), run.get("stopped_s")
    cells = [("training time", tables.format_duration(run["duration_s"]), "training only, summed over attempts"),
             *([("queued", tables.format_duration(queued), "waiting for a worker, summed over attempts")]
               if pd.notna(queued) else []),
             *([("stopped", tables.format_duration(stopped), "ended (cancelled or failed) before it was resumed; "
                 "neither training nor queued")] if pd.notna(stopped) and stopped > 0 else []),
             ("device", tags.get(names.TAG_DEVICE, "—"), None),
             ("epochs", epochs_cell(run), None),
             ("test accuracy", formatting.percent(values.get(names.TEST_ACCURACY)), None),
             ("test F1 (macro)", formatting.score(values.get(names.TEST_F1)), None)]
    for column, (label, value, why) in zip(st.columns(len(cells)), cells):
        column.metric(label, value, help=why)
    with st.container():  # always one block, even empty: the tabs below keep their place (and open tab) at the end
        status_note(run)


def epochs_cell(run: dict) -> str:
    """A finished run's epochs (early stopping may end it before the configured count); any other's so far."""
    configured = run["params"].get("epochs", "—")
    if run["status"] == names.FINISHED:
        return run["tags"].get(names.TAG_EPOCHS_RUN, configured)
    return f"{int(run['epochs_done'])} of {configured}"


def status_note(run: dict) -> None:
    status, tags = run["status"], run["tags"]
    reason = tags.get(names.TAG_ERROR)
    if status == "FAILED":
        st.error(f"**This run failed.** {reason or 'No reason was recorded.'}", icon=":material/error:")
        if tags.get(names.TAG_TRACEBACK):
            with st.expander("Traceback", expanded=True):
                st.code(tags[names.TAG_TRACEBACK], language="python")
    elif status == "KILLED":
        st.warning(f"**This run was stopped.** {reason or ''}", icon=":material/cancel:")
    elif status in ui.LIVE_STATUSES:
        st.info(f"This run is {status.lower()}: this page follows it (every {refresh.LIVE_REFRESH} s); the "
                "evaluation appears when it finishes.", icon=":material/autorenew:")
    changed = resume_button(run["run_id"], status)
    if status in names.ACTIVE and names.TAG_QUEUED in tags:  # a run trained elsewhere is stopped where it runs
        changed |= cancel_button(run["run_id"], "detail", names.TAG_CANCEL in tags)
        cancel_confirmation(run["run_id"], run["run_name"], progress_words(status, int(run["epochs_done"]),
                                                                           run["params"].get("epochs")), "detail")
    attempts_caption(tags)
    if changed:
        st.rerun()  # the whole page, as it now follows the run


def overview(run: dict) -> None:
    run_edits.note_section(run)
    left, middle, right = st.columns(3)
    left.markdown("**Params**")
    left.dataframe(pd.DataFrame(sorted(run["params"].items()), columns=["param", "value"]), hide_index=True,
                   height="content")
    middle.markdown("**Final metrics**")
    final = {k: formatting.kind_of(k)(v) for k, v in sorted(run["metrics"].items()) if not k.startswith("system/")}
    middle.dataframe(pd.DataFrame(final.items(), columns=["metric", "value"]), hide_index=True, height="content")
    with right:
        run_edits.tags_section(run)


def curves(run: dict) -> None:
    """The run's metrics, overlaid by group."""
    run_id = run["run_id"]
    logged = [k for k in run["metrics"] if k not in names.TEST_METRICS + names.TRUST_METRICS]
    history = store.metric_histories({run_id: run["last_update"]}, logged)
    left, right = st.columns([2, 3])
    axis = left.radio("x axis", charts.X_AXES, horizontal=True, key="detail_x_axis")
    smoothing = right.slider("Smoothing of train_loss_step", 0.0, 0.99, 0.6, 0.01, key="detail_smoothing",
                             help="the per-step loss only: per-epoch curves have one point an epoch, which an "
                                  "average would only drag behind the real values")
    frame = pd.DataFrame([{**run, **{f"params.{k}": v for k, v in run["params"].items()},
                           **{f"tags.{k}": v for k, v in run["tags"].items()}}])
    drawn, x_title = charts.with_x(history, axis, tables.steps_per_epoch(frame),
                                   {run_id: run["train_start"].timestamp() * 1000} if pd.notna(run["train_start"]) else {})
    groups = {title: [k for k in keys if k in logged] for title, keys in CURVE_GROUPS.items()}
    others = sorted(k for k in logged if all(k not in keys for keys in CURVE_GROUPS.values()))
    groups |= {k: [k] for k in st.multiselect("More metrics", others, key="detail_more", placeholder="system/...")}
    columns = st.columns(2)
    for i, (title, keys) in enumerate((t, k) for t, k in groups.items() if k):
        series = drawn[drawn["key"].isin(keys)].assign(run_id=lambda d: d["key"], key=title)
        per_step = title == names.TRAIN_LOSS_STEP
        x_name = x_title if per_step or axis == "relative time" else "epoch"  # epoch metrics: step = epoch
        fig = charts.metric_figure(series, title, charts.run_colors(keys), {k: k for k in keys},
                                   smoothing if per_step else 0.0, x_title=x_name)
        columns[i % 2].plotly_chart(fig, key=f"detail_curve_{title}")
    if history.empty:
        st.info("No metrics logged yet.")


def evaluation(run: dict) -> None:
    run_id, version = run["run_id"], run["last_update"]
    try:
        labels, matrix = store.confusion_matrix(run_id, version)
    except store.ArtifactNotFoundError:
        st.info("No evaluation yet: it is logged when the run finishes." if run["status"] in ui.LIVE_STATUSES
                else f"This run has no confusion matrix ({names.CONFUSION_MATRIX_JSON} was not logged).",
                icon=":material/grid_off:")
        return
    normalize = st.toggle("Row-normalized (% of each true class)", key="normalize")
    left, right = st.columns([3, 2])
    left.plotly_chart(charts.confusion_matrix_figure(matrix, labels, normalize), key="confusion")
    with right:
        st.markdown("**Most confused pairs**")
        pairs = metrics.most_confused(matrix, labels, TOP_CONFUSED)
        rows = matrix.sum(axis=1)
        st.dataframe(pd.DataFrame([{"true": t, "predicted": p, "count": n, "of true class": n / rows[labels.index(t)]}
                                   for t, p, n in pairs], columns=["true", "predicted", "count", "of true class"]),
                     hide_index=True, key="confused",
                     placeholder=formatting.MISSING, column_config={"of true class": formatting.percent_column()})
    try:
        per_class = tables.per_class_table(store.per_class(run_id, version))
        left, right = st.columns([2, 3])
        left.dataframe(per_class, hide_index=True, key="per_class",
                       placeholder=formatting.MISSING, column_config={k: formatting.score_column()
                                      for k in ("precision", "recall", "f1")})
        right.plotly_chart(charts.per_class_figure(per_class), key="per_class_chart")
    except store.ArtifactNotFoundError as e:
        st.info(f"No per-class scores: {e}.")
    try:
        st.image(store.artifact_bytes(run_id, names.MISCLASSIFIED_PNG, version),
                 caption="most confidently wrong test images")
    except store.ArtifactNotFoundError as e:
        st.info(f"No misclassified examples: {e}.")
    explanations(run_id, version)
    evaluation_view.trust(run)


def explanations(run_id: str, version: int) -> None:
    """The most confident mistakes with the maps for their predicted and true class (logged at training end)."""
    try:
        st.image(store.artifact_bytes(run_id, names.EXPLANATIONS_PNG, version),
                 caption="why the most confident mistakes were made: what spoke for the predicted class and for "
                         "the true one, both maps of an image on one scale (its largest absolute value); the colour scale "
                         "under them says what red and blue mean, and Grad-CAM maps have no blue: they are ≥ 0")
    except store.ArtifactNotFoundError:
        st.caption(f"No explanations: {names.EXPLANATIONS_PNG} was not logged (runs trained before explanations "
                   "existed have none).")


def versus(run: dict) -> None:
    """This run's evaluation against another's: side by side, or what changed cell by cell."""
    runs = store.runs([run["experiment_id"]], limit=store.PICKER_RUNS)
    wanted = st.query_params.get("vs")
    if wanted and wanted not in set(runs["run_id"]):  # older than the newest runs offered: read by id
        linked = store.runs_by_id([wanted])
        runs = pd.concat([runs, linked[linked["experiment_id"] == run["experiment_id"]]], ignore_index=True)
    runs = tables.trained(runs)
    options = [r for r in runs["run_id"] if r != run["run_id"]]
    if wanted and wanted not in options:
        st.warning(f"The link asks to compare with run `{wanted}`, which is not another trained run of this "
                   "experiment (deleted, a sweep, or not in this store): pick one below.", icon=":material/search_off:")
    if not options:
        st.info("No other run in this experiment to compare with.")
        return
    other_id = st.selectbox("Compare with", options, key="vs", format_func=ui.run_options(runs).get,
                            index=options.index(wanted) if wanted in options else None, placeholder="pick a run")
    if not other_id:
        return
    st.query_params["vs"] = other_id
    other = store.run(other_id)
    try:
        mine = store.confusion_matrix(run["run_id"], run["last_update"])
        theirs = store.confusion_matrix(other_id, other["last_update"])
    except store.ArtifactNotFoundError as e:
        st.info(f"Both runs need a confusion matrix to be compared: {e}.", icon=":material/grid_off:")
        return
    mode = st.segmented_control("View", ["side by side", "difference"], default="side by side", key="vs_mode")
    normalize = st.toggle("Row-normalized (% of each true class)", key="vs_normalize")  # counts, as on Evaluation
    run_names = (other["run_name"], run["run_name"])
    if mode == "difference":
        if mine[0] != theirs[0]:
            st.info("The two runs have different classes; their matrices cannot be subtracted.")
            return
        st.plotly_chart(charts.confusion_difference_figure(theirs[1], mine[1], mine[0], normalize, run_names),
                        key="vs_diff")
    else:
        sides = ((run_names[1], mine), (run_names[0], theirs))
        scale = max(charts.mistakes_max(matrix, normalize) for _, (_, matrix) in sides)  # one red scale for both
        for i, (column, (name, (labels, matrix))) in enumerate(zip(st.columns(2), sides)):
            column.plotly_chart(charts.confusion_matrix_figure(matrix, labels, normalize, name, scale or None),
                                key=f"vs_side_{i}")
    evaluation_view.paired_section(run, other)


@ui.guarded
def details(run_id: str, mode: str) -> None:
    """Everything that changes while a run goes on; a fragment, re-drawn on a timer while the run is live."""
    run = store.run(run_id)
    if run["tags"].get(names.TAG_KIND) == names.KIND_STUDY:
        study_view.study(run)
    elif names.TAG_SWEEP in run["tags"]:
        sweep_view.sweep(run)
    else:
        header(run)
        tabs = st.tabs(["Overview", "Curves", "Evaluation", "Compare evaluation", "Artifacts & model"])
        with tabs[0]:
            overview(run)
        with tabs[1]:
            curves(run)
        with tabs[2]:
            evaluation(run)
        with tabs[3]:
            versus(run)
        with tabs[4]:
            artifact_preview.tab(run)
    if follow.mode(follow.snapshot(run)) != mode:
        st.rerun()  # the whole page again, following the run the new way


@ui.guarded
def watch(run_id: str, seen: follow.Snapshot) -> None:
    """An ended run's check for a resume: the page is drawn again only when the run changed."""
    if follow.snapshot(store.run(run_id)) != seen:
        st.rerun()


@ui.guarded
def page() -> None:
    run_edits.flash()
    run_id = pick_run()
    if not run_id:
        return
    seen = follow.snapshot(store.run(run_id))
    mode = follow.mode(seen)
    st.fragment(details, run_every=refresh.LIVE_REFRESH if mode == follow.LIVE else None)(run_id, mode)
    if mode == follow.RESUMABLE:
        st.fragment(watch, run_every=refresh.LIVE_REFRESH)(run_id, seen)


if __name__ == "__main__":
    page()
