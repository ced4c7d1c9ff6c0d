"""Data: audit an image folder, read its latest audit, and train without the files it doubts.

URL: `?folder=imagefolder:REL`. Audits are queued runs (pipeline.queue.jobs.submit_audit); the worker
runs them. The page reads their artifacts (summary, label issues, duplicates, leaks), shows galleries,
and queues a run that leaves chosen files out through an exclusion list (data_view.write_exclusions).
It never moves or deletes a user's files.
"""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard import audit_queue, charts, data_view, formatting, launch_form, refresh, run_query, store, ui
from pipeline import names, settings
from pipeline.config import IMAGEFOLDER, ConfigError, RunConfig
from pipeline.queue import jobs

GALLERY = 12    # images per gallery (the CSVs have every row)
PAIRS = 8       # duplicate or leak pairs drawn side by side
PER_ROW = 6


def pick_folder() -> str | None:
    folders = launch_form.image_folders(str(settings.data_root()))
    if not folders:
        st.info(f"No image folders under the data root {settings.data_root()}: put class-per-folder images there "
                "(one subfolder per class).", icon=":material/folder_off:")
        return None
    wanted = st.query_params.get("folder")
    chosen = st.selectbox("Image folder", folders, index=folders.index(wanted) if wanted in folders else 0,
                          key="data_folder")
    st.query_params["folder"] = chosen
    return chosen


def audit_form(dataset: str) -> None:
    with st.form(f"audit.{dataset}", border=True):
        st.markdown("**Audit this folder**: K fold models score every image they never trained on; cleanlab ranks "
                    "likely label errors, pHash finds duplicates, and pairs across the test split are leaks.")
        left, middle, right = st.columns(3)
        folds = left.number_input("Folds", 2, 20, 4, key=f"audit.folds.{dataset}")
        epochs = middle.number_input("Epochs per fold", 1, 200, 5, key=f"audit.epochs.{dataset}")
        model = right.selectbox("Model", ["cnn", "mlp", "resnet18", "mobilenet_v3_small"], key=f"audit.model.{dataset}")
        if st.form_submit_button("Audit", icon=":material/fact_check:"):
            run_id = audit_queue.queue(RunConfig(dataset=dataset, epochs=int(epochs), model=model), int(folds))
            if run_id:
                st.success(f"Queued audit `{run_id}`: a worker runs it; this page shows it when it ends.",
                           icon=":material/schedule:")


def audit_runs(folder: str):
    """The audits of `folder`, found by their tags in SQL wherever they are among the store's runs."""
    return store.runs(filter_string=run_query.joined(run_query.clauses(
        tags=[f"{names.TAG_KIND}={names.KIND_AUDIT}", f"{names.TAG_AUDIT_FOLDER}={folder}"])))


@ui.guarded
def latest_audit(folder: str) -> None:
    """The newest audit of `folder`: its progress while it runs, its findings once it has finished."""
    audits = data_view.audits_of(audit_runs(folder), folder)
    if audits.empty:
        st.info("This folder has no audit yet: start one above.", icon=":material/fact_check:")
        return
    run = audits.iloc[0]
    st.caption(f"Latest audit: [{run['run_name']}](run_detail?run={run['run_id']}) · {run['status'].lower()} · "
               f"started {run['start_time']:%Y-%m-%d %H:%M UTC}")
    if run["status"] in names.ACTIVE:
        folds = run.get(f"params.{names.PARAM_FOLDS}")
        done = run.get(f"metrics.{names.AUDIT_FOLDS_DONE}")
        st.info(f"Auditing: {formatting.count(done if pd.notna(done) else 0)} of {folds} fold models trained. "
                f"This part refreshes every {refresh.LIVE_REFRESH} s.", icon=":material/autorenew:")
        return
    if run["status"] != names.FINISHED:
        st.error(f"This audit ended {run['status']}: {run.get(f'tags.{names.TAG_ERROR}') or 'no reason recorded'}",
                 icon=":material/error:")
        return
    findings(run)


def findings(run: pd.Series) -> None:
    version = int(run["last_update"])
    read = lambda path: store.artifact_bytes(run["run_id"], path, version)  # noqa: E731
    summary = json.loads(read(names.AUDIT_SUMMARY_JSON))
    counts = summary["counts"]
    cells = [("files", formatting.count(summary["files"])), ("imbalance", f"{summary['imbalance_ratio']:.2f}×"),
             ("label issues", formatting.count(counts["label_issues"])),
             ("duplicates", formatting.count(counts["exact_duplicates"] + counts["near_duplicates"])),
             ("label conflicts", formatting.count(counts["label_conflicts"])),
             ("leaks", formatting.count(counts["leaks"])), ("unreadable", formatting.count(counts["unreadable"]))]
    for column, (label, value) in zip(st.columns(len(cells)), cells):
        column.metric(label, value)
    st.plotly_chart(charts.class_balance_figure(summary["files_per_class"]), key="class_balance")
    if summary["unreadable"]:
        with st.expander(f"{len(summary['unreadable'])} unreadable files (left out, as training leaves them out)"):
            st.code("\n".join(summary["unreadable"]))
    root = settings.data_root() / summary["folder"]
    issues = data_view.label_issues(read(names.AUDIT_LABEL_ISSUES_CSV))
    dups, leaks = data_view.table(read(names.AUDIT_DUPLICATES_CSV)), data_view.table(read(names.AUDIT_LEAKS_CSV))
    tab_issues, tab_dups, tab_leaks = st.tabs([f"Label issues ({len(issues)})", f"Duplicates ({len(dups)})",
                                               f"Leaks ({len(leaks)})"])
    with tab_issues:
        gallery(root, issues)
        train_without(run, issues)
    with tab_dups:
        pairs(root, dups, "path_a", "path_b", lambda r: f"{r['kind']} · pHash distance {r['distance']}")
    with tab_leaks:
        st.caption("Each pair: a training (or validation) image and a test image that are the same picture, in "
                   "the split every run of this folder uses. The test score counts them as unseen.")
        pairs(root, leaks, "train_path", "test_path", lambda r: f"{r['kind']} duplicate: train | test")
    downloads(read)


def gallery(root, issues: pd.DataFrame) -> None:
    if issues.empty:
        st.success("No likely label errors.", icon=":material/check_circle:")
        return
    shown = issues.head(GALLERY)
    for start in range(0, len(shown), PER_ROW):
        for column, (_, row) in zip(st.columns(PER_ROW), shown.iloc[start:start + PER_ROW].iterrows()):
            img = data_view.picture(root, row["path"])
            caption = f"#{row['rank']} {row['path']}: given {row['given']}, suggested {row['suggested']} " \
                      f"({formatting.percent(row['suspicion'])} sure it is wrong)"
            if img is None:
                column.caption(caption + " (cannot be shown)")
            else:
                column.image(img, caption=caption)


def pairs(root, frame: pd.DataFrame, left: str, right: str, words) -> None:
    if frame.empty:
        st.success("None found.", icon=":material/check_circle:")
        return
    for _, row in frame.head(PAIRS).iterrows():
        a, b, text = st.columns([1, 1, 4])
        for column, key in ((a, left), (b, right)):
            img = data_view.picture(root, row[key])
            column.image(img, caption=row[key]) if img is not None else column.caption(f"{row[key]} (cannot be shown)")
        text.caption(words(row))


def train_without(run: pd.Series, issues: pd.DataFrame) -> None:
    """Tick suspects, or take all above a suspicion, and queue a run of the same folder without them."""
    if issues.empty:
        return
    st.markdown("**Train without these files**: the run leaves them out (listed as its artifact "
                f"`{names.EXCLUDED_FILES_TXT}`, part of its dataset digest); the files stay where they are.")
    key = f"exclude.{run['run_id']}"
    editor = issues[["rank", "path", "given", "suggested", "suspicion"]].assign(leave_out=False)
    edited = st.data_editor(editor, key=f"{key}.ticks", hide_index=True, disabled=["rank", "path", "given",
                                                                                    "suggested", "suspicion"],
                            column_config={"suspicion": formatting.percent_column("sure it is wrong"),
                                           "leave_out": st.column_config.CheckboxColumn("leave out")})
    use_threshold = st.checkbox("Also leave out every suspect at or above", key=f"{key}.use")
    at_least = st.slider("sure it is wrong", 0.0, 1.0, 0.9, 0.01, key=f"{key}.at", disabled=not use_threshold)
    chosen = data_view.chosen_files(issues, list(edited.loc[edited["leave_out"], "path"]),
                                    at_least if use_threshold else None)
    epochs = st.number_input("Epochs", 1, 1000, int(run.get("params.epochs") or 5), key=f"{key}.epochs")
    if st.button(f"Train without {len(chosen)} files", key=f"{key}.go", disabled=not chosen,
                 icon=":material/rocket_launch:", type="primary"):
        reason = f"{len(chosen)} likely label errors from audit {run['run_id'][:8]}"
        listed = data_view.write_exclusions(settings.data_root(), chosen, reason)
        try:
            config = RunConfig(dataset=IMAGEFOLDER + run[f"tags.{names.TAG_AUDIT_FOLDER}"], exclude=listed,
                               epochs=int(epochs), model=run.get("params.model") or "cnn")
            run_id = jobs.submit(config, client=store.client())
        except ConfigError as e:
            st.error(str(e), icon=":material/block:")
            return
        store.forget_queue()
        st.session_state[f"{key}.queued"] = run_id
    queued = st.session_state.get(f"{key}.queued")
    if queued:
        st.success(f"Queued run `{queued}` without those files.", icon=":material/schedule:")
        st.page_link("views/run_detail.py", label="Open its page", icon=":material/analytics:",
                     query_params={"run": queued})


def downloads(read) -> None:
    columns = st.columns(4)
    for column, path in zip(columns, (names.AUDIT_SUMMARY_JSON, names.AUDIT_LABEL_ISSUES_CSV,
                                      names.AUDIT_DUPLICATES_CSV, names.AUDIT_LEAKS_CSV)):
        name = path.split("/")[-1]
        column.download_button(f"Download {name}", read(path), file_name=name, key=f"download.{name}",
                               icon=":material/download:", on_click="ignore")


@ui.guarded
def page() -> None:
    st.title("Data")
    dataset = pick_folder()
    if dataset is None:
        return
    audit_form(dataset)
    folder = dataset[len(IMAGEFOLDER):]
    audits = data_view.audits_of(audit_runs(folder), folder)
    live = not audits.empty and audits.iloc[0]["status"] in names.ACTIVE
    st.fragment(latest_audit, run_every=refresh.LIVE_REFRESH if live else None)(folder)


if __name__ == "__main__":
    page()
