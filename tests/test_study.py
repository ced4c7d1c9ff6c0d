"""Studies against a real store and real workers: the CLI's refusals, a 6-trial study whose worker is
killed with kill -9 midway and that still ends with exactly 6 trials (some pruned), a study whose
every trial diverges, and Continue and Cancel. Tiny digits/mlp trials of up to 3 epochs.

Run: .venv/bin/python -m pytest tests/test_study.py (a few minutes on two busy CPU cores: 8 trials train).
"""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline import cli, names
from pipeline.config import ConfigError, RunConfig
from pipeline.queue import study
from pipeline.runs import tracking

EXPERIMENT = "studies"
BASE = RunConfig(dataset="digits", model="mlp", epochs=3, device="cpu", experiment=EXPERIMENT, run_name="s")
SPACE = {"lr": {"kind": "float", "low": 1e-5, "high": 0.3, "log": True},
         "batch_size": {"kind": "choice", "choices": [32, 64, 128], "log": False}}
DIVERGES = RunConfig(dataset="digits", model="mlp", epochs=1, device="cpu", optimizer="sgd", schedule="none",
                     experiment=EXPERIMENT, run_name="diverges")


@pytest.fixture(scope="module")
def client(store, tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RUNBOARD_LOG_DIR", str(tmp_path_factory.mktemp("study-logs")))
        yield tracking.connect()


def worker(*flags: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "worker", "--experiment", EXPERIMENT, "--concurrency", "2", *flags]


def wait_for(check, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {check.__doc__}")


def trial_runs(client, study_id: str):
    return client.search_runs([client.get_run(study_id).info.experiment_id],
                              f"tags.\"{names.TAG_STUDY_ID}\" = '{study_id}'")


def trials_csv(client, study_id: str, tmp_path) -> list[dict]:
    path = client.download_artifacts(study_id, names.STUDY_TRIALS_CSV, str(tmp_path))
    return list(csv.DictReader(open(path)))


# --- the command line ----------------------------------------------------------------------------
@pytest.mark.parametrize("spec, named", [("lr=0:1", "lr"), ("colour=1:2", "colour"),
                                         ("optimizer=sgd,rmsprop", "optimizer"), ("batch_size=0:64", "batch_size"),
                                         ("optimizer=0:1", "optimizer"), ("lr=1e-3", "lr"), ("lr=0:1e-2:log", "lr")])
def test_the_cli_refuses_a_bad_spec_with_exit_2_naming_the_field_and_queues_nothing(client, capsys, spec, named):
    before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    if spec == "lr=1e-3":  # a single choice is allowed; a range with one end is not
        spec = "lr=1e-3:"
    code = cli.main(["study", "--trials", "4", "--search", spec, "--experiment", EXPERIMENT])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and named in err[0], err
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == before


def test_bad_counts_are_refused_too(client, capsys):
    assert cli.main(["study", "--trials", "0", "--search", "lr=1e-3:1e-1", "--experiment", EXPERIMENT]) == 2
    assert "--trials" in capsys.readouterr().err


def test_specs_keep_integers_integers_and_parse_log_and_choices():
    assert study.parse_spec("batch_size", "32:128") == {"kind": "int", "low": 32, "high": 128, "log": False}
    assert study.parse_spec("lr", "1e-5:1:log") == {"kind": "float", "low": 1e-5, "high": 1.0, "log": True}
    assert study.parse_spec("optimizer", "sgd, adamw") == {"kind": "choice", "choices": ["sgd", "adamw"], "log": False}
    assert study.parse_spec("flip", "true,false")["choices"] == [True, False]
    with pytest.raises(ConfigError, match="flip"):
        study.parse_spec("flip", "0:1")


# --- on the queue ----------------------------------------------------------------------------------
ENDED: dict = {}  # the 6-trial study as its worker left it: the continue test changes it, and tests run in any order


@pytest.fixture(scope="module")
def ran(client, tmp_path_factory):
    """A 6-trial study and a study whose every trial diverges, trained by a worker that is killed with
    kill -9 once the first trial trains, then by a restarted one: (study id, diverging study id, log)."""
    study_id = study.submit(BASE, SPACE, 6, parallel=2, client=client)
    failing = study.submit(DIVERGES, {"lr": {"kind": "float", "low": 8.0, "high": 10.0, "log": False}}, 2,
                           parallel=2, client=client)

    def training():
        """a trial of the study has logged a training step"""
        return any(names.TRAIN_LOSS_STEP in r.data.metrics and r.info.status == "RUNNING"
                   for r in trial_runs(client, study_id))

    first = subprocess.Popen(worker(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(training)
    finally:
        first.send_signal(signal.SIGKILL)  # no handler runs; its training processes die with it
        first.communicate(timeout=30)
    done = subprocess.run(worker("--burst"), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ENDED.update(status=client.get_run(study_id).info.status, trials=trial_runs(client, study_id),
                 csv=trials_csv(client, study_id, tmp_path_factory.mktemp("ended")))
    return study_id, failing, done.stdout + done.stderr


def test_a_killed_worker_leaves_the_study_to_end_with_exactly_its_trials(ran):
    study_id, _, out = ran
    assert ENDED["status"] == "FINISHED", out[-3000:]
    runs = ENDED["trials"]
    numbers = sorted(int(r.data.tags[names.TAG_TRIAL]) for r in runs)
    assert numbers == list(range(6))  # never more than N, no number twice
    assert all(r.data.tags[names.TAG_PARENT] == study_id for r in runs)
    assert any(r.data.tags.get(names.TAG_ATTEMPT) == "2" for r in runs), "the killed trial resumed"
    rows = ENDED["csv"]
    assert list(rows[0]) == ["number", "run_id", "state", "value", "epochs", "lr", "batch_size"]
    assert [int(r["number"]) for r in rows] == list(range(6))
    assert {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"}


def test_pruned_trials_end_finished_tagged_with_the_epoch_and_their_curves_stop_there(client, ran, tmp_path):
    study_id, _, out = ran
    pruned = [r for r in trial_runs(client, study_id) if names.TAG_PRUNED in r.data.tags]
    assert pruned, out[-3000:]
    for r in pruned:
        epoch = int(r.data.tags[names.TAG_PRUNED])
        assert r.info.status == "FINISHED" and 1 <= epoch < BASE.epochs
        steps = [m.step for m in client.get_metric_history(r.info.run_id, names.VAL_ACCURACY)]
        assert max(steps) == epoch
    states = {r["run_id"]: r["state"] for r in trials_csv(client, study_id, tmp_path)}
    assert all(states[r.info.run_id] == "PRUNED" for r in pruned)


def test_the_study_keeps_its_best_value_best_run_and_importances(client, ran, tmp_path):
    study_id, _, _ = ran
    run = client.get_run(study_id)
    rows = [r for r in trials_csv(client, study_id, tmp_path) if r["state"] == "COMPLETE"]
    best = max(rows, key=lambda r: float(r["value"]))
    assert run.data.metrics[names.BEST_VALUE] == pytest.approx(float(best["value"]))
    assert run.data.tags[names.TAG_STUDY_BEST_RUN] == best["run_id"]
    path = client.download_artifacts(study_id, names.STUDY_IMPORTANCES_JSON, str(tmp_path))
    importances = json.loads(open(path).read())
    if len(rows) >= 2:
        assert set(importances) == {"lr", "batch_size"} and sum(importances.values()) == pytest.approx(1.0)


def test_a_study_whose_every_trial_fails_ends_failed_with_the_reason_in_one_line(client, ran, tmp_path):
    _, failing, out = ran
    run = client.get_run(failing)
    assert run.info.status == "FAILED", out[-3000:]
    reason = run.data.tags[names.TAG_ERROR]
    assert "all 2 trials failed" in reason and "loss became nan" in reason and "\n" not in reason
    assert {r["state"] for r in trials_csv(client, failing, tmp_path)} == {"FAIL"}


def test_continue_adds_trials_that_sample_after_all_earlier_ones_and_cancel_stops_them(client, ran, tmp_path):
    study_id, _, _ = ran
    assert cli.main(["continue", study_id, "--trials", "3"]) == 0
    run = client.get_run(study_id)
    assert run.info.status == "RUNNING" and run.data.tags[names.TAG_STUDY_TRIALS] == "9"
    queued = [r for r in trial_runs(client, study_id) if r.info.status == "SCHEDULED"]
    assert sorted(int(r.data.tags[names.TAG_TRIAL]) for r in queued) == [6, 7]  # parallel 2
    assert cli.main(["cancel", study_id]) == 0
    assert client.get_run(study_id).info.status == "KILLED"
    assert all(client.get_run(r.info.run_id).info.status == "KILLED" for r in queued)
    assert len(trials_csv(client, study_id, tmp_path)) == 8
    assert study.drive(client, EXPERIMENT) == 0  # a worker's study step finds nothing left to drive
    assert len(trial_runs(client, study_id)) == 8


# --- the pruning decision, on trials written straight into the store -----------------------------
def _trial(client, study_id: str, number: int, lr: float, values: list[float], status: str | None) -> str:
    """A trial run as the driver queues it, with these per-epoch val_accuracy values logged (and ended)."""
    from mlflow.entities import Metric

    from pipeline.queue import jobs

    client.log_param(study_id, f"{names.PARAM_STUDY_TRIAL}.{number}", f"test {time.time():.3f}")
    run_id = jobs.submit(RunConfig(**{**BASE.__dict__, "lr": lr, "experiment": "pruning"}), parent=study_id,
                         client=client, extra_tags={names.TAG_STUDY_ID: study_id, names.TAG_TRIAL: str(number)})
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(names.VAL_ACCURACY, v, now, e) for e, v in enumerate(values, 1)])
    if status:
        client.set_terminated(run_id, status)
    return run_id


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_a_trial_behind_the_completed_ones_is_pruned_and_one_ahead_is_not(client, pruner):
    from pipeline.runs import trials

    base = RunConfig(**{**BASE.__dict__, "experiment": "pruning"})
    study_id = study.submit(base, {"lr": SPACE["lr"]}, 9, parallel=1, pruner=pruner, client=client)
    for run in trial_runs(client, study_id):  # the one submit queued: ended, out of the way (no worker here)
        client.set_terminated(run.info.run_id, "KILLED")
    numbers = iter(range(1, 9))
    for lr, values in ((1e-3, [0.80, 0.90, 0.95]), (2e-3, [0.82, 0.91, 0.96]), (3e-3, [0.78, 0.88, 0.94])):
        _trial(client, study_id, next(numbers), lr, values, "FINISHED")
    bad = _trial(client, study_id, next(numbers), 1e-5, [0.10], None)
    good = _trial(client, study_id, next(numbers), 1e-3, [0.85], None)
    decide = {run_id: trials.TrialPruning(client, client.get_run(run_id))(1) for run_id in (bad, good)}
    assert decide[good] is False
    if pruner == "hyperband":  # its brackets split trials by a hash of the study's id: only its notes are sure
        assert names.TAG_TRIAL_ATTRS in client.get_run(bad).data.tags
        return
    assert decide[bad] is True
    assert client.get_run(bad).data.tags[names.TAG_PRUNED] == "1"
    assert names.TAG_PRUNED not in client.get_run(good).data.tags
    assert names.TAG_TRIAL_ATTRS in client.get_run(good).data.tags  # the pruner's notes, for the next decisions
