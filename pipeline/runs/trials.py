"""A study's trials as Optuna sees them, rebuilt from MLflow: the one place Optuna meets the store.

MLflow is the study's only storage. Each trial is a queue run under the study's run; its params,
its status, its per-epoch validation metric and its pruner notes (a tag) are all Optuna needs, so
the driver (which samples) and each trial (which asks the pruner after every epoch) rebuild an
in-memory Optuna study from MLflow when they need it. Nothing but MLflow is opened, wherever the
trial runs (a Ray node, behind `mlflow server`), and nothing is lost when a process dies.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities import Run

from pipeline import names
from pipeline.runs import lifecycle

OBJECTIVES = {names.VAL_ACCURACY: "maximize", names.VAL_LOSS: "minimize"}
PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random")
MEDIAN_STARTUP_TRIALS = 2   # completed trials before the median pruner stops any: small studies prune too
CLAIM_SECONDS = 60.0        # a trial number claimed this long ago with no run behind it counts as failed


def _optuna():
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)  # one line per trial added is noise in a worker's log
    return optuna


@dataclass(frozen=True)
class Setup:
    """What a study's run says about its search: space, objective, pruner, sampler, budget."""
    study_id: str
    space: dict[str, dict]
    objective: str
    pruner: str
    sampler: str
    seed: int
    trials: int
    parallel: int
    epochs: int

    @classmethod
    def of(cls, run: Run) -> "Setup":
        tags = run.data.tags
        base = json.loads(tags[names.TAG_STUDY_BASE])
        return cls(run.info.run_id, json.loads(tags[names.TAG_STUDY_SPACE]), tags[names.TAG_STUDY_OBJECTIVE],
                   tags[names.TAG_STUDY_PRUNER], tags[names.TAG_STUDY_SAMPLER], int(tags[names.TAG_STUDY_SEED]),
                   int(tags[names.TAG_STUDY_TRIALS]), int(tags[names.TAG_STUDY_PARALLEL]),
                   int(base.get("epochs", 5)))

    @property
    def tpe_startup(self) -> int:
        """Random trials before TPE models the rest: Optuna's 10 would leave a 16-trial study little to learn."""
        return max(3, min(10, self.trials // 4))

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective]

    def distributions(self) -> dict:
        d = _optuna().distributions
        out = {}
        for name, s in self.space.items():
            if s["kind"] == "choice":
                out[name] = d.CategoricalDistribution(s["choices"])
            elif s["kind"] == "int":
                out[name] = d.IntDistribution(int(s["low"]), int(s["high"]), log=s["log"])
            else:
                out[name] = d.FloatDistribution(float(s["low"]), float(s["high"]), log=s["log"])
        return out

    def make_pruner(self):
        pruners = _optuna().pruners
        if self.pruner == "median":
            return pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=0)
        if self.pruner == "hyperband":
            return pruners.HyperbandPruner(min_resource=1, max_resource=max(self.epochs, 1), reduction_factor=3)
        return pruners.NopPruner()

    def make_sampler(self, number: int):
        """Trial `number`'s sampler: seeded with seed + number, so parallel asks differ and replays match."""
        samplers = _optuna().samplers
        if self.sampler == "random":
            return samplers.RandomSampler(seed=self.seed + number)
        return samplers.TPESampler(seed=self.seed + number, n_startup_trials=self.tpe_startup)


def trial_runs(client: MlflowClient, study: Run) -> dict[int, Run]:
    """The study's trial runs by trial number."""
    runs = client.search_runs([study.info.experiment_id],
                              f'tags."{names.TAG_STUDY_ID}" = \'{study.info.run_id}\'', max_results=5000)
    return {int(r.data.tags[names.TAG_TRIAL]): r for r in runs}


def claimed(study: Run) -> dict[int, float]:
    """Trial numbers taken so far (see study.py: a param per number), with when they were taken."""
    prefix = names.PARAM_STUDY_TRIAL + "."
    out = {}
    for key, value in study.data.params.items():
        if key.startswith(prefix):
            out[int(key[len(prefix):])] = float(value.split(" ")[-1])
    return out


def state_of(run: Run) -> str:
    """COMPLETE, PRUNED, FAIL or RUNNING (queued, training, or failed and about to be resumed)."""
    status = run.info.status
    if status == names.FINISHED:
        return "PRUNED" if names.TAG_PRUNED in run.data.tags else "COMPLETE"
    if status in names.ACTIVE or lifecycle.retries_left(run) > 0:
        return "RUNNING"
    return "FAIL"


def _param_value(spec: dict, text: str):
    if spec["kind"] == "choice":
        return next((c for c in spec["choices"] if str(c) == text), spec["choices"][0])
    return int(text) if spec["kind"] == "int" else float(text)


def history(client: MlflowClient, run_id: str, metric: str) -> dict[int, float]:
    """A run's per-epoch values of `metric`: {epoch: value}."""
    return {m.step: m.value for m in client.get_metric_history(run_id, metric)}


def frozen_trials(client: MlflowClient, study: Run, setup: Setup, upto: int | None = None,
                  skip: str | None = None) -> list:
    """Optuna FrozenTrials 0..upto-1 (all claimed ones by default), in number order, from MLflow.

    A number claimed with no run counts RUNNING for CLAIM_SECONDS, then FAIL; `skip` (a run id) is left
    out, for the trial that is asking about itself.
    """
    optuna = _optuna()
    TrialState = optuna.trial.TrialState
    runs, taken, distributions = trial_runs(client, study), claimed(study), setup.distributions()
    upto = (max(taken) + 1 if taken else 0) if upto is None else upto
    out = []
    for number in range(upto):
        run = runs.get(number)
        if run is None or run.info.run_id == skip:
            stale = time.time() - taken.get(number, 0) > CLAIM_SECONDS and run is None
            out.append(optuna.trial.create_trial(state=TrialState.FAIL if stale else TrialState.RUNNING,
                                                 params={}, distributions={}))
            continue
        state = state_of(run)
        params = {k: _param_value(s, run.data.params[k]) for k, s in setup.space.items() if k in run.data.params}
        values = history(client, run.info.run_id, setup.objective) if state != "RUNNING" else {}
        attrs = json.loads(run.data.tags.get(names.TAG_TRIAL_ATTRS) or "{}")
        value = values[max(values)] if values else None
        if state == "COMPLETE" and value is None:
            state = "FAIL"  # finished without the objective: nothing to learn from
        out.append(optuna.trial.create_trial(
            state=TrialState[state], value=value if state in ("COMPLETE", "PRUNED") else None,
            params=params, distributions={k: distributions[k] for k in params}, intermediate_values=values,
            system_attrs=attrs, user_attrs={"run_id": run.info.run_id, "epochs": len(values)}))
    return out


def as_study(setup: Setup, trials: list, number: int = 0):
    """An in-memory Optuna study holding `trials`, with the setup's pruner and trial `number`'s sampler."""
    optuna = _optuna()
    study = optuna.create_study(study_name=setup.study_id, direction=setup.direction,
                                sampler=setup.make_sampler(number), pruner=setup.make_pruner())
    study.add_trials(trials)
    return study


class TrialPruning:
    """Called by the trainer after each epoch of a trial: True when the study's pruner stops it there.

    The decision is Optuna's, on a study rebuilt from MLflow with this trial's validation values so
    far; the pruner's notes go back to MLflow as a tag, for the other trials' decisions.
    """

    def __init__(self, client: MlflowClient, run: Run):
        self.client, self.run_id = client, run.info.run_id
        self.number = int(run.data.tags[names.TAG_TRIAL])
        self.study_run = client.get_run(run.data.tags[names.TAG_STUDY_ID])
        self.setup = Setup.of(self.study_run)
        self.pruned_at: int | None = None

    def __call__(self, epoch: int) -> bool:
        if self.setup.pruner == "none":
            return False
        optuna = _optuna()
        study_run = self.client.get_run(self.setup.study_id)  # its claims now
        # every trial of the study, later numbers too (they may have ended first): this one's place is refilled below
        trials = frozen_trials(self.client, study_run, self.setup, upto=max(self.number + 1, len(claimed(study_run))),
                               skip=self.run_id)
        run = self.client.get_run(self.run_id)
        params = {k: _param_value(s, run.data.params[k]) for k, s in self.setup.space.items() if k in run.data.params}
        distributions = self.setup.distributions()
        me = optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING, params=params,
            distributions={k: distributions[k] for k in params},
            intermediate_values=history(self.client, self.run_id, self.setup.objective),
            system_attrs=json.loads(run.data.tags.get(names.TAG_TRIAL_ATTRS) or "{}"))
        trials[self.number] = me
        study = as_study(self.setup, trials, self.number)
        frozen = study.get_trials(deepcopy=False)[self.number]
        prune = bool(study.pruner.prune(study, frozen)) if frozen.intermediate_values else False
        tags = {names.TAG_TRIAL_ATTRS: json.dumps(study.get_trials(deepcopy=False)[self.number].system_attrs)}
        if prune:
            tags[names.TAG_PRUNED] = epoch
            self.pruned_at = epoch
        lifecycle.set_tags(self.client, self.run_id, tags)
        return prune
