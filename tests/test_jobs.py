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
from pipeline.queue.worker import Worker

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
    assert "stop requested" in jobs.cancel(run_id, client)
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
    for run_id, config in zip(run_ids, configs):
        run = client.get_run(run_id)
        assert run.info.status == "SCHEDULED" and run.data.tags[names.TAG_PARENT] == parent
        assert run.data.tags[names.TAG_SWEEP_ID] == parent and run.data.params == config.to_params()
        jobs.cancel(run_id, client)
    with pytest.raises(ConfigError, match="at most"):
        jobs.submit_sweep([CONFIG] * (jobs.MAX_SWEEP_RUNS + 1), "grid", {}, client=client)
