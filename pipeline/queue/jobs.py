"""The run queue, kept in MLflow itself: a queued run is an MLflow run with status SCHEDULED.

`submit` creates the run at once (params = the config, tags = the queue mark and run options), so
`mlflow ui`, the dashboard and every worker read one truth and nothing is lost when a process
restarts. `cancel` ends a queued run KILLED, or asks the worker that owns a running one to stop it;
`resume` queues a FAILED or KILLED run again, to continue from its checkpoint.
Status changes and claims go through runs/lifecycle.py; this module decides what the queue holds.
"""
from __future__ import annotations

import json
import time

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from pipeline import names, settings
from pipeline.config import ConfigError, RunConfig
from pipeline.errors import UserError
from pipeline.queue import sweep
from pipeline.runs import lifecycle, tracking

STALE_SECONDS = 60.0   # a claimed run whose worker sent no heartbeat for this long is an orphan
MAX_SWEEP_RUNS = 64    # a bigger grid is almost always a typo
CANCEL_OWNER = "cancel"


class JobError(UserError):
    """A queue request that cannot be done (unknown run, not a queue run); the message says why."""


def orphan_reason(run: Run, now: float | None = None) -> str | None:
    """Why an unfinished queue run has no live process behind it any more, or None when it may."""
    now, tags = now or time.time(), run.data.tags
    owner = lifecycle.Claim.of(run)
    if owner is None:  # waiting in the queue, or a submission cut off between create and SCHEDULED
        age = now - run.info.start_time / 1000
        stuck = run.info.status == names.RUNNING and age > STALE_SECONDS
        return "its submission was interrupted before it was queued" if stuck else None
    if owner.owner == CANCEL_OWNER:
        return "cancelled before it started" if now - owner.at > STALE_SECONDS else None
    adopter = tags.get(names.TAG_ADOPTED, "").split(" ")  # a restarted worker took the run over
    worker, process = adopter if len(adopter) == 2 else (owner.owner, owner.process)
    if lifecycle.process_gone(process):
        return f"its worker {worker} stopped (killed or crashed) while the run was in progress"
    beat = max(owner.at, float(tags.get(names.TAG_HEARTBEAT) or 0))
    if now - beat > STALE_SECONDS:
        return f"its worker {worker} sent no heartbeat for {now - beat:.0f} s"
    return None


# --- reading the queue -----------------------------------------------------------------------
def search(client: MlflowClient, where: str, order_by: list[str] | None = None,
           max_results: int = 1000, experiment: str | None = None) -> list[Run]:
    """Queue runs matching `where` (an MLflow filter), `order_by` as given: of every experiment, or of
    the one named `experiment`."""
    if experiment is None:
        ids = [e.experiment_id for e in client.search_experiments()]
    else:
        found = client.get_experiment_by_name(experiment)
        ids = [found.experiment_id] if found else []
    if not ids:
        return []
    query = f'tags."{names.TAG_QUEUED}" IS NOT NULL AND {where}'
    return list(client.search_runs(ids, filter_string=query, order_by=order_by, max_results=max_results))


def unfinished(client: MlflowClient, experiment: str | None = None) -> list[Run]:
    """SCHEDULED and RUNNING queue runs (MLflow's filter has no IN for status: two queries)."""
    return [r for status in names.ACTIVE
            for r in search(client, f"attributes.status = '{status}'", experiment=experiment)]


def queued(client: MlflowClient, experiment: str | None = None) -> list[Run]:
    """SCHEDULED queue runs, oldest first: the order workers start them in."""
    runs = search(client, f"attributes.status = '{names.SCHEDULED}'", ["attributes.start_time ASC"],
                  experiment=experiment)
    return sorted(runs, key=lambda r: float(r.data.tags.get(names.TAG_QUEUED) or 0))


def running_studies(client: MlflowClient, experiment: str | None = None) -> list[Run]:
    """RUNNING study runs (see study.py): what a worker's study step drives."""
    if experiment is None:
        ids = [e.experiment_id for e in client.search_experiments()]
    else:
        found = client.get_experiment_by_name(experiment)
        ids = [found.experiment_id] if found else []
    where = f'tags."{names.TAG_KIND}" = \'{names.KIND_STUDY}\' AND attributes.status = \'{names.RUNNING}\''
    return list(client.search_runs(ids, filter_string=where, max_results=1000)) if ids else []


# --- writing ---------------------------------------------------------------------------------
def submit(config: RunConfig, parent: str | None = None, client: MlflowClient | None = None,
           extra_tags: dict[str, str] | None = None) -> str:
    """Queue one run: it exists in MLflow at once, SCHEDULED, with the full config (and `extra_tags`,
    such as a study trial's number); returns its id."""
    if config.is_imagefolder and not config.imagefolder_path().is_dir():  # found out now, not in the worker
        raise ConfigError(f"dataset image folder not found: {config.imagefolder_path()}")
    client = client or tracking.connect()
    tags = {names.TAG_QUEUED: f"{time.time():.6f}", names.TAG_USER: tracking.user(client),
            names.TAG_SOURCE_NAME: "runboard queue", names.TAG_SOURCE_TYPE: "JOB"}
    if config.register:
        tags[names.TAG_REGISTER] = config.register
    if parent:
        tags[names.TAG_PARENT] = tags[names.TAG_SWEEP_ID] = parent
    tags.update(extra_tags or {})
    return lifecycle.schedule(client, tracking.experiment_id(client, config.experiment), config.run_name,
                              config.to_params(), tags)


def submit_audit(config: RunConfig, folds: int, client: MlflowClient | None = None) -> str:
    """Queue a data audit of `config`'s image folder (runs/audit.py); refused at once, before a run exists,
    when the folder cannot take `folds` folds. Returns its run id."""
    from pipeline.runs import audit_request

    audit_request.check(config, folds)
    client = client or tracking.connect()
    tags = {names.TAG_QUEUED: f"{time.time():.6f}", names.TAG_USER: tracking.user(client),
            names.TAG_SOURCE_NAME: "runboard queue", names.TAG_SOURCE_TYPE: "JOB", **audit_request.tags(config)}
    name = config.run_name or f"audit of {config.dataset[len('imagefolder:'):]}"
    return lifecycle.schedule(client, tracking.experiment_id(client, config.experiment), name,
                              audit_request.params(config, folds), tags)


def submit_prune(source: str, spec: str, epochs: int = 2, int8: bool = True, register: str = "",
                 max_drop: float = 0.01, client: MlflowClient | None = None) -> str:
    """Queue a prune job (serving/prune.py): a SCHEDULED run in `exports` holding the fine-tuning config and
    the plan; a worker prunes, fine-tunes, exports and logs it. Bad input is refused here; returns its id."""
    import dataclasses

    from pipeline.serving import model_refs, prune

    plan = prune.plan(source, spec, epochs, int8, register, max_drop)
    client = client or tracking.connect()
    ref = model_refs.resolve(client, plan.source)
    source_run = get(client, ref.run_id) if ref.run_id else None
    if source_run is None or names.TAG_EXPORT_SOURCE in source_run.data.tags:
        raise JobError(f"{ref.label} is an exported variant or has no source run: prune its source model instead")
    if "dataset" not in source_run.data.params:
        raise JobError(f"{ref.label}: its source run has no dataset param, so there is nothing to fine-tune on")
    plan = dataclasses.replace(plan, source=ref.load_uri)  # pinned: @champion may move before a worker starts
    config = prune.fine_tune_config(source_run.data.params, plan, ref.label)
    tags = {names.TAG_QUEUED: f"{time.time():.6f}", names.TAG_USER: tracking.user(client),
            names.TAG_SOURCE_NAME: "runboard queue", names.TAG_SOURCE_TYPE: "JOB", names.TAG_KIND: names.KIND_PRUNE,
            names.TAG_EXPORT_SOURCE: ref.load_uri, names.TAG_VARIANT: plan.variant, names.TAG_PRUNE: plan.variant}
    return lifecycle.schedule(client, tracking.experiment_id(client, names.EXPORT_EXPERIMENT), config.run_name,
                              {**config.to_params(), **prune.plan_params(plan), "variant": plan.variant}, tags)


def queued_process(run_id: str, progress: bool = True) -> int:
    """The body of a process the queue started for `run_id` (`train --run-id ID`): by the run's kind."""
    if tracking.connect().get_run(run_id).data.tags.get(names.TAG_KIND) == names.KIND_PRUNE:
        from pipeline.serving import prune

        return prune.queued_process(run_id, progress)
    from pipeline.runs import train

    return train.queued_process(run_id, progress)


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
    parent = lifecycle.record(
        client, tracking.experiment_id(client, base.experiment), f"{sweep.group_name(base.run_name)} ({kind}, "
        f"{len(configs)} runs)", {names.TAG_SWEEP: kind, names.TAG_SWEEP_SPACE: json.dumps(space),
                                  names.TAG_USER: tracking.user(client),
                                  names.TAG_NOTE: f"{kind.capitalize()} sweep of {len(configs)} runs over {summary}."})
    ids = [submit(c, parent=parent, client=client) for c in configs]
    lifecycle.set_tags(client, parent, {names.TAG_SWEEP_RUNS: ",".join(ids)})
    return parent, ids


def get(client: MlflowClient, run_id: str) -> Run:
    """The run, or a JobError naming the store when there is none."""
    try:
        return client.get_run(run_id)
    except MlflowException:
        raise JobError(f"no run {run_id} in {settings.tracking_uri()}") from None


def cancel(run_id: str, client: MlflowClient | None = None) -> str:
    """Cancel a queue run; returns what happened, in words for the person who asked."""
    client = client or tracking.connect()
    run = get(client, run_id)
    status = run.info.status
    if status not in names.ACTIVE:
        return f"run {run_id} already ended {status}; nothing to cancel"
    if names.TAG_QUEUED not in run.data.tags:
        raise JobError(f"run {run_id} was not started by the queue; stop it where it runs (Ctrl-C)")
    if status == names.SCHEDULED and lifecycle.claim(client, run_id, CANCEL_OWNER, lifecycle.attempt_of(run)):
        lifecycle.finish(client, run_id, names.KILLED, "cancelled before it started")
        return f"run {run_id} removed from the queue: it ends KILLED without starting"
    reason = orphan_reason(run)
    if reason:  # nobody would act on the request: end it here
        lifecycle.finish(client, run_id, names.KILLED, f"cancelled; {reason}")
        return f"run {run_id} ended KILLED ({reason})"
    lifecycle.set_tags(client, run_id, {names.TAG_CANCEL: f"{time.time():.3f}"})
    return (f"run {run_id}: stop requested; its worker stops it within seconds and it ends KILLED, "
            "keeping what it logged")


def retry(client: MlflowClient, run_id: str) -> int | None:
    """Requeue a run that died (not for bad input or a diverged loss) while it has attempts left;
    its new attempt number, or None."""
    run = client.get_run(run_id)
    if not lifecycle.retries_left(run) or names.TAG_QUEUED not in run.data.tags:
        return None
    return lifecycle.requeue(client, run_id, run.data.tags.get(names.TAG_ERROR) or "it died", automatic=True)


def resume(run_id: str, client: MlflowClient | None = None) -> str:
    """Queue a FAILED or KILLED run again: a worker continues it from its checkpoint, in the same run."""
    client = client or tracking.connect()
    run = get(client, run_id)
    status = run.info.status
    if status not in names.RESUMABLE:
        raise JobError(f"run {run_id} is {status}; only a FAILED or KILLED run can be resumed")
    if names.TAG_SWEEP in run.data.tags or not run.data.params:
        raise JobError(f"run {run_id} trained nothing itself (a sweep's parent?); resume its runs instead")
    try:
        lifecycle.config_of(client, run)
    except ConfigError as e:
        raise JobError(f"run {run_id} cannot be resumed: {e}") from None
    why = run.data.tags.get(names.TAG_ERROR) or status
    attempt = lifecycle.requeue(client, run_id, f"resumed by hand after: {why}", automatic=False)
    if attempt is None:
        return f"run {run_id} was already requeued"
    return f"run {run_id} queued again as attempt {attempt}: a worker continues it from its last checkpoint"
