"""Everyday edits of runs through MLflow's public client, so `mlflow ui` sees the same: rename, note, tags,
delete and restore (MLflow's soft delete).

Each edit checks everything before it writes anything, so a refusal leaves the run as it was; then it
drops the cached reads of what it changed, so every page shows the edit at once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from dashboard.run_search import RESERVED
from dashboard.store.connection import client, store_failed
from dashboard.store.listings import forget_runs
from pipeline import names

GROUP_KINDS = ("study",)  # runboard.kind of a parent whose runs go with it (an Optuna study's trials)
MAX_TAG_VALUE = 8000  # MLflow's limit on a tag value (characters)


class EditError(ValueError):
    """An edit the store refuses or that would lose something; the message says which and why."""


def _reason(e: MlflowException) -> str:
    return str(getattr(e, "message", e)).splitlines()[0]


def _active(run_id: str):
    try:
        run = client().get_run(run_id)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":  # an unreachable store is not a missing run
            raise
        raise EditError(f"no run {run_id} in this store") from None
    if run.info.lifecycle_stage == "deleted":
        raise EditError(f"run {run.info.run_name} was deleted: restore it before editing it")
    return run


def rename_run(run_id: str, new_name: str) -> str:
    """Give the run a new name (MLflow's run name); refused when empty or taken in its experiment."""
    name = new_name.strip()
    if not name:
        raise EditError("a run name cannot be empty")
    run = _active(run_id)
    if name == run.info.run_name:
        return name
    quoted = name.replace("'", "\\'")
    taken = client().search_runs([run.info.experiment_id], f"attributes.run_name = '{quoted}'", ViewType.ALL,
                                 max_results=1)
    if taken:
        raise EditError(f"a run named {name!r} already exists in this experiment ({taken[0].info.run_id[:8]}): "
                        "pick another name")
    try:
        client().update_run(run_id, name=name)
    except MlflowException as e:
        raise EditError(f"the run name {name!r} was refused: {_reason(e)}") from None
    forget_runs()
    return name


def set_note(run_id: str, text: str) -> None:
    """The run's Markdown note: MLflow's `mlflow.note.content`, the tag its UI edits; empty removes it."""
    run = _active(run_id)
    if len(text) > MAX_TAG_VALUE:
        raise EditError(f"the note is {len(text):,} characters; MLflow keeps at most {MAX_TAG_VALUE:,}")
    if text.strip():
        client().set_tag(run_id, names.TAG_NOTE, text)
    elif names.TAG_NOTE in run.data.tags:
        client().delete_tag(run_id, names.TAG_NOTE)
    forget_runs()


def check_tag_key(key: str) -> str:
    """The key as it will be stored, or EditError saying what is wrong with it."""
    key = key.strip()
    if not key:
        raise EditError("a tag needs a key, e.g. reviewed_by")
    if key.startswith(RESERVED):
        raise EditError(f"tag {key!r}: keys starting with {' or '.join(RESERVED)} are Runboard's and MLflow's own; "
                        "pick another key")
    return key


def set_tag(run_id: str, key: str, value: str) -> str:
    """Add or change one of the user's own tags; MLflow's own check of the key is reported as it says it."""
    key = check_tag_key(key)
    _active(run_id)
    if len(value) > MAX_TAG_VALUE:
        raise EditError(f"tag {key!r}: its value is {len(value):,} characters; MLflow keeps at most {MAX_TAG_VALUE:,}")
    try:
        client().set_tag(run_id, key, value)
    except MlflowException as e:
        raise EditError(f"tag {key!r} was refused by MLflow: {_reason(e)}") from None
    forget_runs()
    return key


def delete_tag(run_id: str, key: str) -> None:
    """Remove one of the user's own tags."""
    key = check_tag_key(key)
    if key not in _active(run_id).data.tags:
        raise EditError(f"the run has no tag {key!r} (removed already?)")
    client().delete_tag(run_id, key)
    forget_runs()


# --- delete and restore --------------------------------------------------------------------------

@dataclass
class DeletionPlan:
    """What deleting some runs would do, found before anything is deleted."""
    runs: dict[str, str] = field(default_factory=dict)       # run id -> name: the runs asked for
    children: dict[str, str] = field(default_factory=dict)   # a sweep's or study's runs that go with their parent
    refused: list[str] = field(default_factory=list)         # one line per run that may not be deleted, and why
    versions: list[str] = field(default_factory=list)        # "digits-cnn v1 (run tiny-cnn)": registered versions behind them

    @property
    def all_ids(self) -> list[str]:
        return [*self.runs, *self.children]


def _is_group(run) -> bool:
    """A sweep's or a study's parent: a run that only groups others."""
    return names.TAG_SWEEP in run.data.tags or run.data.tags.get(names.TAG_KIND) in GROUP_KINDS


def _children(run) -> list:
    """The runs a sweep's or a study's parent groups (its tags or MLflow's nesting name the parent)."""
    if not _is_group(run):
        return []
    found = {}
    for tag in (names.TAG_SWEEP_ID, names.TAG_PARENT):
        for child in client().search_runs([run.info.experiment_id], f"tags.`{tag}` = '{run.info.run_id}'",
                                          ViewType.ACTIVE_ONLY, max_results=5000):
            found[child.info.run_id] = child
    return list(found.values())


def deletion_plan(run_ids: list[str]) -> DeletionPlan:
    """Which runs would go (with a parent's runs), which may not (still queued or running), and which
    registered model versions point into them. Reads only."""
    plan = DeletionPlan()
    try:
        for run_id in run_ids:
            run = _active(run_id)
            plan.runs[run_id] = run.info.run_name
            for child in _children(run):
                if child.info.run_id not in run_ids:
                    plan.children[child.info.run_id] = child.info.run_name
                    if child.info.status in names.ACTIVE:
                        plan.refused.append(f"{child.info.run_name} (a run of {run.info.run_name}) is "
                                            f"{child.info.status}: cancel it first")
            if run.info.status in names.ACTIVE:
                plan.refused.append(f"{run.info.run_name} is {run.info.status}: cancel it first")
        every = plan.runs | plan.children
        for run_id, name in every.items():
            for version in client().search_model_versions(f"run_id = '{run_id}'"):
                plan.versions.append(f"{version.name} v{version.version} (run {name})")
    except MlflowException as e:
        raise store_failed(e, "the runs to delete") from None
    return plan


def delete_runs(run_ids: list[str], versions_confirmed: bool = False) -> DeletionPlan:
    """MLflow's soft delete of the runs (and a parent's runs): they move to the Deleted view, restorable.

    Refused as a whole, nothing deleted, when one of them is queued or running, or when registered
    versions point into them and the person has not confirmed that after seeing them named."""
    plan = deletion_plan(run_ids)
    if plan.refused:
        raise EditError("nothing was deleted: " + "; ".join(plan.refused))
    if plan.versions and not versions_confirmed:
        raise EditError("nothing was deleted: registered model versions point to these runs: "
                        + ", ".join(plan.versions) + ". Confirm to delete them anyway")
    now = f"{time.time():.0f}"
    for run_id in plan.all_ids:  # the tag first: a deleted run takes no more tags
        client().set_tag(run_id, names.TAG_DELETED, now)
        client().delete_run(run_id)
    forget_runs()
    return plan


def restore_runs(run_ids: list[str]) -> list[str]:
    """Bring deleted runs back (with the runs their parent took along); returns the names restored."""
    restored: dict[str, str] = {}
    for run_id in run_ids:
        try:
            run = client().get_run(run_id)
        except MlflowException:
            raise EditError(f"no run {run_id} in this store") from None
        ids = [run_id]
        if _is_group(run):
            for tag in (names.TAG_SWEEP_ID, names.TAG_PARENT):
                ids += [c.info.run_id for c in client().search_runs(
                    [run.info.experiment_id], f"tags.`{tag}` = '{run_id}'", ViewType.DELETED_ONLY, max_results=5000)]
        for one in dict.fromkeys(ids):
            found = client().get_run(one)
            if found.info.lifecycle_stage == "deleted":
                client().restore_run(one)
                if names.TAG_DELETED in found.data.tags:
                    client().delete_tag(one, names.TAG_DELETED)
            restored[one] = found.info.run_name
    forget_runs()
    return list(restored.values())


def deleted_runs(experiment_id: str) -> list:
    """The experiment's deleted runs (MLflow Run entities), newest first: the Deleted view."""
    try:
        return client().search_runs([experiment_id], "", ViewType.DELETED_ONLY, max_results=5000,
                                    order_by=["attributes.start_time DESC"])
    except MlflowException as e:
        raise store_failed(e, "the deleted runs") from None
