"""A run's life in MLflow, in one place: schedule, claim, mark running, heartbeat, finish, attach a log.

SCHEDULED (queued) -> RUNNING (a worker started it) -> FINISHED, FAILED (reason + traceback) or
KILLED (cancelled). A FAILED or KILLED run can be requeued (SCHEDULED again): its next attempt
continues the same MLflow run from its checkpoint, with the attempt number and reason as tags. This is the only module that changes a run's status; the queue, the worker,
the trainer, the launchers and the dashboard's Cancel all call it, so the rules hold everywhere:
an ended run always says why, and a run never looks alive after its process died.

Claiming: a worker (or a cancel) takes a run by logging the param `runboard.claim`. MLflow refuses
to change a param's value (on SQLite and behind a tracking server alike), so of two claimers
exactly one wins. The claim names its owner's process, so an orphan can be told from a live run.
Attempt N > 1 is claimed with `runboard.claim.N`, and started with `runboard.requeue.N` (one
requeue per attempt wins too).
"""
from __future__ import annotations

import os
import socket
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Param, Run, RunTag
from mlflow.exceptions import MlflowException

from pipeline import names, settings
from pipeline.config import RunConfig
from pipeline.errors import UserError
from pipeline.runs import timing

TRACEBACK_TAG_CHARS = 4000   # the tail of a traceback kept as a tag; the whole is an artifact
REASON_CHARS = 500           # the one-line reason tag
SYSTEM_METRICS_INTERVAL = 2  # seconds between CPU/GPU/memory samples while training


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, object]) -> None:
    """Tags in one call (values become strings)."""
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


# --- schedule and claim ------------------------------------------------------------------------
def schedule(client: MlflowClient, experiment_id: str, run_name: str, params: dict[str, str],
             tags: dict[str, str]) -> str:
    """A run that exists at once, SCHEDULED, with its params; never left half-made."""
    run_id = client.create_run(experiment_id, run_name=run_name or None, tags=tags).info.run_id
    try:
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        client.update_run(run_id, status=names.SCHEDULED)
    except BaseException:
        client.set_terminated(run_id, names.FAILED)
        raise
    return run_id


def record(client: MlflowClient, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
    """A run that only groups others (a sweep's parent): created and ended FINISHED at once."""
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    client.set_terminated(run_id, names.FINISHED)
    return run_id


def open_group(client: MlflowClient, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
    """A run that groups others while they run (a study's parent): created RUNNING, ended by finish()."""
    return client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id


def reopen(client: MlflowClient, run_id: str) -> None:
    """An ended group run (a study given more trials) is RUNNING again; its last ending's reason goes."""
    for key in (names.TAG_ERROR, names.TAG_TRACEBACK, names.TAG_CANCEL):
        if key in client.get_run(run_id).data.tags:
            client.delete_tag(run_id, key)
    client.update_run(run_id, status=names.RUNNING)


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
        """The claim of the run's current attempt."""
        raw = run.data.params.get(_claim_param(attempt_of(run)))
        if not raw:
            return None
        owner, process, at = (raw.split(" ") + ["", "0"])[:3]
        return cls(owner, process, float(at or 0))


def attempt_of(run: Run) -> int:
    """Which attempt the run is on: 1 until it is first resumed."""
    return int(run.data.tags.get(names.TAG_ATTEMPT) or 1)


def _claim_param(attempt: int) -> str:
    return names.PARAM_CLAIM if attempt <= 1 else f"{names.PARAM_CLAIM}.{attempt}"


def claim(client: MlflowClient, run_id: str, who: Claim | str, attempt: int = 1) -> bool:
    """Take attempt `attempt` of `run_id` for `who` (an owner name: this process, now); False when
    someone else took it first."""
    who = Claim(who, process_key(), time.time()) if isinstance(who, str) else who
    try:
        client.log_param(run_id, _claim_param(attempt), str(who))
        return True
    except MlflowException:  # "Changing param values is not allowed": another claim won
        return False


def config_of(client: MlflowClient, run: Run) -> RunConfig:
    """The validated config a run trains with: its params plus its run options (experiment, name, register)."""
    return RunConfig.from_params(run.data.params, experiment=client.get_experiment(run.info.experiment_id).name,
                                 run_name=run.info.run_name or "", register=run.data.tags.get(names.TAG_REGISTER, ""))


# --- while it runs -----------------------------------------------------------------------------
def mark_running(client: MlflowClient, run_id: str, tags: dict[str, object]) -> None:
    """A worker started the run's process: RUNNING, with where and when (before the child can end it)."""
    set_tags(client, run_id, {names.TAG_STARTED: f"{time.time():.3f}", **tags})
    client.update_run(run_id, status=names.RUNNING)


def training_started(client: MlflowClient, run_id: str) -> None:
    """Data loaded, the attempt's first epoch begins: its training time counts from here (the first
    attempt's start is also where the run's relative time starts)."""
    now = f"{time.time():.3f}"
    first = names.TAG_TRAIN_STARTED not in client.get_run(run_id).data.tags
    set_tags(client, run_id, {names.TAG_ATTEMPT_TRAIN_STARTED: now, **({names.TAG_TRAIN_STARTED: now} if first else {})})


def heartbeat(client: MlflowClient, run_id: str, tags: dict[str, object] | None = None) -> None:
    """The owner is alive (and, optionally, what it saw: the log tail)."""
    set_tags(client, run_id, {names.TAG_HEARTBEAT: f"{time.time():.0f}", **(tags or {})})


def attach_log(client: MlflowClient, run_id: str, path: Path) -> None:
    """The training log becomes the run's logs/train.log artifact, after the logs of its earlier attempts."""
    import shutil
    import tempfile

    artifact = f"{names.LOG_DIR}/{names.LOG_NAME}"
    if artifact not in {a.path for a in client.list_artifacts(run_id, names.LOG_DIR)}:
        client.log_artifact(run_id, str(path), names.LOG_DIR)
        return
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory(prefix="runboard-log-") as folder:
        earlier = Path(client.download_artifacts(run_id, artifact, folder))
        whole = Path(folder) / "all" / names.LOG_NAME
        whole.parent.mkdir()
        with open(whole, "wb") as out:
            out.write(earlier.read_bytes().rstrip(b"\n") + b"\n")
            reason = run.data.tags.get(names.TAG_ATTEMPT_REASON, "")
            out.write(f"\n# ---- attempt {attempt_of(run)}: {reason} ----\n".encode())
            with open(path, "rb") as this:
                shutil.copyfileobj(this, out)
        client.log_artifact(run_id, str(whole), names.LOG_DIR)


# --- the end -----------------------------------------------------------------------------------
def finish(client: MlflowClient, run_id: str, status: str, reason: str = "", details: str = "") -> None:
    """End the run with `status`; a reason (one line) and details (a traceback, a log tail) where people look.

    A FAILED run with details also gets them as error/traceback.txt. The trainer's own active run
    is ended through MLflow's fluent API, which also stops its system-metrics sampler.
    """
    if status not in names.ENDED:
        raise ValueError(f"a run ends {', '.join(names.ENDED)}, not {status}")
    tags = {}
    if reason:
        tags[names.TAG_ERROR] = reason.splitlines()[0][:REASON_CHARS] if reason.strip() else reason
    if details:
        tags[names.TAG_TRACEBACK] = details[-TRACEBACK_TAG_CHARS:]
    if tags:
        set_tags(client, run_id, tags)
    if details and status == names.FAILED:
        client.log_text(run_id, f"{reason}\n\n{details}" if reason not in details else details, names.TRACEBACK_TXT)
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)
    else:
        client.set_terminated(run_id, status)


# --- attempts ----------------------------------------------------------------------------------
RESET_ON_REQUEUE = (names.TAG_ERROR, names.TAG_TRACEBACK, names.TAG_CANCEL, names.TAG_ORPHANED,
                    names.TAG_HEARTBEAT, names.TAG_WORKER, names.TAG_PID, names.TAG_RETRY,
                    # the last attempt's times: summed into the TAG_EARLIER_* tags below
                    names.TAG_STARTED, names.TAG_ATTEMPT_TRAIN_STARTED, names.TAG_TRAIN_ENDED)


def retriable(error: BaseException) -> bool:
    """Whether another attempt might succeed: not after bad input, nor after a diverged loss."""
    return not isinstance(error, UserError) and getattr(error, "retriable", True)


def retries_left(run: Run) -> int:
    """Automatic resumes the run may still get (RUNBOARD_MAX_ATTEMPTS counts from its last start by hand)."""
    if run.info.status != names.FAILED or run.data.tags.get(names.TAG_RETRY) == "no":
        return 0
    return max(0, settings.max_attempts() - 1 - int(run.data.tags.get(names.TAG_RETRIES) or 0))


def requeue(client: MlflowClient, run_id: str, reason: str, automatic: bool) -> int | None:
    """A FAILED or KILLED run SCHEDULED again, as its next attempt: the attempt number, or None when
    it is not ended (or someone else requeued it first). A worker then resumes it from its checkpoint.
    """
    run = client.get_run(run_id)
    if run.info.status not in names.RESUMABLE:
        return None
    attempt, tags, now = attempt_of(run) + 1, run.data.tags, time.time()
    try:
        client.log_param(run_id, f"{names.PARAM_REQUEUE}.{attempt}", f"{now:.3f}")
    except MlflowException:  # another requeue of this attempt won
        return None
    end = run.info.end_time / 1000 if run.info.end_time else now
    so_far = timing.run_times(run.info.status, run.info.start_time / 1000, end, tags, now)
    for key in RESET_ON_REQUEUE:  # the last attempt's ending: kept in the history line below
        if key in tags:
            client.delete_tag(run_id, key)
    line = f"attempt {attempt} ({'automatic' if automatic else 'by hand'}): {reason}"[:REASON_CHARS]
    history = "\n".join(filter(None, [tags.get(names.TAG_ATTEMPT_HISTORY, ""), line]))
    set_tags(client, run_id, {
        names.TAG_ATTEMPT: attempt, names.TAG_ATTEMPT_REASON: reason[:REASON_CHARS],
        names.TAG_ATTEMPT_HISTORY: history[-TRACEBACK_TAG_CHARS:],
        names.TAG_RETRIES: int(tags.get(names.TAG_RETRIES) or 0) + 1 if automatic else 0,
        names.TAG_QUEUED: tags.get(names.TAG_QUEUED) or f"{now:.6f}",  # its place: first in line
        names.TAG_ATTEMPT_QUEUED: f"{now:.3f}",  # ...but it waits for a worker from now
        names.TAG_EARLIER_TRAINING: f"{so_far.training_s or 0.0:.3f}",
        names.TAG_EARLIER_QUEUED: f"{so_far.queued_s or 0.0:.3f}",
        names.TAG_STOPPED: f"{(so_far.stopped_s or 0.0) + max(0.0, now - end):.3f}",
    })
    client.update_run(run_id, status=names.SCHEDULED)
    return attempt


def failure(error: BaseException) -> tuple[str, str]:
    """(reason, traceback) of an exception, as finish() records them."""
    return f"{type(error).__name__}: {error}".splitlines()[0], "".join(traceback.format_exception(error))


@contextmanager
def tracked(client: MlflowClient, run_id: str | None, experiment_id: str, run_name: str,
            params: dict[str, str]):
    """The trainer's active run (a new one, or the queued `run_id`) that always ends with an honest status.

    FINISHED when the body returns; KILLED on Ctrl-C or SIGTERM; FAILED on any other exception,
    with its reason and traceback. The exception propagates.
    """
    mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL)
    mlflow.set_system_metrics_samples_before_logging(1)
    if run_id is None:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name or None, log_system_metrics=True)
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    else:
        run = mlflow.start_run(run_id=run_id, log_system_metrics=True)
    run_id = run.info.run_id
    try:
        yield run_id
    except KeyboardInterrupt:
        finish(client, run_id, names.KILLED, "cancelled: interrupted or stopped by a signal")
        raise
    except BaseException as e:
        if not retriable(e):
            set_tags(client, run_id, {names.TAG_RETRY: "no"})
        finish(client, run_id, names.FAILED, *failure(e))
        raise
    else:
        finish(client, run_id, names.FINISHED)
