"""How long a run trained, waited for a worker and stood stopped, over all its attempts.

Plain arithmetic on a run's status, MLflow start/end and tags (no MLflow import): lifecycle.requeue
folds an ended attempt's figures into the run's tags with it, and the dashboard reads every run's
times with it, so the run page, the Runs table and the queue count alike. MLflow's start time is
when a queue run was submitted and its end time is the last attempt's end, so neither is used
as training time when the trainer's own tags say better.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline import names


@dataclass(frozen=True)
class Times:
    train_start: float | None  # unix seconds the first attempt began training: where relative time starts
    training_s: float | None   # training only (data loaded to test evaluated), summed over attempts
    queued_s: float | None     # waiting for a worker, summed over attempts; None for a run not from the queue
    stopped_s: float | None    # standing FAILED or KILLED before each resume, summed; None if never resumed


def seconds(tag: str | None) -> float | None:
    """A tag of unix seconds or a duration as a number; None when absent or not a finite number."""
    try:
        value = float(tag)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _total(*parts: float | None) -> float | None:
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


def run_times(status: str, start_s: float | None, end_s: float | None, tags: Mapping[str, str],
              now_s: float) -> Times:
    """The run's Times now. A run's attempts before this one are in its TAG_EARLIER_* tags (written at
    each resume); this attempt counts from its own queueing, launch and training start."""
    earlier_training = seconds(tags.get(names.TAG_EARLIER_TRAINING))
    launched = seconds(tags.get(names.TAG_STARTED))
    first_train = seconds(tags.get(names.TAG_TRAIN_STARTED))
    if earlier_training is None:  # the first attempt (or one resumed before attempts were timed)
        this_start = next((t for t in (first_train, launched, start_s) if t is not None), None)
    else:
        this_start = seconds(tags.get(names.TAG_ATTEMPT_TRAIN_STARTED))
    train_end = seconds(tags.get(names.TAG_TRAIN_ENDED))
    this_end = train_end if train_end is not None else now_s if status == names.RUNNING else end_s
    if status == names.SCHEDULED:  # waiting: this attempt has not trained yet
        this_start = None
    this_training = this_end - this_start if this_start is not None and this_end is not None else None
    queued = None
    if names.TAG_QUEUED in tags and start_s is not None:
        queued_at = seconds(tags.get(names.TAG_ATTEMPT_QUEUED)) or start_s
        waited_until = next((t for t in (launched, this_start) if t is not None), None)
        if waited_until is None:
            waited_until = now_s if status == names.SCHEDULED else end_s
        queued = _total(seconds(tags.get(names.TAG_EARLIER_QUEUED)),
                        max(0.0, waited_until - queued_at) if waited_until is not None else None)
    origin = first_train if first_train is not None else None if status == names.SCHEDULED else \
        next((t for t in (launched, start_s) if t is not None), None)
    return Times(origin, _total(earlier_training, max(0.0, this_training) if this_training is not None else None),
                 queued, seconds(tags.get(names.TAG_STOPPED)))
