"""The worker as a real process against a temporary store: runs finish, cancel, crash, survive a
kill -9 of the worker, run two at once, and resume from their checkpoints after kill -9 of their
training process or of the worker. Tiny digits runs; `--burst` wherever the test allows.

Run: .venv/bin/python -m pytest tests/test_worker.py (about three minutes on two CPU cores).
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from pipeline import names
from pipeline import settings
from pipeline.queue import jobs
from pipeline.runs import tracking
from pipeline.training import engine, models
from pipeline.config import RunConfig

EXPERIMENT = "queue-worker"
# on the CPU even where there is a GPU: resumed runs are compared bit for bit with in-process ones
QUICK = RunConfig(dataset="digits", model="mlp", epochs=1, experiment=EXPERIMENT, device="cpu")
LONG = dataclasses.replace(QUICK, epochs=2000)  # minutes of work: stopped long before it ends
TRAIN_IMAGES = 1295  # digits' training split


@pytest.fixture(scope="module")
def client(store, tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:  # restored afterwards, not removed
        env.setenv("RUNBOARD_LOG_DIR", str(tmp_path_factory.mktemp("worker-logs")))
        yield tracking.connect()


class Queue:
    """One test's own queue: its runs go to its own experiment, and its workers (`--experiment`) train
    and reap only those, whatever other tests left queued."""

    def __init__(self, client, experiment: str):
        self.client, self.experiment = client, experiment

    def submit(self, config: RunConfig) -> str:
        return jobs.submit(dataclasses.replace(config, experiment=self.experiment), client=self.client)

    def _command(self, flags: tuple[str, ...]) -> list[str]:
        # an explicit concurrency spares the worker importing torch to count GPUs
        concurrency = () if "--concurrency" in flags else ("--concurrency", "1")
        return [sys.executable, "-m", "pipeline", "worker", "--experiment", self.experiment, *concurrency, *flags]

    def worker(self, *flags: str, env: dict | None = None) -> subprocess.Popen:
        """`python -m pipeline worker` in the background, on the test store (its env is inherited)."""
        return subprocess.Popen(self._command(flags), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **(env or {})})

    def burst(self, *flags: str, timeout: float = 240, env: dict | None = None) -> str:
        done = subprocess.run(self._command(("--burst", *flags)), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr


@pytest.fixture
def queue(client, request) -> Queue:
    return Queue(client, f"{EXPERIMENT}-{request.node.name}")


def wait_for(check, timeout: float = 120, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {check.__doc__ or check}")


def training(client, run_id: str) -> bool:
    """the run is RUNNING with a first train_loss_step point"""
    run = client.get_run(run_id)
    return run.info.status == "RUNNING" and names.TRAIN_LOSS_STEP in run.data.metrics


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    return out


def process_gone(client, run_id: str) -> bool:
    """the run's training process (its pid, as the worker tagged it) has exited"""
    pid = int(client.get_run(run_id).data.tags[names.TAG_PID])
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_submitted_run_trains_to_finished_with_its_log(queue, client, tmp_path):
    other = Queue(client, f"{queue.experiment}-other").submit(QUICK)  # another test's run: not this worker's
    run_id = queue.submit(dataclasses.replace(QUICK, run_name="queued-quick"))
    out = queue.burst()
    assert "after starting 1 run(s)" in out
    assert client.get_run(other).info.status == "SCHEDULED"
    jobs.cancel(other, client)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED", run.data.tags.get(names.TAG_ERROR)
    assert run.data.tags[names.TAG_WORKER] and names.TAG_STARTED in run.data.tags
    assert names.TEST_ACCURACY in run.data.metrics and run.info.run_name == "queued-quick"
    assert {a.path for a in client.list_artifacts(run_id, "logs")} == {"logs/train.log"}
    log = open(client.download_artifacts(run_id, "logs/train.log", str(tmp_path))).read()
    assert f"--run-id {run_id}" in log and "finished" in log
    assert not (settings.log_dir() / run_id).exists()  # the local copy goes once uploaded


def test_cancel_a_running_run_ends_it_killed_keeping_its_metrics(queue, client):
    run_id = queue.submit(LONG)
    w = queue.worker()
    try:
        wait_for(lambda: training(client, run_id))
        assert "stop requested" in jobs.cancel(run_id, client)
        wait_for(lambda: client.get_run(run_id).info.status == "KILLED", timeout=60)
    finally:
        out = stop(w)
    assert w.returncode == 0, out
    run = client.get_run(run_id)
    assert run.data.tags[names.TAG_ERROR].startswith("cancelled")
    assert len(client.get_metric_history(run_id, names.TRAIN_LOSS_STEP)) > 0  # what it logged is kept
    assert "logs/train.log" in {a.path for a in client.list_artifacts(run_id, "logs")}
    assert process_gone(client, run_id)


def test_a_resume_pressed_before_the_worker_saw_the_cancelled_process_exit_is_kept(queue, client):
    """The run ends itself KILLED when its process is stopped; a person can press Resume before the worker
    notices that process exit. The worker must leave the new attempt queued, then train it (a browser journey
    lost its resume this way on a busy machine: the worker ended the queued attempt KILLED)."""
    run_id = queue.submit(LONG)
    w = queue.worker()
    try:
        wait_for(lambda: training(client, run_id))
        w.send_signal(signal.SIGSTOP)  # the worker is slow to look: it sees the exit only after the resume
        os.kill(int(client.get_run(run_id).data.tags[names.TAG_PID]), signal.SIGTERM)
        # the stopped process saves its checkpoint and logs first: 20 s alone, over 60 s in a shuffled full run
        wait_for(lambda: client.get_run(run_id).info.status == "KILLED" and process_gone(client, run_id), timeout=240)
        assert "as attempt 2" in jobs.resume(run_id, client)
        w.send_signal(signal.SIGCONT)
        wait_for(lambda: training(client, run_id) and client.get_run(run_id).data.tags[names.TAG_ATTEMPT] == "2")
        jobs.cancel(run_id, client)
        wait_for(lambda: client.get_run(run_id).info.status == "KILLED", timeout=60)
    finally:
        w.send_signal(signal.SIGCONT)
        out = stop(w)
    assert w.returncode == 0, out
    assert "attempt 1 ended (exit code" in out and "attempt 2 is queued" in out, out
    assert client.get_run(run_id).data.tags[names.TAG_ATTEMPT] == "2"  # not a third, automatic one


def test_crashing_runs_end_failed_with_the_reason(queue, client, store):
    nan_weights = store / "nan-weights.pt"
    net = models.build("mlp", 1, (8, 8), 10)
    torch.save({k: torch.full_like(v, math.nan) for k, v in net.state_dict().items()}, nan_weights)
    diverges = queue.submit(dataclasses.replace(QUICK, weights=str(nan_weights)))
    folder = store / "data" / "doomed"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
    vanished = queue.submit(dataclasses.replace(QUICK, dataset="imagefolder:doomed"))
    folder.joinpath("a").rmdir(), folder.joinpath("b").rmdir(), folder.rmdir()  # gone before a worker starts it
    out = queue.burst()
    for run_id, reason in ((diverges, "loss became nan"), (vanished, "image folder not found")):
        run = client.get_run(run_id)
        assert run.info.status == "FAILED" and reason in run.data.tags[names.TAG_ERROR], out
        assert run.data.tags[names.TAG_TRACEBACK]
        assert "logs/train.log" in {a.path for a in client.list_artifacts(run_id, "logs")}


def test_a_killed_worker_leaves_no_run_running_and_the_queue_survives(queue, client):
    orphan = queue.submit(LONG)
    waiting = queue.submit(dataclasses.replace(QUICK, run_name="after-the-crash"))
    w = queue.worker()
    wait_for(lambda: training(client, orphan))
    w.kill()  # kill -9: no handler runs, nothing is cleaned up
    w.wait(timeout=10)
    wait_for(lambda: process_gone(client, orphan), timeout=10)  # its training process died with it
    assert client.get_run(orphan).info.status == "RUNNING"  # until a worker looks
    assert client.get_run(waiting).info.status == "SCHEDULED"
    queue.burst(env={"RUNBOARD_MAX_ATTEMPTS": "1"})  # no second attempt: it stays FAILED
    run = client.get_run(orphan)
    assert run.info.status == "FAILED" and "worker" in run.data.tags[names.TAG_ERROR]
    assert len(client.get_metric_history(orphan, names.TRAIN_LOSS_STEP)) > 0
    assert client.get_run(waiting).info.status == "FINISHED"


def test_two_runs_at_once_lose_no_metric_point(queue, client):
    configs = [dataclasses.replace(QUICK, epochs=2, batch_size=b, run_name=f"pair-{b}") for b in (32, 64)]
    run_ids = [queue.submit(c) for c in configs]
    queue.burst("--concurrency", "2")
    runs = [client.get_run(r) for r in run_ids]
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    a, b = runs
    started = [float(r.data.tags[names.TAG_STARTED]) * 1000 for r in runs]
    assert started[0] < b.info.end_time and started[1] < a.info.end_time  # they overlapped
    for run_id, config in zip(run_ids, configs):
        total = math.ceil(TRAIN_IMAGES / config.batch_size) * config.epochs
        steps = sorted(m.step for m in client.get_metric_history(run_id, names.TRAIN_LOSS_STEP))
        assert steps == list(range(1, total + 1))


def test_cold_stop_kills_running_runs_and_exits(queue, client):
    run_id = queue.submit(LONG)
    w = queue.worker()
    wait_for(lambda: training(client, run_id))
    w.send_signal(signal.SIGTERM)  # warm: it would wait for the run to end
    time.sleep(1.5)
    assert w.poll() is None and client.get_run(run_id).info.status == "RUNNING"
    out = stop(w)  # second signal: cold
    assert w.returncode == 0, out
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and "worker was shut down" in run.data.tags[names.TAG_ERROR]


def test_a_run_launched_on_an_idle_worker_starts_in_its_warm_spare(queue, client, tmp_path):
    w = queue.worker()
    try:
        spare_log = settings.log_dir() / "spare-0.log"
        wait_for(lambda: spare_log.exists() and "ready" in spare_log.read_text(), timeout=120)
        spare = int(spare_log.read_text().split()[1])
        t0 = time.monotonic()
        run_id = queue.submit(dataclasses.replace(QUICK, run_name="warm-start"))
        wait_for(lambda: training(client, run_id), timeout=60)
        print(f"submit -> RUNNING with a first {names.TRAIN_LOSS_STEP}: {time.monotonic() - t0:.1f} s (warm)")
        wait_for(lambda: client.get_run(run_id).info.status == "FINISHED", timeout=120)
        assert int(client.get_run(run_id).data.tags[names.TAG_PID]) == spare
        children = psutil.Process(w.pid).children()  # the next spare, warming up
    finally:
        out = stop(w)
    assert w.returncode == 0, out
    _, alive = psutil.wait_procs(children, timeout=60)
    assert not alive  # no spare outlives its worker
    log = open(client.download_artifacts(run_id, "logs/train.log", str(tmp_path))).read()
    assert f"--run-id {run_id}" in log and "finished" in log


# --- checkpoints and resume ------------------------------------------------------------------
RESUMABLE = dataclasses.replace(QUICK, epochs=6, batch_size=8, augment="strong", run_name="resumable")


@pytest.fixture(scope="module")
def uninterrupted():
    """The same run trained in one go, in this process: (val_loss per epoch, test accuracy)."""
    from pipeline.training import data as datasets

    result = engine.fit(RESUMABLE, datasets.load(RESUMABLE), progress=False)
    return [h[names.VAL_LOSS] for h in result.history], result.test.accuracy


def checkpointed(client, run_id: str, epoch: int):
    return lambda: int(client.get_run(run_id).data.tags.get(names.TAG_CHECKPOINT) or 0) >= epoch


def assert_seamless(client, run_id: str, config: RunConfig) -> None:
    """FINISHED, with one point per step for every epoch and every optimizer step."""
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED", run.data.tags.get(names.TAG_ERROR)
    total = math.ceil(TRAIN_IMAGES / config.batch_size) * config.epochs
    for key, last in ((names.TRAIN_LOSS_STEP, total), (names.VAL_LOSS, config.epochs), (names.LR, config.epochs)):
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == list(range(1, last + 1)), key


def test_a_run_killed_in_epoch_3_resumes_and_ends_as_if_never_killed(queue, client, uninterrupted, tmp_path):
    run_id = queue.submit(RESUMABLE)
    w = queue.worker()
    try:
        wait_for(checkpointed(client, run_id, 2), every=0.05)
        os.kill(int(client.get_run(run_id).data.tags[names.TAG_PID]), signal.SIGKILL)  # kill -9 in epoch 3
        wait_for(lambda: client.get_run(run_id).info.status == "FINISHED", timeout=120)
    finally:
        out = stop(w)
    assert "requeued as attempt 2" in out, out
    run = client.get_run(run_id)
    assert run.data.tags[names.TAG_ATTEMPT] == "2" and "SIGKILL" in run.data.tags[names.TAG_ATTEMPT_REASON]
    assert_seamless(client, run_id, RESUMABLE)
    val_losses, accuracy = uninterrupted
    history = sorted(client.get_metric_history(run_id, names.VAL_LOSS), key=lambda m: m.step)
    assert [m.value for m in history] == pytest.approx(val_losses, rel=1e-5)
    assert run.data.metrics[names.TEST_ACCURACY] == pytest.approx(accuracy, abs=1e-6)
    log = open(client.download_artifacts(run_id, "logs/train.log", str(tmp_path))).read()
    assert "# ---- attempt 2: the training process was killed by SIGKILL" in log
    assert log.count(f"--run-id {run_id}") == 2
    resumed_after = int(log.split("resumed from the checkpoint of epoch ")[1].split()[0])
    print(f"killed after epoch {resumed_after}'s checkpoint; resumed from it")
    assert 2 <= resumed_after < RESUMABLE.epochs


def test_a_run_killed_four_times_still_finishes_with_one_point_per_step(queue, client, uninterrupted):
    # seeded: the same kill times on every run. Each attempt lives at most 0.5 s after its process is
    # tagged, so 4 attempts train for 2 s at most, a fraction of the 6 epochs even where they run fast
    # (measured here: 0.6-3.4 s per epoch, 20 s for the run, at load 14)
    pick = random.Random(27)
    run_id = queue.submit(RESUMABLE)
    w = queue.worker(env={"RUNBOARD_MAX_ATTEMPTS": "10"})
    kills, killed = [], set()
    try:
        for _ in range(4):
            def new_attempt():
                """a new attempt's training process is running"""
                run = client.get_run(run_id)
                if run.info.status == "FINISHED":
                    return "finished"
                pid = run.data.tags.get(names.TAG_PID)
                return pid if run.info.status == "RUNNING" and pid and pid not in killed else None
            pid = wait_for(new_attempt, every=0.05)
            if pid == "finished":
                break
            delay = pick.uniform(0.0, 0.5)
            time.sleep(delay)
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                break
            killed.add(pid)
            kills.append(round(delay, 2))
        wait_for(lambda: client.get_run(run_id).info.status == "FINISHED", timeout=180)
    finally:
        out = stop(w)
    print(f"killed {len(kills)} times, each this many seconds into an attempt: {kills}")
    assert len(kills) == 4, out
    assert client.get_run(run_id).data.tags[names.TAG_ATTEMPT] == "5"
    assert_seamless(client, run_id, RESUMABLE)
    history = sorted(client.get_metric_history(run_id, names.VAL_LOSS), key=lambda m: m.step)
    assert [m.value for m in history] == pytest.approx(uninterrupted[0], rel=1e-5)


MIDWAY = dataclasses.replace(QUICK, model="cnn", epochs=3, batch_size=2, augment="strong", run_name="midway")


def test_a_run_killed_within_a_long_epoch_resumes_from_within_it(queue, client, tmp_path):
    from pipeline.training import data as datasets

    whole = engine.fit(MIDWAY, datasets.load(MIDWAY), progress=False)  # epochs of several seconds at batch 2
    per_epoch = math.ceil(TRAIN_IMAGES / MIDWAY.batch_size)
    run_id = queue.submit(MIDWAY)
    w = queue.worker(env={"RUNBOARD_CHECKPOINT_SECONDS": "1"})
    try:
        def within_epoch_2():
            """a checkpoint from within epoch 2 or later is uploaded"""
            step = int(client.get_run(run_id).data.tags.get(names.TAG_CHECKPOINT_STEP) or 0)
            return step > per_epoch and step % per_epoch
        wait_for(within_epoch_2, every=0.05)
        os.kill(int(client.get_run(run_id).data.tags[names.TAG_PID]), signal.SIGKILL)  # long before the next one
        wait_for(lambda: client.get_run(run_id).info.status == "FINISHED", timeout=180)
    finally:
        out = stop(w)
    assert "requeued as attempt 2" in out, out
    assert_seamless(client, run_id, MIDWAY)
    history = sorted(client.get_metric_history(run_id, names.VAL_LOSS), key=lambda m: m.step)
    assert [m.value for m in history] == pytest.approx([h[names.VAL_LOSS] for h in whole.history], rel=1e-5)
    assert client.get_run(run_id).data.metrics[names.TEST_ACCURACY] == pytest.approx(whole.test.accuracy, abs=1e-6)
    log = open(client.download_artifacts(run_id, "logs/train.log", str(tmp_path))).read()
    assert "resumed from the checkpoint within epoch" in log, log[-2000:]


def test_a_run_whose_worker_was_killed_resumes_when_a_worker_restarts(queue, client):
    run_id = queue.submit(RESUMABLE)
    w = queue.worker()
    wait_for(checkpointed(client, run_id, 1), every=0.05)
    w.kill()  # kill -9: its training process dies with it
    w.wait(timeout=10)
    wait_for(lambda: process_gone(client, run_id), timeout=10)
    out = queue.burst()  # a restarted worker: no manual action
    run = client.get_run(run_id)
    assert run.data.tags[names.TAG_ATTEMPT] == "2" and "worker" in run.data.tags[names.TAG_ATTEMPT_REASON], out
    assert_seamless(client, run_id, RESUMABLE)
