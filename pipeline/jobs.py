"""The run queue, kept in MLflow itself: a queued run is an MLflow run with status SCHEDULED.

`submit` creates the run at once (params = the config, tags = the queue mark and run options), so
`mlflow ui`, the dashboard and every worker read one truth and nothing is lost when a process
restarts. `cancel` ends a queued run KILLED, or asks the worker that owns a running one to stop it.

Claiming: a worker takes a run by logging the param `runboard.claim`. MLflow refuses to change a
param's value (the params table's primary key enforces it, on SQLite and behind a tracking server
alike), so of two workers, or a worker and a cancel, exactly one succeeds. The claim names its
owner's process, so a later worker can tell an orphan (owner gone) from a run still training.
"""
from __future__ import annotations

import dataclasses
import getpass
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Param, Run, RunTag
from mlflow.exceptions import MlflowException

from pipeline import tracking
from pipeline.config import ConfigError, RunConfig

STALE_SECONDS = 60.0   # a claimed run whose worker sent no heartbeat for this long is an orphan
MAX_SWEEP_RUNS = 64    # a bigger grid is almost always a typo
ACTIVE = ("SCHEDULED", "RUNNING")
CANCEL_OWNER = "cancel"

# tags and the claim param (one place for their names)
TAG_QUEUED = "runboard.queued"            # submit time, unix seconds: marks a queue run, orders the queue
TAG_REGISTER = "runboard.register"        # the run option `register` (not a hyperparameter, so not a param)
TAG_WORKER = "runboard.worker"            # host:pid of the worker that owns the run
TAG_HEARTBEAT = "runboard.heartbeat"      # unix seconds, refreshed by the owning worker
TAG_STARTED = "runboard.started"          # unix seconds the training process was launched
TAG_PID = "runboard.pid"                  # the training process's pid on the worker's machine
TAG_CANCEL = "runboard.cancel_requested"  # unix seconds; the owning worker stops the run
TAG_LOG_TAIL = "runboard.log_tail"        # the end of the training log, refreshed while it runs
TAG_ORPHANED = "runboard.orphaned"        # the worker that declared the run's process gone
TAG_SWEEP = "runboard.sweep"              # on a sweep's parent run: grid or random
TAG_SWEEP_ID = "runboard.sweep_id"        # on each run of a sweep: the parent's run id
TAG_SWEEP_RUNS = "runboard.sweep_runs"    # on the parent: its runs' ids, comma-separated
TAG_PARENT = "mlflow.parentRunId"         # MLflow's own nesting: its UI folds a sweep under the parent
PARAM_CLAIM = "runboard.claim"            # "<owner> <process key> <claimed at>"; see the module docstring


class JobError(ValueError):
    """A queue request that cannot be done (unknown run, not a queue run); the message says why."""


# --- who is running where --------------------------------------------------------------------
def _machine() -> str:
    """This machine and pid namespace: containers on one host share boot ids but not pid namespaces."""
    parts = [socket.gethostname()]
    for path, read in (("/proc/sys/kernel/random/boot_id", lambda p: Path(p).read_text().strip()[:8]),
                       ("/proc/self/ns/pid", lambda p: str(os.stat(p).st_ino))):
        try:
            parts.append(read(path))
        except OSError:
            pass
    return "-".join(parts)


def process_key(pid: int | None = None) -> str:
    """machine/pid/start time: names one process unambiguously, even after its pid is reused."""
    import psutil

    pid = pid or os.getpid()
    return f"{_machine()}/{pid}/{psutil.Process(pid).create_time():.2f}"


def process_gone(key: str) -> bool:
    """True when `key` names a process of this machine that no longer exists; False when unsure."""
    import psutil

    machine, _, rest = key.rpartition("/")
    machine, _, pid = machine.rpartition("/")
    if machine != _machine() or not pid.isdigit():
        return False  # another machine: only its heartbeat can tell
    try:
        return abs(psutil.Process(int(pid)).create_time() - float(rest)) > 1.0
    except psutil.NoSuchProcess:
        return True


@dataclass(frozen=True)
class Claim:
    owner: str      # a worker's host:pid, or "cancel"
    process: str    # process_key() of the claimer
    at: float       # unix seconds

    def __str__(self) -> str:
        return f"{self.owner} {self.process} {self.at:.3f}"

    @classmethod
    def of(cls, run: Run) -> "Claim | None":
        raw = run.data.params.get(PARAM_CLAIM)
        if not raw:
            return None
        owner, process, at = (raw.split(" ") + ["", "0"])[:3]
        return cls(owner, process, float(at or 0))


def claim(client: MlflowClient, run_id: str, claim: Claim) -> bool:
    """Take `run_id` for `claim`'s owner; False when someone else took it first."""
    try:
        client.log_param(run_id, PARAM_CLAIM, str(claim))
        return True
    except MlflowException:  # "Changing param values is not allowed": another claim won
        return False


def orphan_reason(run: Run, now: float | None = None) -> str | None:
    """Why an unfinished queue run has no live process behind it any more, or None when it may."""
    now, tags = now or time.time(), run.data.tags
    owner = Claim.of(run)
    if owner is None:  # waiting in the queue, or a submission cut off between create and SCHEDULED
        age = now - run.info.start_time / 1000
        stuck = run.info.status == "RUNNING" and age > STALE_SECONDS
        return "its submission was interrupted before it was queued" if stuck else None
    if owner.owner == CANCEL_OWNER:
        return "cancelled before it started" if now - owner.at > STALE_SECONDS else None
    if process_gone(owner.process):
        return f"its worker {owner.owner} stopped (killed or crashed) while the run was in progress"
    beat = max(owner.at, float(tags.get(TAG_HEARTBEAT) or 0))
    if now - beat > STALE_SECONDS:
        return f"its worker {owner.owner} sent no heartbeat for {now - beat:.0f} s"
    return None


# --- reading the queue -----------------------------------------------------------------------
def search(client: MlflowClient, where: str = "", order_by: list[str] | None = None,
           max_results: int = 1000) -> list[Run]:
    """Queue runs of every experiment matching `where` (an MLflow filter), `order_by` as given."""
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    query = f'tags."{TAG_QUEUED}" IS NOT NULL' + (f" AND {where}" if where else "")
    return list(client.search_runs(ids, filter_string=query, order_by=order_by, max_results=max_results))


def unfinished(client: MlflowClient) -> list[Run]:
    """SCHEDULED and RUNNING queue runs (MLflow's filter has no IN for status: two queries)."""
    return [r for status in ACTIVE for r in search(client, f"attributes.status = '{status}'")]


def queued(client: MlflowClient) -> list[Run]:
    """SCHEDULED queue runs, oldest first: the order workers start them in."""
    runs = search(client, "attributes.status = 'SCHEDULED'", ["attributes.start_time ASC"])
    return sorted(runs, key=lambda r: float(r.data.tags.get(TAG_QUEUED) or 0))


def config_of(client: MlflowClient, run: Run) -> RunConfig:
    """The validated config a queued run trains with (its params plus its run options)."""
    return RunConfig.from_params(run.data.params, experiment=client.get_experiment(run.info.experiment_id).name,
                                 run_name=run.info.run_name or "", register=run.data.tags.get(TAG_REGISTER, ""))


def train_args(config: RunConfig) -> list[str]:
    """`--flag value` for every field: an argument list for `python -m pipeline train` (no shell)."""
    args = []
    for f in dataclasses.fields(config):
        args += ["--" + f.name.replace("_", "-"), str(getattr(config, f.name))]
    return args


# --- writing ---------------------------------------------------------------------------------
def set_tags(client: MlflowClient, run_id: str, tags: dict[str, object]) -> None:
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def end(client: MlflowClient, run_id: str, status: str, reason: str, details: str = "") -> None:
    """End a run whose process cannot end it itself, with the reason (and details) where people look."""
    tags = {tracking.TAG_ERROR: reason[:500]}
    if details:
        tags[tracking.TAG_TRACEBACK] = details[-tracking.TRACEBACK_TAG_CHARS:]
    set_tags(client, run_id, tags)
    if details and status == "FAILED":
        client.log_text(run_id, f"{reason}\n\n{details}", "error/traceback.txt")
    client.set_terminated(run_id, status)


def submit(config: RunConfig, parent: str | None = None, client: MlflowClient | None = None) -> str:
    """Queue one run: it exists in MLflow at once, SCHEDULED, with the full config; returns its id."""
    if config.is_imagefolder and not config.imagefolder_path().is_dir():  # found out now, not in the worker
        raise ConfigError(f"dataset image folder not found: {config.imagefolder_path()}")
    client = client or tracking.connect()
    tags = {TAG_QUEUED: f"{time.time():.6f}", "mlflow.user": getpass.getuser(),
            "mlflow.source.name": "runboard queue", "mlflow.source.type": "JOB"}
    if config.register:
        tags[TAG_REGISTER] = config.register
    if parent:
        tags[TAG_PARENT] = tags[TAG_SWEEP_ID] = parent
    run = client.create_run(tracking.experiment_id(client, config.experiment),
                            run_name=config.run_name or None, tags=tags)
    run_id = run.info.run_id
    try:
        client.log_batch(run_id, params=[Param(k, v) for k, v in config.to_params().items()])
        client.update_run(run_id, status="SCHEDULED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")  # never leave a half-made run looking alive
        raise
    return run_id


def submit_sweep(configs: list[RunConfig], kind: str, space: dict[str, list],
                 client: MlflowClient | None = None) -> tuple[str, list[str]]:
    """Queue a sweep's runs under one parent run; returns (parent id, run ids in queue order)."""
    if not configs:
        raise ConfigError("a sweep needs at least one run")
    if len(configs) > MAX_SWEEP_RUNS:
        raise ConfigError(f"a sweep may queue at most {MAX_SWEEP_RUNS} runs, this one has {len(configs)}")
    client = client or tracking.connect()
    base = configs[0]
    summary = ", ".join(f"{k} in {v}" for k, v in space.items())
    parent = client.create_run(
        tracking.experiment_id(client, base.experiment),
        run_name=f"{base.run_name or 'sweep'} ({kind}, {len(configs)} runs)",
        tags={TAG_SWEEP: kind, "runboard.sweep_space": json.dumps(space), "mlflow.user": getpass.getuser(),
              "mlflow.note.content": f"{kind.capitalize()} sweep of {len(configs)} runs over {summary}."})
    parent_id = parent.info.run_id
    ids = [submit(c, parent=parent_id, client=client) for c in configs]
    set_tags(client, parent_id, {TAG_SWEEP_RUNS: ",".join(ids)})
    client.set_terminated(parent_id, "FINISHED")  # a grouping record: nothing trains in it
    return parent_id, ids


def cancel(run_id: str, client: MlflowClient | None = None) -> str:
    """Cancel a queue run; returns what happened, in words for the person who asked."""
    client = client or tracking.connect()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise JobError(f"no run {run_id} in {tracking.settings.tracking_uri()}") from None
    status = run.info.status
    if status not in ACTIVE:
        return f"run {run_id} already ended {status}; nothing to cancel"
    if TAG_QUEUED not in run.data.tags:
        raise JobError(f"run {run_id} was not started by the queue; stop it where it runs (Ctrl-C)")
    if status == "SCHEDULED" and claim(client, run_id, Claim(CANCEL_OWNER, process_key(), time.time())):
        end(client, run_id, "KILLED", "cancelled before it started")
        return f"run {run_id} removed from the queue: it ends KILLED without starting"
    reason = orphan_reason(run)
    if reason:  # nobody would act on the request: end it here
        end(client, run_id, "KILLED", f"cancelled; {reason}")
        return f"run {run_id} ended KILLED ({reason})"
    set_tags(client, run_id, {TAG_CANCEL: f"{time.time():.3f}"})
    return (f"run {run_id}: stop requested; its worker stops it within seconds and it ends KILLED, "
            "keeping what it logged")
