"""How a run's page follows its run: at every refresh, from the store, not from its first sight of it.

A run that ended FAILED or KILLED can come back (resumed from its page, another tab, the CLI, or the
worker's automatic retry), so its page keeps one cheap cached read per refresh to notice that; only a
FINISHED run is final.
"""
from __future__ import annotations

import pandas as pd

from dashboard import store, tables
from pipeline import names

Snapshot = tuple[tuple[str, str], ...]  # (status, attempt) of the run, or of each of a sweep's runs
LIVE, RESUMABLE, FINAL = "live", "resumable", "final"  # how the page follows its run


def snapshot(run: dict) -> Snapshot:
    """What the page must notice when it changes: the run's status and attempt (a sweep's: its runs')."""
    if names.TAG_SWEEP in run["tags"]:
        children = tables.sweep_children(store.sweep_runs(run["experiment_id"], run["run_id"]), run["run_id"])
        attempts = children.get(f"tags.{names.TAG_ATTEMPT}", pd.Series("1", index=children.index)).fillna("1")
        own = ((run["status"], "1"),) if run["tags"].get(names.TAG_KIND) == names.KIND_STUDY else ()  # it goes on
        return own + tuple(zip(children["status"], attempts))
    return ((run["status"], run["tags"].get(names.TAG_ATTEMPT, "1")),)


def mode(seen: Snapshot) -> str:
    """LIVE: re-drawn every refresh; RESUMABLE: ended, but a resume from anywhere (this page, another tab,
    the CLI, the worker's automatic retry) brings it back, so one cached read per refresh watches for that;
    FINAL: FINISHED, nothing changes it."""
    statuses = {status for status, _ in seen}
    return LIVE if statuses & set(names.ACTIVE) else RESUMABLE if statuses & set(names.RESUMABLE) else FINAL
