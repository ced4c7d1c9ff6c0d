"""Registry page: every registered model and version with its aliases and source run's scores;
register a finished run's model, set/move/remove aliases, describe models and versions, tag them, delete
versions and models (dashboard/registry_edits.py).

Reads come from store (cached); every change goes through pipeline.serving.registry, i.e. MLflow's registry
API, so `mlflow ui` shows the same. `?register=RUN_ID` opens the form with that run chosen (the run
detail page links here).
"""
from __future__ import annotations

import os
import tempfile
import time

import pandas as pd
import streamlit as st
from mlflow.exceptions import MlflowException

from dashboard import (charts, evaluation_view, formatting, prune_form, refresh, registry_edits, run_query, store,
                       tables, ui)
from pipeline import names, settings
from pipeline.serving import export, registry
from pipeline.imaging.lineage import short

NEW_MODEL = "+ new model…"  # plain text: emoji need a font many servers lack
OTHER_ALIAS = "other…"
FAILURES = (registry.RegistryError, store.TrackingError, MlflowException)


def _flash(message: str, undo: tuple[str, str, str | None] | None = None) -> None:
    """Show `message` after the rerun that refreshes the tables; `undo` (model, alias, previous version) offers Undo."""
    st.session_state["registry_flash"] = message
    st.session_state["registry_undo"] = undo
    store.forget_model_versions()
    st.rerun()


def _undo_button(slot) -> None:
    """Put an alias back where it was before the last move (or remove it if it was new)."""
    undo = st.session_state.get("registry_undo")
    if not undo:
        return
    name, alias, previous = undo
    where = f"back to v{previous}" if previous else "off again"
    if slot.button(f"Undo: move @{alias} {where}", key="alias_undo", icon=":material/undo:"):
        try:
            if previous:
                registry.set_alias(name, alias, previous, client=store.client())
            else:
                registry.delete_alias(name, alias, client=store.client())
        except FAILURES as e:
            return _failed(e)
        _flash(f"Undone: @{alias} of {name} is " + (f"on v{previous} again." if previous else "removed again."))


def _failed(e: Exception) -> None:
    st.error(registry_edits.reason(e))


def _pct(value) -> str:
    return formatting.percent(value)


def _versions_frame(versions: list) -> pd.DataFrame:
    return pd.DataFrame([{
        "model": v.name, "version": v.version, "aliases": [f"@{a}" for a in v.aliases],
        "test accuracy": v.test_accuracy, "test F1": v.test_f1, "dataset": v.dataset,
        "dataset digest": short(v.dataset_digest) or None,
        "architecture": v.architecture, "created (UTC)": v.created.replace(tzinfo=None),
        "source run": f"run_detail?run={v.run_id}" if v.run_id else None,
        "run name": v.run_name + ("" if v.run_status in ("FINISHED", "") else f" ({v.run_status})"),
        "try it": f"playground?model={v.name}&ref={v.version}", "description": v.description,
        "status": v.status,
    } for v in versions])


def _models_frame(versions: list) -> pd.DataFrame:
    rows = {}
    for v in versions:  # newest version first per model
        row = rows.setdefault(v.name, {"model": v.name, "description": v.model_description, "aliases": [],
                                       "versions": 0, "latest version": v.version,
                                       "updated (UTC)": v.created.replace(tzinfo=None)})
        row["versions"] += 1
        row["aliases"] += [f"@{a} → v{v.version}" for a in v.aliases]
    return pd.DataFrame(list(rows.values()))


def show_tables(versions: list) -> None:
    models = sorted({v.name for v in versions})
    cols = st.columns(3)
    cols[0].metric("Registered models", len(models))
    cols[1].metric("Versions", len(versions))
    cols[2].metric("With a @champion", sum(registry.CHAMPION in v.aliases for v in versions))
    st.dataframe(_models_frame(versions), hide_index=True, width="stretch", placeholder=formatting.MISSING, column_config={
        "aliases": st.column_config.ListColumn("aliases"),
        "updated (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")})
    chosen = st.multiselect("Show versions of", models, placeholder="all models")
    shown = [v for v in versions if not chosen or v.name in chosen]
    st.dataframe(_versions_frame(shown), hide_index=True, width="stretch", placeholder=formatting.MISSING, column_config={
        "version": st.column_config.NumberColumn(format="v%d"),
        "aliases": st.column_config.ListColumn("aliases"),
        "test accuracy": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent",
                                                         step=formatting.PERCENT_STEP),
        "test F1": formatting.score_column(),
        "created (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "source run": st.column_config.LinkColumn(display_text=r"run=(\w{8})", help="open the run's detail page"),
        "dataset digest": st.column_config.TextColumn(help="the first digits of the content digest of the data the "
                                                      "source run trained on (files, bytes, exclusions)"),
        "try it": st.column_config.LinkColumn(display_text="playground", help="predict with this version"),
    })


def finished_runs(linked: str | None):
    """What the Register form offers: the newest finished runs and the best by test accuracy (the form starts
    at the best), plus a link's run however old, each read in SQL; not every finished run of the store."""
    finished = run_query.joined(run_query.clauses([names.FINISHED]))
    runs = pd.concat([store.runs(filter_string=finished, limit=store.PICKER_RUNS),
                      store.runs(filter_string=finished, limit=store.PICKER_RUNS,
                                 order_by=run_query.order_by("test acc", True)),
                      store.runs_by_id([linked] if linked else [])], ignore_index=True)
    runs = runs[runs["status"] == names.FINISHED].drop_duplicates("run_id")
    return runs.sort_values("start_time", ascending=False, ignore_index=True)


def register_form(versions: list) -> None:
    try:
        runs = finished_runs(st.query_params.get("register"))
        listed = store.experiments()
        experiments = dict(zip(listed["experiment_id"], listed["name"]))
    except store.ERRORS as e:
        return _failed(e)
    best = tables.best_trained(runs)  # what the form starts from, unless a link names a run
    runs = tables.trained(runs)  # a sweep's parent has no model
    if runs.empty:
        st.info("No finished runs yet. Train one on the Launch page or with "
                "`python -m pipeline train --dataset digits --model cnn`.")
        return
    registered = {}
    for v in versions:
        registered.setdefault(v.run_id, []).append(f"{v.name} v{v.version}")
    labels = {}
    for row in runs.to_dict("records"):
        label = (f"{row['run_name']} · {experiments.get(row['experiment_id'], row['experiment_id'])} · "
                 f"{row.get('params.dataset', '?')}/{row.get('params.model', '?')} · "
                 f"acc {_pct(row.get(f'metrics.{names.TEST_ACCURACY}'))}")
        done = registered.get(row["run_id"])
        labels[row["run_id"]] = label + (f" · already {', '.join(done)}" if done else "") + f" · {row['run_id'][:8]}"
    wanted = st.query_params.get("register")
    ids = list(labels)
    if wanted and wanted not in labels:
        st.warning(f"Run {wanted} is not a finished run of this store, so it cannot be registered.")
    start = wanted if wanted in labels else best if best in labels else ids[0]
    run_id = st.selectbox("Finished run", ids, index=ids.index(start), format_func=labels.get, key="register_run",
                          help="starts at the best finished run by test accuracy (else validation accuracy)")
    model_names = sorted({v.name for v in versions})
    picked = st.selectbox("Registered model", model_names + [NEW_MODEL], key="register_model",
                          help="a new version of an existing model, or a new model")
    if picked == NEW_MODEL:
        row = runs[runs["run_id"] == run_id].iloc[0]
        suggestion = f"{row.get('params.dataset', 'model')}-{row.get('params.model', '')}".strip("-")
        picked = st.text_input("New model name", value=suggestion.replace(":", "-").replace("/", "-"),
                               key=f"register_new_name_{run_id}")  # the suggestion follows the chosen run
    # keyed by the run: another run starts from an empty form, never from the last registration's values
    description = st.text_area("Version description (optional)", key=f"register_description_{run_id}")
    alias = st.selectbox("Then set alias", ["none", registry.CHAMPION, registry.CHALLENGER],
                         key=f"register_alias_{run_id}")
    if st.button("Register", type="primary", key="register_button"):
        try:
            made = registry.register_run(run_id, picked, description, client=store.client())
            note = ""
            if alias != "none":
                moved = registry.set_alias(made.name, alias, made.version, client=store.client())
                note = f"; @{alias} moved from v{moved} to v{made.version}" if moved else f"; @{alias} set"
        except FAILURES as e:
            return _failed(e)
        for key in (f"register_description_{run_id}", f"register_alias_{run_id}"):
            st.session_state.pop(key, None)  # a submit leaves nothing behind, even for the same run
        _flash(f"Registered run {run_id[:8]} as {made.name} v{made.version}{note}.")


def _version_label(versions: list, name: str):
    by_version = {v.version: v for v in versions if v.name == name}
    return lambda n: (f"v{n} · {by_version[n].architecture or '?'} · acc {_pct(by_version[n].test_accuracy)}"
                      + (f" · @{', @'.join(by_version[n].aliases)}" if by_version[n].aliases else ""))


def _scores(v) -> str:
    return f"v{v.version}: test accuracy {_pct(v.test_accuracy)} · test F1 {formatting.score(v.test_f1)}"


def alias_form(versions: list) -> None:
    name = st.selectbox("Model", sorted({v.name for v in versions}), key="alias_model")
    mine = [v for v in versions if v.name == name]
    by_version = {v.version: v for v in mine}
    held = {a: v.version for v in mine for a in v.aliases}
    st.caption("Aliases now: " + (", ".join(f"@{a} → v{n}" for a, n in sorted(held.items())) or "none"))
    if registry_edits.locked(name):
        return
    left, right = st.columns(2)
    with left:
        alias = st.selectbox("Alias", [registry.CHAMPION, registry.CHALLENGER, OTHER_ALIAS], key="alias_name")
        if alias == OTHER_ALIAS:
            alias = st.text_input("Alias name", key="alias_other",
                                  help="letters, digits, _ and -; not 'latest' nor v<number>")
        moving = held.get((alias or "").strip())
        numbers = [v.version for v in mine]
        version = st.selectbox("Version", numbers, format_func=_version_label(versions, name),
                               index=numbers.index(moving) if moving in numbers else 0,  # where it is, not the newest
                               key=f"alias_version_{name}_{alias}")
        if moving is not None and moving == version:
            st.caption(f"@{alias} is on v{version} already: pick another version to move it.")
            return _remove_alias(right, name, held)
        target, current = by_version[version], by_version.get(moving)
        confirmed = True
        if current is not None:
            st.markdown(f"**Now** {_scores(current)}  \n**After** {_scores(target)}")
            evaluation_view.alias_move(current, target)
            worse = (target.test_accuracy is not None and current.test_accuracy is not None
                     and target.test_accuracy < current.test_accuracy)
            if worse:
                st.warning(f"v{version} scored lower on its test set than v{moving}, which @{alias} points to now; "
                           f"everything that loads @{alias} (the playground too) will use v{version}.",
                           icon=":material/trending_down:")
                confirmed = st.checkbox(f"Yes, move @{alias} to the lower-scoring v{version}", key="alias_confirm")
        verb = "Move" if current is not None else "Set"
        if st.button(f"{verb} @{alias or '…'} to v{version}", type="primary", key="alias_set",
                     disabled=not confirmed):
            try:
                moved = registry.set_alias(name, alias, version, client=store.client())
            except FAILURES as e:
                return _failed(e)
            _flash(f"@{alias.strip()} of {name} moved from v{moved} to v{version}." if moved
                   else f"@{alias.strip()} of {name} now points to v{version}.", undo=(name, alias.strip(), moved))
    _remove_alias(right, name, held)


def _remove_alias(column, name: str, held: dict) -> None:
    with column:
        if held:
            gone = st.selectbox("Remove alias", sorted(held), format_func=lambda a: f"@{a} (v{held[a]})",
                                key=f"alias_remove_{name}")
            if st.button(f"Remove @{gone}", key="alias_remove"):
                try:
                    registry.delete_alias(name, gone, client=store.client())
                except FAILURES as e:
                    return _failed(e)
                _flash(f"Removed @{gone} from {name}; version {held[gone]} stays registered.")
        else:
            st.caption("No alias to remove.")


def description_form(versions: list) -> None:
    targets = []
    for name in sorted({v.name for v in versions}):
        targets.append((name, None))
        targets += [(name, v.version) for v in versions if v.name == name]
    current = {(v.name, None): v.model_description for v in versions}
    current.update({(v.name, v.version): v.description for v in versions})
    target = st.selectbox("Describe", targets, key="describe_target",
                          format_func=lambda t: f"{t[0]} (the model)" if t[1] is None else f"{t[0]} v{t[1]}")
    if registry_edits.locked(target[0]):
        st.markdown(current.get(target) or "_No description._")
        return
    text = st.text_area("Description", value=current.get(target, ""), key=f"describe_text_{target[0]}_{target[1]}",
                        help="shown here and in mlflow ui")
    if st.button("Save description", type="primary", key="describe_save"):
        try:
            registry.set_description(target[0], text, target[1], client=store.client())
        except FAILURES as e:
            return _failed(e)
        _flash(f"Saved the description of {target[0]}" + (f" v{target[1]}." if target[1] else "."))


def variants_section(versions: list) -> None:
    """A version's exported variants beside the original (figures and ratios), and its Export action.

    The export runs as a child process (`python -m pipeline export URI`), never in the page: seconds for
    a digits cnn, a minute or more for a resnet18 at 64 px; a fragment polls it and shows its refusal line.
    """
    st.subheader("Exported variants: ONNX, int8 and pruned")
    ready = [v for v in versions if v.status == "READY"]
    if not ready:
        return
    version = st.selectbox("Variants of", ready, key="variants_version",
                           format_func=lambda v: f"{v.name} v{v.version} · {v.architecture or '?'} · "
                                                 f"acc {_pct(v.test_accuracy)}")
    try:
        rows = store.model_variants(version)
    except store.ERRORS as e:
        return _failed(e)
    if rows:
        ratio, ms = st.column_config.NumberColumn(format="%.2f×"), st.column_config.NumberColumn(format="%.2f")
        st.dataframe(tables.variants_table(rows), hide_index=True, width="stretch", key="variants_table",
                     placeholder=formatting.MISSING,
                     column_config={"test accuracy": formatting.percent_column(),
                                    "agreement": formatting.percent_column(),
                                    "max prob. diff": st.column_config.NumberColumn(format="%.1e"),
                                    "max logit diff": st.column_config.NumberColumn(format="%.1e"),
                                    "size (MB)": st.column_config.NumberColumn(format="%.1f"),  # as formatting.size
                                    **{c: ratio for c in ("size ×", "1 image ×", "64 images ×")},
                                    **{c: ms for c in ("1 image p50 (ms)", "1 image p95 (ms)", "64 images p50 (ms)",
                                                       "64 images p95 (ms)")},
                                    "run": st.column_config.LinkColumn(display_text="run", help="the variant's run"),
                                    "sparsity": formatting.percent_column(help="share of the original's "
                                                                          "parameters removed or zeroed"),
                                    "parameters": st.column_config.NumberColumn(format="localized"),
                                    "deflated (MB)": st.column_config.NumberColumn(format="%.2f")})
        st.caption("Measured on the source run's test split, one CPU thread; the original in PyTorch, the variants "
                   "in onnxruntime. Pick a variant as model A or B in the playground to compare them on images.")
        if any(r.get(names.SPARSITY) for r in rows):  # pruned variants: see prune_form.py
            st.caption("A weights-pruned variant keeps every shape: its zeros shrink the file only when stored "
                       "sparse or compressed (deflated). A flag means its accuracy fell past the limit: logged, "
                       "not registered.")
            st.plotly_chart(charts.sparsity_accuracy_figure(rows), key="variants_sparsity_chart")
    else:
        st.caption(f"{version.name} v{version.version} has not been exported yet.")
    if registry_edits.locked(version.name):
        return
    jobs = st.session_state.setdefault("export_jobs", {})
    export_col, prune_col = st.columns([3, 1])
    with prune_col:
        prune_form.prune_button(version)  # queued on the worker, never in this process
    if version.uri in jobs:
        with export_col:
            _export_progress(version.uri)
    elif export_col.button("Export to ONNX and int8", key="variants_export",
                           help="export, quantize and evaluate in a background process; the table fills in when it "
                                "ends"):
        log = tempfile.NamedTemporaryFile(prefix="runboard-export-", suffix=".log", delete=False).name
        jobs[version.uri] = (export.start(version.uri, log), log, time.time())
        st.rerun()
    prune_form.jobs_in_progress(version)


@st.fragment(run_every=refresh.EXPORT_REFRESH)
def _export_progress(source: str) -> None:
    process, log, started = st.session_state["export_jobs"][source]
    if process.poll() is None:
        st.info(f"Exporting {source}… {formatting.duration(time.time() - started)} so far (seconds for small models).")
        return
    del st.session_state["export_jobs"][source]
    with open(log, errors="replace") as f:
        lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    os.remove(log)
    if process.returncode == 0:
        store.forget_model_variants()
        st.session_state["registry_flash"] = f"Exported {source} to ONNX and int8."
    else:
        said = [line for line in lines if line.startswith("error:")] or lines[-1:] or ["no output"]
        st.session_state["registry_flash_error"] = f"Export of {source} failed: {said[-1].removeprefix('error: ')}"
    st.rerun(scope="app")


@ui.guarded
def page() -> None:
    st.title("Model registry")
    st.caption(f"Registered models of {settings.tracking_uri()}: the same list `mlflow ui` shows under Models.")
    slot = st.container()  # always here, so the tabs below keep their place (and the open tab) after a change
    if flash := st.session_state.pop("registry_flash", None):
        slot.success(flash)
    _undo_button(slot)  # the last alias move of this session, until another change replaces it
    if flash := st.session_state.pop("registry_flash_error", None):
        st.error(flash)
    all_versions = store.model_versions()
    if all_versions:
        show_tables(all_versions)
        variants_section(all_versions)
    else:
        st.info("No registered models yet. Register a finished run's model below, or train with "
                "`python -m pipeline train --dataset digits --model cnn --register digits-cnn`.")
    register, aliases, describe, tags, delete = st.tabs(["Register a run", "Aliases", "Descriptions", "Tags", "Delete"],
                                                        key="registry_tab")
    with register:
        register_form(all_versions)
    for tab, form in ((aliases, alias_form), (describe, description_form),
                      (tags, lambda v: registry_edits.tags_form(v, _flash)),
                      (delete, lambda v: registry_edits.delete_forms(v, _flash))):
        with tab:
            if all_versions:
                form(all_versions)
            else:
                st.caption("Register a model first.")


if __name__ == "__main__":
    page()
