"""The Registry page's "Prune…": queue a pruned variant of a version for the worker, and follow its jobs.

The page never prunes: the button only queues (pipeline.queue.jobs.submit_prune, a SCHEDULED run in the
`exports` experiment); the worker prunes, fine-tunes and exports it like any queued run. While this
version has prune jobs queued or running, a fragment polls them; when one ends the whole page reruns,
so the variants table and the chart show it (and a failure names its reason).
"""
from __future__ import annotations

import streamlit as st

from dashboard import formatting, refresh, store
from pipeline import names
from pipeline.errors import UserError

KINDS = {"channels": "channels: remove whole channels (smaller, faster)",
         "weights": "weights: zero single weights (smaller only when compressed)"}


def prune_button(version) -> None:
    """A popover beside Export: kind, ratio, fine-tuning epochs, int8; keyed by the version it acts on."""
    key = f"{version.name}_{version.version}"
    with st.popover("Prune…", icon=":material/content_cut:", help="a pruned variant, fine-tuned and exported by "
                    "the worker; it appears in the table when its job ends"):
        kind = st.radio("Prune", list(KINDS), format_func=KINDS.get, key=f"prune_kind_{key}")
        ratio = st.slider("Ratio", 0.05, 0.95, 0.5, 0.05, key=f"prune_ratio_{key}",
                          help="the share of channels removed, or of weights zeroed")
        epochs = st.number_input("Fine-tuning epochs", 1, 100, 2, key=f"prune_epochs_{key}",
                                 help="on the source run's own training split, with its config and seed")
        int8 = st.checkbox("Also int8 after pruning", True, key=f"prune_int8_{key}")
        if st.button("Queue pruning", type="primary", key=f"prune_submit_{key}"):
            _submit(version, f"{kind}:{ratio:g}", int(epochs), int8)


def _submit(version, spec: str, epochs: int, int8: bool) -> None:
    from mlflow.exceptions import MlflowException

    from pipeline.queue import jobs

    try:
        run_id = jobs.submit_prune(version.uri, spec, epochs, int8, client=store.client())
    except (UserError, MlflowException) as e:
        st.session_state["registry_flash_error"] = f"Pruning {version.uri} refused: {str(e).splitlines()[0]}"
    else:
        st.session_state["registry_flash"] = (f"Queued {spec} of {version.name} v{version.version} as run "
                                              f"{run_id[:8]}: a worker (`python -m pipeline worker`) prunes, "
                                              f"fine-tunes {epochs} epoch(s) and exports it.")
    store.forget_prune_jobs()
    st.rerun()


def jobs_in_progress(version) -> None:
    """This version's queued and running prune jobs, refreshed until none is left."""
    if store.prune_jobs(version) or st.session_state.get("prune_jobs_seen", {}).get(version.uri):
        _follow(version)  # also once after the last one ended: to say how it ended


@st.fragment(run_every=refresh.EXPORT_REFRESH)
def _follow(version) -> None:
    store.forget_prune_jobs()
    active = store.prune_jobs(version)
    known = st.session_state.setdefault("prune_jobs_seen", {})
    ids = {j["run_id"] for j in active}
    ended = [run_id for run_id in known.get(version.uri, set()) if run_id not in ids]
    known[version.uri] = ids
    if ended:  # a job ended: the table, the chart and the playground's choices change
        store.forget_model_variants()
        _report(ended)
        st.rerun(scope="app")
    for job in active:
        what = "queued" if job["status"] == names.SCHEDULED else "pruning, fine-tuning and exporting"
        st.info(f"{job['variant']}: {what} (run {job['run_id'][:8]})", icon=":material/content_cut:")


def _report(ended: list[str]) -> None:
    """Say how the jobs that just ended ended: a failure gives its reason in one line."""
    failed = []
    for run_id in ended:
        store.forget_run(run_id)
        try:
            run = store.run(run_id)
        except store.ERRORS:
            continue
        if run.get("status") != names.FINISHED:
            tags = run.get("tags", {})
            failed.append(f"{tags.get(names.TAG_VARIANT, run_id[:8])} ended {run.get('status')}: "
                          f"{formatting.text(tags.get(names.TAG_ERROR))}")
    if failed:
        st.session_state["registry_flash_error"] = "Pruning " + "; ".join(failed)
    else:
        st.session_state["registry_flash"] = "Pruned variant ready: see the table below."
