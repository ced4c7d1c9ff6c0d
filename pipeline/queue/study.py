"""Studies: an Optuna search (TPE or random; median or Hyperband pruning) whose trials are queue runs.

The study's run (tag runboard.kind=study) holds the search as tags and stays RUNNING while trials
are due. The driver is a step of every worker's loop (`drive`): it tops the study up to `parallel`
queued-or-running trials, sampling each from the trials so far, until `trials` were made, then
writes the summary and ends the study. It keeps no state of its own: any worker, or a restarted
one, drives any study. Trial number N is made by whoever first logs the param
runboard.study.trial.N on the study (MLflow refuses to change a param), so no trial is made twice
and never more than `trials`. Trials then run, die, resume and get cancelled like any queue run.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import time

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from pipeline import names
from pipeline.config import ConfigError, RunConfig
from pipeline.queue import jobs, sweep
from pipeline.runs import lifecycle, tracking, trials

MAX_TRIALS = 256
log = logging.getLogger("runboard.study")


# --- the search space ------------------------------------------------------------------------
def parse_spec(name: str, text: str) -> dict:
    """`NAME=SPEC` -> {"kind", "low", "high", "log", "choices"}: LOW:HIGH, LOW:HIGH:log or A,B,C.

    Every value is checked as a run would check it, so a range a run would refuse is refused here,
    naming the field; an integer field keeps integer bounds.
    """
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    if name not in fields or not fields[name].metadata["param"]:
        searchable = ", ".join(f for f, v in fields.items() if v.metadata["param"])
        raise ConfigError(f"--search {name}: not a field a study can search; one of {searchable}")
    text = text.strip()
    if ":" not in text:
        return {"kind": "choice", "choices": sweep.parse_values(name, text), "log": False}
    kind = type(fields[name].default)
    parts = text.split(":")
    log_scale = len(parts) == 3 and parts[2].strip().lower() == "log"
    if len(parts) not in (2, 3) or (len(parts) == 3 and not log_scale):
        raise ConfigError(f"--search {name}={text}: give LOW:HIGH, LOW:HIGH:log or A,B,C")
    if kind not in (int, float):
        raise ConfigError(f"--search {name}: a {kind.__name__} field takes a list of choices (A,B,C), not a range")
    low, high = (getattr(RunConfig.from_params({name: p.strip()}), name) for p in parts[:2])  # checked like a run's
    if not low < high:
        raise ConfigError(f"--search {name}={text}: LOW must be below HIGH")
    if log_scale and low <= 0:
        raise ConfigError(f"--search {name}={text}: a log range needs LOW > 0")
    return {"kind": kind.__name__, "low": low, "high": high, "log": log_scale}


def parse_search(items: list[str]) -> dict[str, dict]:
    """['lr=1e-4:1e-1:log', 'batch_size=32,64'] -> the space, in the order given."""
    space = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not spec.strip():
            raise ConfigError(f"--search {item!r}: give NAME=SPEC, e.g. lr=1e-4:1e-1:log")
        if name in space:
            raise ConfigError(f"--search {name}: given twice")
        space[name] = parse_spec(name, spec)
    if not space:
        raise ConfigError("a study needs at least one --search NAME=SPEC")
    return space


def describe(space: dict[str, dict]) -> str:
    """The space in one line, as the CLI and the note show it."""
    def one(name, s):
        if s["kind"] == "choice":
            return f"{name} in {{{', '.join(map(str, s['choices']))}}}"
        return f"{name} in [{s['low']:g}, {s['high']:g}]" + (" (log)" if s["log"] else "")
    return ", ".join(one(n, s) for n, s in space.items())


# --- queueing ----------------------------------------------------------------------------------
def submit(base: RunConfig, space: dict[str, dict], n_trials: int, parallel: int = 1,
           objective: str = names.VAL_ACCURACY, pruner: str = "median", sampler: str = "tpe",
           client: MlflowClient | None = None) -> str:
    """Queue a study: its run at once, and its first `parallel` trials; returns the study's run id."""
    checks = [(1 <= n_trials <= MAX_TRIALS, f"--trials must be from 1 to {MAX_TRIALS}, got {n_trials}"),
              (1 <= parallel, f"--parallel must be at least 1, got {parallel}"),
              (objective in trials.OBJECTIVES, f"--objective must be one of {', '.join(trials.OBJECTIVES)}; "
                                               f"got {objective!r}"),
              (pruner in trials.PRUNERS, f"--pruner must be one of {', '.join(trials.PRUNERS)}; got {pruner!r}"),
              (sampler in trials.SAMPLERS, f"--sampler must be one of {', '.join(trials.SAMPLERS)}; got {sampler!r}"),
              (bool(space), "a study needs at least one --search NAME=SPEC")]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if base.is_imagefolder and not base.imagefolder_path().is_dir():
        raise ConfigError(f"dataset image folder not found: {base.imagefolder_path()}")
    client = client or tracking.connect()
    name = base.run_name or sampler
    tags = {names.TAG_KIND: names.KIND_STUDY, names.TAG_SWEEP: names.KIND_STUDY,  # a group row, as a sweep's
            names.TAG_STUDY_SPACE: json.dumps(space),
            names.TAG_STUDY_BASE: json.dumps(base.to_params()), names.TAG_STUDY_TRIALS: str(n_trials),
            names.TAG_STUDY_PARALLEL: str(min(parallel, n_trials)), names.TAG_STUDY_OBJECTIVE: objective,
            names.TAG_STUDY_PRUNER: pruner, names.TAG_STUDY_SAMPLER: sampler, names.TAG_STUDY_SEED: str(base.seed),
            names.TAG_USER: tracking.user(client),
            names.TAG_NOTE: f"{sampler.upper() if sampler == 'tpe' else 'Random'} study of {n_trials} trials "
                            f"({pruner} pruner, {objective}) over {describe(space)}."}
    if base.register:
        tags[names.TAG_REGISTER] = base.register
    study_id = lifecycle.open_group(client, tracking.experiment_id(client, base.experiment),
                                    f"{name} (study, {n_trials} trials)", tags)
    drive_one(client, client.get_run(study_id))
    return study_id


def _base(client: MlflowClient, study: Run) -> RunConfig:
    tags = study.data.tags
    return RunConfig.from_params(json.loads(tags[names.TAG_STUDY_BASE]),
                                 experiment=client.get_experiment(study.info.experiment_id).name,
                                 register=tags.get(names.TAG_REGISTER, ""))


def _claim(client: MlflowClient, study_id: str, number: int) -> bool:
    try:
        claim = f"{lifecycle.process_key()} {time.time():.3f}"
        client.log_param(study_id, f"{names.PARAM_STUDY_TRIAL}.{number}", claim)
        return True
    except MlflowException:  # another driver made this trial
        return False


def _add_trial(client: MlflowClient, study: Run, setup: trials.Setup, number: int) -> str:
    """Sample trial `number` from the trials before it and queue it."""
    optuna_study = trials.as_study(setup, trials.frozen_trials(client, study, setup, upto=number), number)
    asked = optuna_study.ask(setup.distributions())
    base = _base(client, study)
    shown = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in asked.params.items())
    config = dataclasses.replace(base, **asked.params, run_name=f"{base.run_name or 'trial'}-{number:02d} {shown}")
    return jobs.submit(config, parent=study.info.run_id, client=client,
                       extra_tags={names.TAG_STUDY_ID: study.info.run_id, names.TAG_TRIAL: str(number),
                                   # queued by the worker, launched by whoever queued the study
                                   names.TAG_USER: study.data.tags.get(names.TAG_USER) or tracking.user(client)})


def drive_one(client: MlflowClient, study: Run) -> str:
    """One look at a RUNNING study: queue the trials it is due, or end it when all have ended.
    Returns what it did: "waiting", "queued N", "ended STATUS"."""
    setup = trials.Setup.of(study)
    taken = trials.claimed(study)
    runs = trials.trial_runs(client, study)
    now = time.time()
    active = [n for n in taken if (n in runs and trials.state_of(runs[n]) == "RUNNING")
              or (n not in runs and now - taken[n] <= trials.CLAIM_SECONDS)]
    free = min(setup.parallel - len(active), setup.trials - len(taken))
    made = 0
    for number in range(len(taken), len(taken) + max(free, 0)):
        if not _claim(client, study.info.run_id, number):
            break
        try:
            _add_trial(client, study, setup, number)
        except ConfigError as e:  # a sampled value a run refuses (cannot happen for a checked space): say so
            log.warning("study %s: trial %d could not be queued: %s", study.info.run_id, number, e)
        made += 1
        study = client.get_run(study.info.run_id)  # with its new claim: the next trial samples after it
    if not active and len(taken) >= setup.trials and not made:
        return f"ended {conclude(client, study)}"
    ended = sum(trials.state_of(r) != "RUNNING" for r in runs.values())
    if ended != int(study.data.tags.get(names.TAG_STUDY_SUMMED) or 0):  # a trial ended: trials.csv, best_value now
        write_summary(client, study)
        lifecycle.set_tags(client, study.info.run_id, {names.TAG_STUDY_SUMMED: ended})
    return f"queued {made}" if made else "waiting"


def drive(client: MlflowClient, experiment: str | None = None) -> int:
    """Drive every RUNNING study (of `experiment`, when given); how many are still running."""
    still = 0
    for study in jobs.running_studies(client, experiment):
        try:
            done = drive_one(client, study)
        except (KeyError, ValueError) as e:  # a study's tags edited by hand: end it rather than retry forever
            lifecycle.finish(client, study.info.run_id, names.FAILED, f"the study's settings cannot be read: {e}")
            continue
        still += not done.startswith("ended")
    return still


# --- the end -----------------------------------------------------------------------------------
def summary(client: MlflowClient, study: Run, final: bool = False) -> tuple[list[dict], dict[str, float], dict | None]:
    """(rows of trials.csv, importances, the best row or None) from the trials as they are now; `final`:
    the study ends, so a trial still unfinished (being cancelled, or never queued) counts FAIL."""
    import optuna

    setup = trials.Setup.of(study)
    frozen = trials.frozen_trials(client, study, setup)
    rows = []
    for number, t in enumerate(frozen):  # in number order (a trial gets its number once in a study)
        state = "FAIL" if final and t.state.name == "RUNNING" else t.state.name
        rows.append({"number": number, "run_id": t.user_attrs.get("run_id", ""), "state": state,
                     "value": t.value if t.value is not None else "", "epochs": t.user_attrs.get("epochs", 0),
                     **{k: t.params.get(k, "") for k in setup.space}})
    done = [t for t in frozen if t.state.name == "COMPLETE"]
    importances = {}
    if len(done) >= 2:
        try:
            importances = optuna.importance.get_param_importances(trials.as_study(setup, done))
        except (ValueError, RuntimeError):  # every trial had the same values: nothing to tell apart
            importances = {}
    scored = [r for r in rows if r["state"] == "COMPLETE"]
    pick = max if setup.direction == "maximize" else min
    best = pick(scored, key=lambda r: r["value"]) if scored else None
    return rows, {k: float(v) for k, v in importances.items()}, best


def write_summary(client: MlflowClient, study: Run, final: bool = False) -> tuple[list[dict], dict | None]:
    """study/trials.csv, study/importances.json, best_value and the best trial's tag, as of now."""
    setup = trials.Setup.of(study)
    rows, importances, best = summary(client, study, final)
    out = io.StringIO()
    writer = csv.DictWriter(out, ["number", "run_id", "state", "value", "epochs", *setup.space], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    study_id = study.info.run_id
    client.log_text(study_id, out.getvalue(), names.STUDY_TRIALS_CSV)
    client.log_text(study_id, json.dumps(importances, indent=1), names.STUDY_IMPORTANCES_JSON)
    if best is not None:
        client.log_metric(study_id, names.BEST_VALUE, float(best["value"]), step=len(rows))
        lifecycle.set_tags(client, study_id, {names.TAG_STUDY_BEST_RUN: best["run_id"]})
    return rows, best


def conclude(client: MlflowClient, study: Run) -> str:
    """Write the summary and end the study: FINISHED, or FAILED when no trial completed."""
    rows, best = write_summary(client, study, final=True)
    if best is None and not any(r["state"] == "PRUNED" for r in rows):
        first = next((r for r in rows if r["run_id"]), None)
        why = client.get_run(first["run_id"]).data.tags.get(names.TAG_ERROR, "") if first else ""
        reason = f"all {len(rows)} trials failed" + (f"; the first: {why}" if why else "")
        lifecycle.finish(client, study.info.run_id, names.FAILED, reason)
        return names.FAILED
    lifecycle.finish(client, study.info.run_id, names.FINISHED)
    return names.FINISHED


# --- actions -----------------------------------------------------------------------------------
def is_study(run: Run) -> bool:
    return run.data.tags.get(names.TAG_KIND) == names.KIND_STUDY


def cancel(run_id: str, client: MlflowClient | None = None) -> str:
    """Cancel a study (its queued trials end KILLED, its running ones are stopped) or any queue run."""
    client = client or tracking.connect()
    run = jobs.get(client, run_id)
    if not is_study(run):
        return jobs.cancel(run_id, client)
    if run.info.status not in names.ACTIVE:
        return f"study {run_id} already ended {run.info.status}; nothing to cancel"
    lifecycle.set_tags(client, run_id, {names.TAG_STUDY_TRIALS: len(trials.claimed(run))})  # no new trials
    stopped = [t for t in trials.trial_runs(client, run).values() if t.info.status in names.ACTIVE]
    for t in stopped:
        jobs.cancel(t.info.run_id, client)
    write_summary(client, client.get_run(run_id), final=True)
    lifecycle.finish(client, run_id, names.KILLED, "cancelled")
    return f"study {run_id} cancelled: {len(stopped)} trial(s) stopped or removed from the queue; it ends KILLED"


def extend(run_id: str, more: int, client: MlflowClient | None = None) -> str:
    """Give a study `more` trials; the sampler learns from all its earlier ones. It runs again if it ended."""
    client = client or tracking.connect()
    run = jobs.get(client, run_id)
    if not is_study(run):
        raise jobs.JobError(f"run {run_id} is not a study")
    if not 1 <= more <= MAX_TRIALS:
        raise ConfigError(f"more trials must be from 1 to {MAX_TRIALS}, got {more}")
    total = int(run.data.tags[names.TAG_STUDY_TRIALS]) + more
    if total > MAX_TRIALS:
        raise ConfigError(f"a study may run at most {MAX_TRIALS} trials; it would have {total}")
    lifecycle.set_tags(client, run_id, {names.TAG_STUDY_TRIALS: total})
    if run.info.status not in names.ACTIVE:
        lifecycle.reopen(client, run_id)
    drive_one(client, client.get_run(run_id))
    return f"study {run_id}: {more} more trial(s), {total} in all"
