"""Launch: queue a training run (or a sweep, a study, or an audit of an image folder) from a form built from
RunConfig, and watch the queue.

URL: `?clone=RUN_ID` opens the form prefilled from that run's params. The buttons only queue runs
(pipeline.queue.jobs.submit); a worker process (`python -m pipeline worker`) trains them.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import launch_form as form
from dashboard import audit_queue, formatting, lr_suggestion, queue_view, store, study_form, ui
from pipeline import names
from pipeline.queue import jobs, sweep
from pipeline.config import ConfigError, RunConfig

SWEEP_KEY = "sweep."


def _link(page: str, label: str, icon: str, **query: str) -> None:
    st.page_link(f"views/{page}.py", label=label, icon=icon, query_params=query)


def start_values() -> RunConfig:
    """The form's starting config: the cloned run's (?clone=ID) or the defaults; prefills once per source."""
    clone = st.query_params.get("clone")
    if not clone:
        form.prefill(RunConfig(), None)
        return RunConfig()
    try:
        run = store.run(clone)
    except store.RunNotFoundError as e:
        st.error(f"Cannot clone: {e}", icon=":material/search_off:")
        form.prefill(RunConfig(), None)
        return RunConfig()
    experiments = dict(zip(store.experiments()["experiment_id"], store.experiments()["name"]))
    config, problems = form.from_run(run["params"], experiment=experiments.get(run["experiment_id"], "runboard"),
                                     register=run["tags"].get(names.TAG_REGISTER, ""))
    st.info(f"Cloned from **{run['run_name']}** (`{clone[:8]}`): change what you like, then launch.",
            icon=":material/content_copy:")
    for problem in problems:
        st.warning(f"A param of that run no longer validates, so it starts at its default: {problem}")
    form.prefill(config, clone)
    return config


def refusal() -> str | None:
    """Why the signed-in person may not queue runs into the form's experiment (MLflow asks EDIT of them); None
    when they may, or when the experiment is new (MLflow then decides at the click)."""
    experiments = store.experiments()
    ids = dict(zip(experiments["name"], experiments["experiment_id"]))
    return store.refusal("launch", experiment_id=ids.get(st.session_state.get(form.KEY + "experiment")))


def launch_one(config: RunConfig | None, blocked: bool = False) -> None:
    if st.button("Launch", type="primary", icon=":material/rocket_launch:", disabled=config is None or blocked):
        run_id = jobs.submit(config, client=store.client())
        store.forget_queue()
        st.session_state["launched"] = {"runs": [run_id], "parent": None}
    launched = st.session_state.get("launched")
    if launched and not launched["parent"]:
        run_id = launched["runs"][0]
        st.success(f"Queued run `{run_id}`: it starts when a worker has a free slot; watch it below.",
                   icon=":material/schedule:")
        _link("run_detail", "Open its page", ":material/analytics:", run=run_id)


def sweep_space(base: RunConfig) -> tuple[str, dict[str, list], int, int]:
    """The sweep's widgets: kind, values of lr, batch size and one more field, and for random: runs, seed."""
    kind = st.radio("Search", sweep.KINDS, horizontal=True, key=SWEEP_KEY + "kind",
                    captions=["every combination", "lr log-uniform in its range; others drawn from their values"])
    left, middle, right = st.columns(3)
    lr = left.text_input("lr values", f"{base.lr / 3:.2g}, {base.lr:g}, {base.lr * 3:.2g}", key=SWEEP_KEY + "lr",
                         help="comma-separated; random search draws log-uniformly between the smallest and largest")
    batch = middle.text_input("batch_size values", f"{base.batch_size // 2}, {base.batch_size}",
                              key=SWEEP_KEY + "batch_size")
    extra = right.selectbox("one more field", sweep.EXTRA_FIELDS, key=SWEEP_KEY + "field")
    choices = form.FIELDS[extra].metadata["choices"]
    current = form.widget_value(base, extra)
    if choices:
        values = right.multiselect(f"{extra} values", choices, default=[current], key=SWEEP_KEY + "values." + extra)
    else:
        values = right.text_input(f"{extra} values", str(current), key=SWEEP_KEY + "values." + extra)
    n, seed = 8, 0
    if kind == "random":
        a, b = st.columns(2)
        n = int(a.number_input("runs", 1, jobs.MAX_SWEEP_RUNS, 8, key=SWEEP_KEY + "n"))
        seed = int(b.number_input("sampling seed", 0, None, 0, key=SWEEP_KEY + "seed"))
    space = {"lr": sweep.parse_values("lr", lr), "batch_size": sweep.parse_values("batch_size", batch),
             extra: sweep.parse_values(extra, ",".join(map(str, values)) if choices else values)}
    return kind, space, n, seed


def launch_sweep(base: RunConfig | None, blocked: bool = False) -> None:
    if base is None:
        st.info("Fix the form above first: a sweep starts from its values.")
        return
    try:
        kind, space, n, seed = sweep_space(base)
        configs = sweep.build(base, kind, space, n, seed)
        if len(configs) > jobs.MAX_SWEEP_RUNS:
            raise ConfigError(f"a sweep may queue at most {jobs.MAX_SWEEP_RUNS} runs, this one has {len(configs)}")
    except ConfigError as e:
        st.error(str(e), icon=":material/block:")
        return
    preview = pd.DataFrame([{"run name": c.run_name, **{k: getattr(c, k) for k in space}} for c in configs])
    st.dataframe(preview, hide_index=True, height=min(35 * (len(configs) + 1) + 3, 400), placeholder=formatting.MISSING,
                 column_config={"lr": formatting.lr_column("lr")})
    if st.button(f"Queue {len(configs)} runs", type="primary", icon=":material/grid_view:", key=SWEEP_KEY + "go",
                 disabled=blocked):
        parent, run_ids = jobs.submit_sweep(configs, kind, space, client=store.client())
        store.forget_queue()
        st.session_state["launched"] = {"runs": run_ids, "parent": parent}
    launched = st.session_state.get("launched")
    if launched and launched["parent"]:
        st.success(f"Queued a sweep of {len(launched['runs'])} runs under parent run `{launched['parent']}`.",
                   icon=":material/schedule:")
        _link("compare", "Compare the sweep's runs", ":material/stacked_line_chart:", runs=",".join(launched["runs"]))


def launch_audit(config: RunConfig | None, blocked: bool = False) -> None:
    """The folder above audited with this form's model, epochs and image size; its findings are on the Data page."""
    dataset = st.session_state[form.KEY + "dataset"]
    if not dataset.startswith("imagefolder:"):
        st.info("An audit reads an image folder (label errors, duplicates, leaks): pick one as the dataset above.",
                icon=":material/fact_check:")
        return
    st.markdown("K fold models, each trained as set above, score every image they never trained on: cleanlab "
                "ranks likely label errors, pHash finds duplicates, and pairs across the test split are leaks.")
    folds = int(st.number_input("Folds", 2, 20, 4, key="audit_folds"))
    if config is not None:
        st.markdown(f"**Will run:** {folds} fold models × {config.epochs} epochs of {config.model}, then the "
                    "findings; your files are only read.")
    if st.button(f"Queue an audit of {folds} folds", type="primary", icon=":material/fact_check:",
                 disabled=config is None or blocked):
        run_id = audit_queue.queue(config, folds)
        if run_id:
            st.session_state["audited"] = {"run": run_id, "folder": dataset}
    audited = st.session_state.get("audited")
    if audited and audited["folder"] == dataset:
        st.success(f"Queued audit `{audited['run']}`: a worker runs it.", icon=":material/schedule:")
        _link("data", "Its findings on the Data page", ":material/fact_check:", folder=dataset)
        _link("run_detail", "Open its page", ":material/analytics:", run=audited["run"])


@ui.guarded
def page() -> None:
    st.title("Launch a run")
    st.caption("The button only queues the run: a worker (`python -m pipeline worker`, started by `make run`) "
               "trains it in its own process, so closing this tab changes nothing.")
    start_values()
    form.config_widgets(list(store.experiments()["name"]) or ["runboard"])
    form.show_folder_summary(st.session_state[form.KEY + "dataset"])
    try:
        config = form.config_from_state()
    except ConfigError as e:
        config = None
        st.error(str(e), icon=":material/block:")
    blocked = refusal()
    if blocked:
        st.info(blocked, icon=":material/lock:")
    # keyed and stateful: a rerun that changes the page above (another dataset) keeps the open tab
    single, grid, search, audit = st.tabs(["One run", "Sweep", "Study", "Audit"], key="launch_tab", on_change="rerun")
    with single:
        launch_one(config, bool(blocked))
        lr_suggestion.suggest_button(config, bool(blocked))
    with grid:
        launch_sweep(config, bool(blocked))
    with search:
        study_form.launch_study(config, bool(blocked))
    with audit:
        launch_audit(config, bool(blocked))
    st.divider()
    queue_view.live_queue()


if __name__ == "__main__":
    page()
