"""The queue in MLflow without a worker process: submit, claim, cancel, sweeps, orphans. Run: make test."""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from pipeline.runs import lifecycle
from pipeline import names
from pipeline.queue import jobs, sweep
from pipeline.runs import tracking
from pipeline.config import ConfigError, RunConfig
from pipeline.queue.worker import FULL_POLL_SECONDS, Worker

EXPERIMENT = "queue-unit"
CONFIG = RunConfig(dataset="digits", model="mlp", epochs=1, experiment=EXPERIMENT)


@pytest.fixture(scope="module")
def client(store):
    return tracking.connect()


def submitted(client, **changes) -> str:
    return jobs.submit(dataclasses.replace(CONFIG, **changes), client=client)


def test_a_worker_limited_to_one_experiment_sees_only_its_runs(client):
    mine = submitted(client, experiment="queue-of-one-mine")
    theirs = submitted(client, experiment="queue-of-one-theirs")
    assert [r.info.run_id for r in jobs.queued(client, "queue-of-one-mine")] == [mine]
    assert [r.info.run_id for r in jobs.unfinished(client, "queue-of-one-mine")] == [mine]
    assert {mine, theirs} <= {r.info.run_id for r in jobs.queued(client)}  # no limit: every experiment's
    assert jobs.queued(client, "no-such-experiment") == []
    for run_id in (mine, theirs):
        jobs.cancel(run_id, client)


def test_submit_creates_a_scheduled_run_with_the_full_config(client):
    config = RunConfig(dataset="digits", model="cnn", epochs=3, lr=1e-2, experiment=EXPERIMENT,
                       run_name="queued-cnn", register="queued-model")
    run_id = jobs.submit(config, client=client)
    run = client.get_run(run_id)
    assert run.info.status == "SCHEDULED" and run.info.run_name == "queued-cnn"
    assert run.data.params == config.to_params()
    assert names.TAG_QUEUED in run.data.tags and run.data.tags[names.TAG_REGISTER] == "queued-model"
    assert (run.data.tags[names.TAG_SOURCE_NAME], run.data.tags[names.TAG_SOURCE_TYPE]) == ("runboard queue", "JOB")
    assert lifecycle.config_of(client, run) == config  # the worker rebuilds exactly what was submitted
    assert run_id in [r.info.run_id for r in jobs.queued(client)]
    jobs.cancel(run_id, client)


def test_a_queued_run_starts_from_its_id_alone(client):
    from pipeline.cli import _parser
    from pipeline.queue import launcher

    config = RunConfig(dataset="digits", model="mlp", lr=3e-4, weights="", run_name="a b; rm -rf /",
                       experiment="e x", register="m")
    run_id = jobs.submit(config, client=client)
    command = launcher.train_command(run_id)
    assert command == ["train", "--run-id", run_id]  # no user text reaches the process's arguments
    assert _parser().parse_args(command).run_id == run_id
    assert lifecycle.config_of(client, client.get_run(run_id)) == config  # the child rebuilds it from the run
    jobs.cancel(run_id, client)


def test_queue_is_oldest_first(client):
    first, second = submitted(client, run_name="first"), submitted(client, run_name="second")
    order = [r.info.run_id for r in jobs.queued(client)]
    assert order.index(first) < order.index(second)
    for run_id in (first, second):
        jobs.cancel(run_id, client)


def test_exactly_one_of_many_racing_claims_wins(client):
    run_id = submitted(client)
    wins, barrier = [], threading.Barrier(8)

    def race(i: int) -> None:
        barrier.wait()
        if lifecycle.claim(client, run_id, lifecycle.Claim(f"worker-{i}", lifecycle.process_key(), time.time())):
            wins.append(i)
    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert lifecycle.Claim.of(client.get_run(run_id)).owner == f"worker-{wins[0]}"
    client.set_terminated(run_id, "KILLED")


def test_cancel_a_queued_run_ends_it_killed_without_starting(client):
    run_id = submitted(client)
    assert "removed from the queue" in jobs.cancel(run_id, client)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.metrics == {}
    assert run.data.tags[names.TAG_ERROR] == "cancelled before it started"
    assert run_id not in [r.info.run_id for r in jobs.queued(client)]
    assert "already ended KILLED" in jobs.cancel(run_id, client)
    # a worker that saw it queued a moment earlier cannot take it any more
    assert not lifecycle.claim(client, run_id, lifecycle.Claim("late-worker", lifecycle.process_key(), time.time()))


def test_cancel_claims_the_current_attempt_of_a_queued_run(client):
    """The claim is what stops a worker that saw the run queued a moment earlier: it must be the cancel's own,
    on the attempt the run is on (a resumed run is on its second)."""
    run_id = submitted(client)
    jobs.cancel(run_id, client)
    claim = lifecycle.Claim.of(client.get_run(run_id))
    assert (claim.owner, claim.process) == (jobs.CANCEL_OWNER, lifecycle.process_key())
    assert "attempt 2" in jobs.resume(run_id, client)
    assert jobs.cancel(run_id, client) == f"run {run_id} removed from the queue: it ends KILLED without starting"
    run = client.get_run(run_id)
    assert lifecycle.attempt_of(run) == 2 and lifecycle.Claim.of(run).owner == jobs.CANCEL_OWNER


def test_cancelling_a_run_whose_worker_is_gone_ends_it_here_with_the_reason(client):
    """Nobody would act on a stop request: the cancel ends the run itself, KILLED, saying why."""
    run_id = orphan(client, lifecycle.process_key().rsplit("/", 2)[0] + "/999999/1.00", heartbeat_age=1)
    why = "its worker elsewhere:7 stopped (killed or crashed) while the run was in progress"
    assert jobs.cancel(run_id, client) == f"run {run_id} ended KILLED ({why})"
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags[names.TAG_ERROR] == f"cancelled; {why}"


def ended(client, status: str, reason: str = "", params: dict[str, str] | None = None) -> str:
    """A queue run (of CONFIG unless `params` are given) that ended `status`, with `reason` as its error if any."""
    params = CONFIG.to_params() if params is None else params
    run_id = lifecycle.schedule(client, tracking.experiment_id(client, EXPERIMENT), "ended", params,
                                {names.TAG_QUEUED: f"{time.time():.6f}"})
    lifecycle.finish(client, run_id, status, reason)
    return run_id


def test_resume_says_why_it_refuses_and_records_why_the_run_ended(client):
    bare = ended(client, names.FAILED, params={})  # no params and no sweep mark: nothing to continue
    with pytest.raises(jobs.JobError) as refused:
        jobs.resume(bare, client)
    assert str(refused.value) == f"run {bare} trained nothing itself (a sweep's parent?); resume its runs instead"
    broken = ended(client, names.FAILED, params={**CONFIG.to_params(), "model": "no-such-model"})
    with pytest.raises(jobs.JobError, match=rf"^run {broken} cannot be resumed: .*no-such-model"):
        jobs.resume(broken, client)
    for run_id, status, reason, after in ((ended(client, names.FAILED, "OSError: disk full"), names.FAILED,
                                           "OSError: disk full", "OSError: disk full"),
                                          (ended(client, names.KILLED), names.KILLED, "", "KILLED")):
        jobs.resume(run_id, client)
        history = client.get_run(run_id).data.tags[names.TAG_ATTEMPT_HISTORY]
        assert history == f"attempt 2 (by hand): resumed by hand after: {after}"
        jobs.cancel(run_id, client)


def test_an_automatic_retry_of_a_run_that_died_without_a_word_says_it_died(client, monkeypatch):
    monkeypatch.setenv("RUNBOARD_MAX_ATTEMPTS", "3")
    run_id = ended(client, names.FAILED)
    assert jobs.retry(client, run_id) == 2
    assert client.get_run(run_id).data.tags[names.TAG_ATTEMPT_REASON] == "it died"
    jobs.cancel(run_id, client)


def test_queue_requests_go_to_the_store_of_the_client_given(client, store, tmp_path):
    """The dashboard and the worker pass their own client (a server, a signed-in person): nothing may fall back to
    the environment's store."""
    from mlflow import MlflowClient

    from tests.planted import plain_folder

    uri = f"sqlite:///{tmp_path / 'other.db'}"
    other = MlflowClient(uri, registry_uri=uri)
    run_id = jobs.submit(CONFIG, client=other)
    parent, swept = jobs.submit_sweep([CONFIG, CONFIG], "grid", {"seed": [0, 0]}, client=other)
    plain_folder(store / "data" / "jobs-other-store", {"a": 3, "b": 3})
    audit = jobs.submit_audit(dataclasses.replace(CONFIG, dataset="imagefolder:jobs-other-store"), folds=2,
                              client=other)
    source = source_run(other, "queue-unit-prune")
    other.create_registered_model("jobs-prune-other")
    other.create_model_version("jobs-prune-other", f"runs:/{source}/model", source)
    pruning = jobs.submit_prune("models:/jobs-prune-other/1", "channels:0.5", client=other)
    for queued_id in (run_id, parent, *swept, audit, pruning):
        assert other.get_run(queued_id)
        with pytest.raises(jobs.JobError, match="no run"):
            jobs.get(client, queued_id)
    assert "removed from the queue" in jobs.cancel(run_id, other)
    assert "attempt 2" in jobs.resume(run_id, other)
    assert other.get_run(run_id).info.status == names.SCHEDULED


def test_cancel_refuses_unknown_and_non_queue_runs(client):
    with pytest.raises(jobs.JobError, match="no run"):
        jobs.cancel("0" * 32, client)
    running = client.create_run(tracking.experiment_id(client, EXPERIMENT)).info.run_id
    with pytest.raises(jobs.JobError, match="not started by the queue"):
        jobs.cancel(running, client)
    client.set_terminated(running, "FINISHED")
    assert "nothing to cancel" in jobs.cancel(running, client)


def test_cancel_a_running_run_asks_its_worker(client):
    run_id = submitted(client)
    assert lifecycle.claim(client, run_id, lifecycle.Claim("vm:1", lifecycle.process_key(), time.time()))  # a live owner: us
    client.update_run(run_id, "RUNNING")
    assert jobs.cancel(run_id, client) == (f"run {run_id}: stop requested; its worker stops it within seconds and it "
                                           "ends KILLED, keeping what it logged")
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and names.TAG_CANCEL in run.data.tags
    client.set_terminated(run_id, "KILLED")


def test_submit_refuses_a_missing_image_folder(client, store):
    with pytest.raises(ConfigError, match="image folder not found"):
        submitted(client, dataset="imagefolder:nowhere")


def orphan(client, process: str, heartbeat_age: float) -> str:
    run_id = submitted(client)
    now = time.time()
    assert lifecycle.claim(client, run_id, lifecycle.Claim("elsewhere:7", process, now - 3600))
    lifecycle.set_tags(client, run_id, {names.TAG_HEARTBEAT: f"{now - heartbeat_age:.0f}"})
    client.update_run(run_id, "RUNNING")
    return run_id


def test_a_worker_ends_runs_whose_worker_is_gone(client, monkeypatch):
    monkeypatch.setenv("RUNBOARD_MAX_ATTEMPTS", "1")  # no resume (tests/test_worker.py checks that one)
    far_silent = orphan(client, "other-machine/123/1.00", heartbeat_age=jobs.STALE_SECONDS + 30)
    far_alive = orphan(client, "other-machine/123/1.00", heartbeat_age=1)
    here_dead = orphan(client, lifecycle.process_key().rsplit("/", 2)[0] + "/999999/1.00", heartbeat_age=1)
    Worker(concurrency=1).reap_orphans()
    for run_id, reason in ((far_silent, "sent no heartbeat"), (here_dead, "stopped")):
        run = client.get_run(run_id)
        assert run.info.status == "FAILED" and reason in run.data.tags[names.TAG_ERROR]
    assert client.get_run(far_alive).info.status == "RUNNING"  # its worker may still be training it
    client.set_terminated(far_alive, "KILLED")


def test_grid_and_random_sweeps():
    space = {"lr": sweep.parse_values("lr", "1e-3, 1e-2"), "batch_size": sweep.parse_values("batch_size", "32,64"),
             "optimizer": sweep.parse_values("optimizer", "sgd, adamw, sgd")}
    configs = sweep.build(CONFIG, "grid", space)
    assert len(configs) == 8 and len({tuple(c.to_params().items()) for c in configs}) == 8
    assert configs[0].run_name == "sweep-01 lr=0.001 batch_size=32 optimizer=sgd"
    drawn = sweep.build(CONFIG, "random", space, n=5, seed=1)
    assert len(drawn) == 5 and all(1e-3 <= c.lr <= 1e-2 for c in drawn)
    assert drawn == sweep.build(CONFIG, "random", space, n=5, seed=1)  # seeded: repeatable
    with pytest.raises(ConfigError, match="lr must be > 0"):
        sweep.parse_values("lr", "1e-3, -1")
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        sweep.parse_values("optimizer", "lion")


def test_submit_sweep_groups_runs_under_a_parent(client):
    configs = sweep.build(CONFIG, "grid", {"lr": [1e-3, 1e-2], "batch_size": [32], "seed": [0, 1]})
    parent, run_ids = jobs.submit_sweep(configs, "grid", {"lr": [1e-3, 1e-2], "batch_size": [32], "seed": [0, 1]},
                                        client=client)
    assert len(run_ids) == 4
    p = client.get_run(parent)
    assert p.info.status == "FINISHED" and p.data.tags[names.TAG_SWEEP] == "grid"
    assert p.info.run_name == "sweep (grid, 4 runs)" and configs[0].run_name.startswith("sweep-01 ")  # not the 1st run's
    assert p.data.tags[names.TAG_SWEEP_RUNS].split(",") == run_ids
    assert p.data.tags[names.TAG_NOTE] == ("Grid sweep of 4 runs over lr in [0.001, 0.01], batch_size in [32], "
                                           "seed in [0, 1].")
    for run_id, config in zip(run_ids, configs):
        run = client.get_run(run_id)
        assert run.info.status == "SCHEDULED" and run.data.tags[names.TAG_PARENT] == parent
        assert run.data.tags[names.TAG_SWEEP_ID] == parent and run.data.params == config.to_params()
        jobs.cancel(run_id, client)
    with pytest.raises(ConfigError, match="at most"):
        jobs.submit_sweep([CONFIG] * (jobs.MAX_SWEEP_RUNS + 1), "grid", {}, client=client)


# --- orphan_reason on hand-made runs: each boundary of the 60 s rule, and who is named ----------
NOW = 10_000.0
FAR = "other-machine/123/1.00"  # a process of another machine: only its heartbeat tells


def run_like(status="RUNNING", started=NOW, params=None, tags=None):
    """What orphan_reason reads of a run: status, start time (ms), params (the claim) and tags."""
    from types import SimpleNamespace

    return SimpleNamespace(info=SimpleNamespace(status=status, start_time=int(started * 1000)),
                           data=SimpleNamespace(params=params or {}, tags=tags or {}))


def claimed(owner: str, process: str, at: float | None, **tags) -> dict:
    raw = f"{owner} {process}" + (f" {at:.3f}" if at is not None else "")
    return dict(params={names.PARAM_CLAIM: raw}, tags=tags)


def test_an_unclaimed_run_is_an_orphan_only_when_running_past_60_s():
    reason = "its submission was interrupted before it was queued"
    assert jobs.orphan_reason(run_like(started=NOW - 61), NOW) == reason
    assert jobs.orphan_reason(run_like(started=NOW - 60), NOW) is None  # more than 60 s, not 60
    assert jobs.orphan_reason(run_like(started=NOW - 5), NOW) is None
    assert jobs.orphan_reason(run_like("SCHEDULED", started=NOW - 1000), NOW) is None  # waiting in the queue


def test_a_cancel_claim_ends_a_run_only_after_60_s():
    for age, expected in ((61, "cancelled before it started"), (60, None), (10, None)):
        run = run_like("SCHEDULED", **claimed(jobs.CANCEL_OWNER, FAR, NOW - age))
        assert jobs.orphan_reason(run, NOW) == expected, age


def test_a_silent_worker_is_named_with_the_seconds_since_its_last_beat():
    run = run_like(**claimed("w1", FAR, NOW - 500, **{names.TAG_HEARTBEAT: f"{NOW - 61}"}))
    assert jobs.orphan_reason(run, NOW) == "its worker w1 sent no heartbeat for 61 s"
    run = run_like(**claimed("w1", FAR, NOW - 500, **{names.TAG_HEARTBEAT: f"{NOW - 60}"}))
    assert jobs.orphan_reason(run, NOW) is None
    recent_claim = run_like(**claimed("w1", FAR, NOW - 30))  # no beat yet: the claim's time counts
    assert jobs.orphan_reason(recent_claim, NOW) is None
    no_time = run_like(**claimed("w1", FAR, None))  # a claim without a time counts from 0
    assert jobs.orphan_reason(no_time, NOW) == "its worker w1 sent no heartbeat for 10000 s"


def test_a_run_adopted_by_a_restarted_worker_is_judged_by_the_adopter():
    dead_here = lifecycle.process_key().rsplit("/", 2)[0] + "/999999/1.00"
    adopted = claimed("w1", FAR, NOW - 1, **{names.TAG_HEARTBEAT: f"{NOW}", names.TAG_ADOPTED: f"w2 {dead_here}"})
    assert jobs.orphan_reason(run_like(**adopted), NOW) == ("its worker w2 stopped (killed or crashed) while the "
                                                            "run was in progress")
    own = claimed("w1", dead_here, NOW - 1, **{names.TAG_HEARTBEAT: f"{NOW}"})
    assert jobs.orphan_reason(run_like(**own), NOW).startswith("its worker w1 stopped")
    alive = claimed("w1", dead_here, NOW - 1, **{names.TAG_HEARTBEAT: f"{NOW}", names.TAG_ADOPTED: f"w2 {FAR}"})
    assert jobs.orphan_reason(run_like(**alive), NOW) is None  # the adopter lives elsewhere and beats


# --- sweeps: the parent's words and place, and the limits ----------------------------------------
def test_a_sweeps_parent_says_what_it_swept_where_its_runs_are(client):
    space = {"lr": [1e-3, 1e-2]}
    configs = sweep.build(dataclasses.replace(CONFIG, experiment="queue-unit-sweep"), "grid", space)
    parent, run_ids = jobs.submit_sweep(configs, "grid", space, client=client)
    p = client.get_run(parent)
    assert p.data.tags[names.TAG_NOTE] == "Grid sweep of 2 runs over lr in [0.001, 0.01]."
    assert p.data.tags[names.TAG_SWEEP_SPACE] == '{"lr": [0.001, 0.01]}'
    assert p.info.experiment_id == client.get_run(run_ids[0]).info.experiment_id
    assert client.get_experiment(p.info.experiment_id).name == "queue-unit-sweep"
    one_parent, one = jobs.submit_sweep(configs[:1], "grid", {"lr": [1e-3]}, client=client)  # a sweep of one
    assert len(one) == 1 and client.get_run(one_parent).info.run_name == "sweep (grid, 1 runs)"
    for run_id in run_ids + one:
        jobs.cancel(run_id, client)
    with pytest.raises(ConfigError) as refused:
        jobs.submit_sweep([], "grid", {}, client=client)
    assert str(refused.value) == "a sweep needs at least one run"


def test_a_sweep_of_exactly_the_limit_is_queued(client):
    configs = [dataclasses.replace(CONFIG, experiment="queue-unit-limit", seed=i) for i in range(jobs.MAX_SWEEP_RUNS)]
    _, run_ids = jobs.submit_sweep(configs, "grid", {"seed": list(range(jobs.MAX_SWEEP_RUNS))}, client=client)
    assert len(run_ids) == jobs.MAX_SWEEP_RUNS
    for run_id in run_ids:
        jobs.cancel(run_id, client)


# --- what a worker's loop reads and starts --------------------------------------------------------
def test_running_studies_are_the_running_study_runs_of_the_experiment_asked(client):
    first = tracking.experiment_id(client, "queue-unit-studies")
    other = tracking.experiment_id(client, "queue-unit-studies-2")
    running = client.create_run(first, tags={names.TAG_KIND: names.KIND_STUDY}).info.run_id
    elsewhere = client.create_run(other, tags={names.TAG_KIND: names.KIND_STUDY}).info.run_id
    ended = client.create_run(first, tags={names.TAG_KIND: names.KIND_STUDY}).info.run_id
    client.set_terminated(ended, "FINISHED")
    plain = client.create_run(first).info.run_id  # running, but not a study
    everywhere = {r.info.run_id for r in jobs.running_studies(client)}
    assert {running, elsewhere} <= everywhere and not {ended, plain} & everywhere
    assert [r.info.run_id for r in jobs.running_studies(client, "queue-unit-studies")] == [running]
    assert jobs.running_studies(client, "no-such-experiment") == []
    for run_id in (running, elsewhere, plain):
        client.set_terminated(run_id, "KILLED")


def test_a_queued_process_runs_the_trainer_or_the_pruner_by_the_runs_kind(client, monkeypatch):
    from pipeline.runs import train
    from pipeline.serving import prune

    calls = []
    monkeypatch.setattr(train, "queued_process", lambda run_id, progress: calls.append(("train", run_id, progress))
                        or 3)
    monkeypatch.setattr(prune, "queued_process", lambda run_id, progress: calls.append(("prune", run_id, progress))
                        or 4)
    experiment = tracking.experiment_id(client, EXPERIMENT)
    pruning = client.create_run(experiment, tags={names.TAG_KIND: names.KIND_PRUNE}).info.run_id
    training = client.create_run(experiment).info.run_id
    assert jobs.queued_process(pruning, progress=False) == 4
    assert jobs.queued_process(training) == 3
    assert calls == [("prune", pruning, False), ("train", training, True)]
    for run_id in (pruning, training):
        client.set_terminated(run_id, "KILLED")


# --- audits and prune jobs: what the queued run holds, and the refusals before one exists ---------
def test_a_queued_audit_holds_its_config_folds_and_folder(client, store):
    from pipeline.runs.audit_request import AuditError
    from tests.planted import plain_folder

    plain_folder(store / "data" / "jobs-audit", {"a": 3, "b": 3, "c": 2})
    config = RunConfig(dataset="imagefolder:jobs-audit", model="mlp", epochs=1, experiment="queue-unit-audit")
    run_id = jobs.submit_audit(config, folds=2, client=client)
    run = client.get_run(run_id)
    assert run.info.status == "SCHEDULED" and run.info.run_name == "audit of jobs-audit"
    assert run.data.params == {**config.to_params(), names.PARAM_FOLDS: "2"}
    tags = run.data.tags
    assert tags[names.TAG_KIND] == names.KIND_AUDIT and tags[names.TAG_AUDIT_FOLDER] == "jobs-audit"
    assert (tags[names.TAG_SOURCE_NAME], tags[names.TAG_SOURCE_TYPE]) == ("runboard queue", "JOB")
    assert abs(float(tags[names.TAG_QUEUED]) - time.time()) < 60 and tags[names.TAG_USER]
    assert client.get_experiment(run.info.experiment_id).name == "queue-unit-audit"
    named = jobs.submit_audit(dataclasses.replace(config, run_name="my audit"), folds=2, client=client)
    assert client.get_run(named).info.run_name == "my audit"
    before = len(client.search_runs([run.info.experiment_id]))
    with pytest.raises(AuditError, match=r"too few in c \(2\)"):
        jobs.submit_audit(config, folds=3, client=client)
    assert len(client.search_runs([run.info.experiment_id])) == before  # refused before a run exists
    for queued_id in (run_id, named):
        jobs.cancel(queued_id, client)


def source_run(client, experiment: str, **tags) -> str:
    """A finished run with a training config, as a registered version's source (no model file needed to queue)."""
    run_id = client.create_run(tracking.experiment_id(client, experiment), tags=tags).info.run_id
    for key, value in dataclasses.replace(CONFIG, epochs=7, lr=0.02).to_params().items():
        client.log_param(run_id, key, value)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def test_a_queued_prune_job_holds_the_pinned_source_and_its_plan(client):
    source = source_run(client, "queue-unit-prune")
    client.create_registered_model("jobs-prune")
    version = client.create_model_version("jobs-prune", f"runs:/{source}/model", source)
    client.set_registered_model_alias("jobs-prune", "candidate", version.version)
    run_id = jobs.submit_prune("models:/jobs-prune@candidate", "channels:0.5", epochs=3, int8=False,
                               register="jobs-pruned", max_drop=0.02, client=client)
    run = client.get_run(run_id)
    pinned = f"models:/jobs-prune/{version.version}"  # @candidate may move before a worker starts
    assert run.info.status == "SCHEDULED"
    assert run.info.run_name == f"jobs-prune v{version.version} @candidate · channels:0.5"
    assert client.get_experiment(run.info.experiment_id).name == names.EXPORT_EXPERIMENT
    tags = run.data.tags
    assert (tags[names.TAG_KIND], tags[names.TAG_EXPORT_SOURCE]) == (names.KIND_PRUNE, pinned)
    assert tags[names.TAG_VARIANT] == tags[names.TAG_PRUNE] == "channels:0.5"
    assert (tags[names.TAG_SOURCE_NAME], tags[names.TAG_SOURCE_TYPE]) == ("runboard queue", "JOB")
    assert abs(float(tags[names.TAG_QUEUED]) - time.time()) < 60 and tags[names.TAG_USER]
    params = run.data.params
    assert (params["epochs"], params["lr"], params["model"]) == ("3", "0.02", "mlp")
    assert {k: params[k] for k in names.PRUNE_PARAMS} == {
        "source": pinned, "prune": "channels:0.5", "int8": "False", "register_as": "jobs-pruned",
        "max_accuracy_drop": "0.02"}
    assert params["variant"] == "channels:0.5"
    from pipeline.serving import prune

    plain_id = jobs.submit_prune("models:/jobs-prune@candidate", "weights:0.5", client=client)
    plain = client.get_run(plain_id).data.params
    assert (plain["epochs"], plain["int8"], plain["register_as"]) == ("2", "True", "")  # the defaults
    assert plain["max_accuracy_drop"] == str(prune.MAX_DROP)
    for queued_id in (run_id, plain_id):
        jobs.cancel(queued_id, client)
    client.delete_registered_model("jobs-prune")  # the Registry and Playground tests list every model


def test_a_prune_job_is_refused_before_a_run_exists(client):
    from pipeline.serving.prune import PruneError

    variant_run = source_run(client, "queue-unit-prune", **{names.TAG_EXPORT_SOURCE: "models:/x/1"})
    no_dataset = client.create_run(tracking.experiment_id(client, "queue-unit-prune")).info.run_id
    client.log_param(no_dataset, "model", "mlp")
    client.set_terminated(no_dataset, "FINISHED")
    client.create_registered_model("jobs-refused")
    for run_id in (variant_run, no_dataset):
        client.create_model_version("jobs-refused", f"runs:/{run_id}/model", run_id)
    client.create_model_version("jobs-refused", "file:///nowhere/model")  # a version with no source run
    exports = tracking.experiment_id(client, names.EXPORT_EXPERIMENT)
    before = len(client.search_runs([exports]))
    for uri, why in (("models:/jobs-refused/1", "jobs-refused v1 is an exported variant or has no source run: "
                                                "prune its source model instead"),
                     ("models:/jobs-refused/3", "jobs-refused v3 is an exported variant or has no source run"),
                     ("models:/jobs-refused/2", "jobs-refused v2: its source run has no dataset param, so there "
                                                "is nothing to fine-tune on")):
        with pytest.raises(jobs.JobError) as refused:
            jobs.submit_prune(uri, "weights:0.5", client=client)
        assert str(refused.value).startswith(why), str(refused.value)
    with pytest.raises(PruneError):
        jobs.submit_prune("models:/jobs-refused/2", "channels:2", client=client)
    assert len(client.search_runs([exports])) == before
    client.delete_registered_model("jobs-refused")  # the Registry and Playground tests list every model


class GatedLauncher:
    """A launcher that cannot launch while `why` is set (as the Ray launcher when Ray refuses its token)."""

    def __init__(self, why: str | None):
        self.why, self.started = why, []

    def blocked(self) -> str | None:
        return self.why

    def start(self, run_id: str, slot: int = 0):
        self.started.append(run_id)
        raise OSError("not started in this test")  # the worker then ends the claimed run FAILED, saying so

    def warm(self, slot: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_blocked_launcher_leaves_runs_queued_and_takes_them_once_unblocked(client, caplog):
    run_id = submitted(client, experiment="queue-gated")
    launcher = GatedLauncher("Ray at http://head:8265 refused the job: token authentication is on")
    worker = Worker(concurrency=1, launcher=launcher, experiment="queue-gated")
    assert worker.work(burst=True) == 0
    run = client.get_run(run_id)
    assert run.info.status == names.SCHEDULED and lifecycle.Claim.of(run) is None and not launcher.started
    assert "not taking queued runs: Ray at http://head:8265 refused the job" in caplog.text
    assert run.data.tags[names.TAG_BLOCKED] == launcher.why  # the dashboard's queue says why it waits
    later = submitted(client, experiment="queue-gated")
    worker._told_at -= FULL_POLL_SECONDS  # the next look at the queue is due
    worker._start_queued(None)
    assert client.get_run(later).data.tags[names.TAG_BLOCKED] == launcher.why  # queued meanwhile: told too
    launcher.why = None
    assert worker._start_queued(None) == 2 and launcher.started == [run_id, later]  # at once, oldest first
    assert client.get_run(run_id).info.status == names.FAILED  # (this launcher's start fails: the slot frees)
    assert not [r for r in (run_id, later) if names.TAG_BLOCKED in client.get_run(r).data.tags]
    fresh = submitted(client, experiment="queue-gated")
    lifecycle.set_tags(client, fresh, {names.TAG_BLOCKED: "left by a worker stopped while blocked"})
    Worker(concurrency=1, launcher=GatedLauncher(None), experiment="queue-gated")._start_queued(None)
    assert names.TAG_BLOCKED not in client.get_run(fresh).data.tags  # a worker starting unblocked clears it


class StoppingJob:
    """A training process that, asked to stop, ends its run FAILED (a signal that broke a step) and exits 1."""

    def __init__(self, client, run_id: str, log_path):
        self.client, self.run_id, self.log_path, self.pid, self.code = client, run_id, log_path, None, None

    def poll(self):
        return self.code

    def terminate(self):
        lifecycle.finish(self.client, self.run_id, names.FAILED, "RuntimeError: DataLoader worker exited")
        self.code = 1

    kill = terminate

    def close(self):
        pass


def test_a_run_that_fails_while_the_worker_stops_it_ends_killed_and_is_not_requeued(client, tmp_path):
    run_id = submitted(client, experiment="queue-stopping")
    launcher = GatedLauncher(None)
    launcher.start = lambda run_id, slot=0: StoppingJob(client, run_id, tmp_path / "train.log")
    worker = Worker(concurrency=1, launcher=launcher, experiment="queue-stopping")
    assert worker._start_queued(None) == 1
    worker.stopping = "cold"
    worker._pass_on_stops()
    worker._check_children()
    run = client.get_run(run_id)
    assert run.info.status == names.KILLED and run.data.tags[names.TAG_ERROR] == "stopped: the worker was shut down"
    assert not jobs.queued(client, "queue-stopping")  # a stop asked for is no failure to retry
