"""Checkpoints and attempts without a worker: the engine continues exactly from a saved state, a
checkpoint round-trips through the run's artifacts, a resumed attempt logs no step twice, and
requeueing (by hand or automatically) follows the rules. Tiny digits runs, in process.

Run: .venv/bin/python -m pytest tests/test_resume.py (the real kill -9 checks are in test_worker_resume.py).
"""
from __future__ import annotations

import dataclasses
import io
import threading
import time

import pytest
import torch

from pipeline import names, settings
from pipeline.config import RunConfig
from pipeline.queue import jobs
from pipeline.runs import checkpoints, lifecycle, tracking
from pipeline.training import data as datasets
from pipeline.training import engine

EXPERIMENT = "resume-unit"
CONFIG = RunConfig(dataset="digits", model="mlp", epochs=4, batch_size=128, augment="strong", patience=3,
                   experiment=EXPERIMENT, device="cpu")  # bit-exact resumes: the CPU's deterministic kernels


@pytest.fixture(scope="module")
def client(store):
    return tracking.connect()


def _round_trip(state: dict) -> dict:
    """What a checkpoint file gives back: torch.save, then torch.load with weights_only (no pickle)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_a_run_resumed_from_epoch_2_ends_exactly_as_the_uninterrupted_one(capsys):
    data = datasets.load(CONFIG)
    states = []
    whole = engine.fit(CONFIG, data, progress=False, checkpoint=lambda s: states.append(_round_trip(s)))
    assert [s["epoch"] for s in states] == [1, 2, 3, 4] and states[-1]["stopped"]
    # killed in epoch 3: the next attempt starts from epoch 2's checkpoint, and says so on the console
    resumed = engine.fit(CONFIG, data, resume=states[1])
    out, err = capsys.readouterr()
    assert f"resumed from the checkpoint of epoch 2 (step {states[1]['step']})" in out
    total = CONFIG.epochs * states[0]["steps_per_epoch"]
    assert f"| {total}/{total} [" in err  # the bar went on from the checkpoint's step, not from 0
    assert [h[names.VAL_LOSS] for h in resumed.history] == [h[names.VAL_LOSS] for h in whole.history]
    assert resumed.test.accuracy == whole.test.accuracy and resumed.best_epoch == whole.best_epoch
    # a checkpoint of the finished loop resumes to the end at once
    assert engine.fit(CONFIG, data, progress=False, resume=states[-1]).test.accuracy == whole.test.accuracy


def test_a_run_resumed_from_the_middle_of_an_epoch_ends_exactly_as_the_uninterrupted_one(capsys):
    data = datasets.load(CONFIG)
    states = []  # checkpoint_every=0: a state after every step, as a long epoch gets every few minutes
    began = time.perf_counter()
    whole = engine.fit(CONFIG, data, progress=False, checkpoint=lambda s: states.append(_round_trip(s)),
                       checkpoint_every=0)
    took = time.perf_counter() - began
    per_epoch = states[0]["steps_per_epoch"]
    cut = next(s for s in states if s.get("partial") and s["partial"]["epoch"] == 3)
    half = next(s for s in states if s.get("partial") and s["partial"]["epoch"] == 3
                and s["partial"]["steps"] == per_epoch // 2)
    assert cut["epoch"] == 2 and cut["step"] == 2 * per_epoch + 1 and cut["partial"]["steps"] == 1
    assert len([s for s in states if not s.get("partial")]) == CONFIG.epochs  # and every epoch's end
    assert 0 < half["partial"]["seconds"] < took and half["stopped"] is False
    untimed = [{k: v for k, v in h.items() if k not in (names.EPOCH_SECONDS, names.THROUGHPUT)} for h in whole.history]
    for state in (cut, half):  # killed one step into epoch 3, and halfway through it
        again = []
        resumed = engine.fit(CONFIG, data, resume=state, checkpoint=lambda s: again.append(s), checkpoint_every=0)
        later = [s for s in states if s["step"] > state["step"]]  # its own checkpoints are the same as the first's
        assert [(s["epoch"], s["step"], (s.get("partial") or {}).get("steps")) for s in again] == \
            [(s["epoch"], s["step"], (s.get("partial") or {}).get("steps")) for s in later]
        assert f"resumed from the checkpoint within epoch 3 (step {state['step']})" in capsys.readouterr().out
        assert [{k: v for k, v in h.items() if k not in (names.EPOCH_SECONDS, names.THROUGHPUT)}
                for h in resumed.history] == untimed  # train loss and accuracy of the cut epoch too
        assert resumed.test.accuracy == whole.test.accuracy and resumed.best_epoch == whole.best_epoch
        assert resumed.history[2][names.EPOCH_SECONDS] >= state["partial"]["seconds"]  # the cut epoch's time adds up


def test_a_gpu_runs_checkpoint_goes_on_on_a_cpu_worker_the_same_way_each_time(capsys):
    """On a mixed Ray cluster a run cut off on a GPU node may resume on a CPU one. Its augmentation stream, a
    CUDA generator's 16 bytes, cannot go into a CPU generator (torch raises "RNG state is wrong size"): it seeds
    it instead, the resume line says so, and two such resumes end the same. Within an epoch too."""
    data = datasets.load(CONFIG)
    states = []
    engine.fit(CONFIG, data, progress=False, checkpoint=lambda s: states.append(_round_trip(s)), checkpoint_every=0)
    cut = next(s for s in states if s.get("partial") and s["partial"]["epoch"] == 3)
    from_gpu = {**cut, "rng": {**cut["rng"], "augment": torch.arange(16, dtype=torch.uint8),
                               "cuda": torch.zeros(16, dtype=torch.uint8)},
                "partial": {**cut["partial"], "augment": torch.arange(16, 32, dtype=torch.uint8)}}
    ends = [engine.fit(CONFIG, data, resume=_round_trip(from_gpu)) for _ in range(2)]  # each read from its file
    out = capsys.readouterr().out
    assert out.count("written on another kind of device than cpu, so augmentation goes on from a stream") == 2
    assert [h[names.VAL_LOSS] for h in ends[0].history] == [h[names.VAL_LOSS] for h in ends[1].history]
    assert len(ends[0].history) == CONFIG.epochs and ends[0].test.accuracy == ends[1].test.accuracy


def test_no_checkpoint_within_an_epoch_before_checkpoint_every_seconds():
    data = datasets.load(CONFIG)
    states = []
    engine.fit(CONFIG, data, progress=False, checkpoint=states.append, checkpoint_every=3600)
    assert [(s["epoch"], s.get("partial")) for s in states] == [(e, None) for e in range(1, CONFIG.epochs + 1)]


def test_a_checkpoint_every_few_seconds_is_a_setting(monkeypatch):
    monkeypatch.setenv("RUNBOARD_CHECKPOINT_SECONDS", "0")
    assert settings.checkpoint_seconds() is None  # epoch ends only
    monkeypatch.setenv("RUNBOARD_CHECKPOINT_SECONDS", "-5")
    with pytest.raises(settings.SettingError, match="RUNBOARD_CHECKPOINT_SECONDS"):
        settings.checkpoint_seconds()
    monkeypatch.delenv("RUNBOARD_CHECKPOINT_SECONDS")
    assert settings.checkpoint_seconds() == 300


def test_a_checkpoint_of_other_data_is_refused():
    data = datasets.load(CONFIG)
    states = []
    engine.fit(dataclasses.replace(CONFIG, epochs=1), data, progress=False, checkpoint=states.append)
    with pytest.raises(engine.TrainingError, match="does not fit"):
        engine.fit(dataclasses.replace(CONFIG, batch_size=64), data, progress=False, resume=states[0])


class _HeldUploads:
    """The real MLflow client, whose artifact uploads wait until `release` is set."""

    def __init__(self, client):
        self.client, self.release = client, threading.Event()

    def __getattr__(self, name):
        return getattr(self.client, name)

    def log_artifact(self, *args, **kwargs):
        assert self.release.wait(60), "the upload was never released"
        return self.client.log_artifact(*args, **kwargs)


def test_checkpoints_are_the_runs_artifacts_in_two_slots_written_in_turn(client):
    run_id = jobs.submit(CONFIG, client=client)
    assert checkpoints.load(client, run_id) is None
    writer = checkpoints.CheckpointWriter(client, run_id)
    for epoch in (1, 2):
        writer({"epoch": epoch, "step": 10 * epoch, "weights": torch.full((3,), float(epoch)),
                "rng": torch.get_rng_state()})
        writer.wait()
        assert client.get_run(run_id).data.tags[names.TAG_CHECKPOINT_FILE] == checkpoints.SLOTS[epoch - 1]
    held = _HeldUploads(client)  # epoch 3's upload waits until epoch 4 has come, however fast the machine
    writer.client = held
    writer({"epoch": 3, "step": 30, "weights": torch.zeros(3)})  # while epoch 3's upload goes on, epoch 4's is skipped
    writer({"epoch": 4, "step": 40, "weights": torch.zeros(3)})
    held.release.set()
    writer.close()
    writer.client = client
    assert writer.skipped == 1 and client.get_run(run_id).data.tags[names.TAG_CHECKPOINT] == "3"
    # a resumed attempt writes first the slot it did not resume from
    writer = checkpoints.CheckpointWriter(client, run_id)
    writer({"epoch": 2, "step": 20, "weights": torch.full((3,), 2.0), "rng": torch.get_rng_state()})
    writer.close()
    assert sorted(a.path for a in client.list_artifacts(run_id, names.CHECKPOINT_DIR)) == list(checkpoints.SLOTS)
    state = checkpoints.load(client, run_id)
    assert state["epoch"] == 2 and state["weights"].tolist() == [2.0, 2.0, 2.0]
    tags = client.get_run(run_id).data.tags
    assert tags[names.TAG_CHECKPOINT] == "2" and tags[names.TAG_CHECKPOINT_FILE] == checkpoints.SLOTS[1]
    assert len(writer.timings) == 1 and writer.timings[-1]["bytes"] > 0
    jobs.cancel(run_id, client)


def test_an_upload_cut_off_by_a_kill_spares_the_complete_checkpoint(client, tmp_path):
    run_id = jobs.submit(CONFIG, client=client)
    writer = checkpoints.CheckpointWriter(client, run_id)
    writer({"epoch": 1, "step": 10, "weights": torch.ones(3)})
    writer.close()  # complete: checkpoints/a.pt, named by the tag
    buffer = io.BytesIO()
    torch.save({"epoch": 2, "weights": torch.full((3,), 2.0)}, buffer)
    cut = tmp_path / names.CHECKPOINT_SLOTS[1]
    cut.write_bytes(buffer.getvalue()[:40])  # the next upload, killed halfway: b.pt is half there, no tag yet
    client.log_artifact(run_id, str(cut), names.CHECKPOINT_DIR)
    assert checkpoints.load(client, run_id)["epoch"] == 1
    lifecycle.set_tags(client, run_id, {names.TAG_CHECKPOINT_FILE: checkpoints.SLOTS[1]})  # even if named
    assert checkpoints.load(client, run_id)["epoch"] == 1  # the other slot still reads
    jobs.cancel(run_id, client)


def test_a_resumed_attempt_logs_each_step_once(client):
    run_id = jobs.submit(CONFIG, client=client)
    dead = tracking.MlflowTracker(client, run_id)  # the dead attempt got past its checkpoint (step 3)
    for step in range(1, 6):
        dead.log_metrics({names.TRAIN_LOSS_STEP: step / 10}, step)
    dead.log_metrics({names.VAL_LOSS: 1.0}, 1)
    dead.flush()
    logged = checkpoints.logged_steps(client, run_id)
    assert logged == {names.TRAIN_LOSS_STEP: 5, names.VAL_LOSS: 1}
    again = checkpoints.ContinuingTracker(tracking.MlflowTracker(client, run_id), logged)
    for step in range(4, 9):  # resumed from step 3
        again.log_metrics({names.TRAIN_LOSS_STEP: step / 10}, step)
    again.log_metrics({names.VAL_LOSS: 0.5}, 2)
    again.flush()
    steps = [m.step for m in client.get_metric_history(run_id, names.TRAIN_LOSS_STEP)]
    assert sorted(steps) == list(range(1, 9))
    assert [m.step for m in client.get_metric_history(run_id, names.VAL_LOSS)] in ([1, 2], [2, 1])
    jobs.cancel(run_id, client)


def _failed(client, tags: dict | None = None) -> str:
    run_id = jobs.submit(CONFIG, client=client)
    assert lifecycle.claim(client, run_id, "worker:1")
    lifecycle.mark_running(client, run_id, {names.TAG_PID: 1})
    lifecycle.set_tags(client, run_id, tags or {})
    lifecycle.finish(client, run_id, names.FAILED, "the training process was killed by SIGKILL")
    return run_id


def test_a_dead_run_is_retried_up_to_the_limit_and_a_hopeless_one_never(client, monkeypatch):
    monkeypatch.setenv("RUNBOARD_MAX_ATTEMPTS", "2")
    run_id = _failed(client)
    assert jobs.retry(client, run_id) == 2
    run = client.get_run(run_id)
    assert run.info.status == names.SCHEDULED and lifecycle.attempt_of(run) == 2
    assert run.data.tags[names.TAG_RETRIES] == "1" and "SIGKILL" in run.data.tags[names.TAG_ATTEMPT_REASON]
    assert names.TAG_ERROR not in run.data.tags and names.TAG_PID not in run.data.tags
    assert lifecycle.Claim.of(run) is None  # attempt 2 is free to claim, once
    assert lifecycle.claim(client, run_id, "worker:2", 2) and not lifecycle.claim(client, run_id, "worker:3", 2)
    lifecycle.finish(client, run_id, names.FAILED, "killed again")
    assert jobs.retry(client, run_id) is None  # two attempts were all it had
    assert "attempt 2 (automatic)" in client.get_run(run_id).data.tags[names.TAG_ATTEMPT_HISTORY]
    # by hand it goes on, and the automatic count starts again
    assert "attempt 3" in jobs.resume(run_id, client)
    run = client.get_run(run_id)
    assert run.data.tags[names.TAG_RETRIES] == "0" and lifecycle.attempt_of(run) == 3
    assert lifecycle.requeue(client, run_id, "twice", automatic=False) is None  # not ended: nothing to do
    jobs.cancel(run_id, client)
    hopeless = _failed(client, {names.TAG_RETRY: "no"})  # bad input or a diverged loss
    assert jobs.retry(client, hopeless) is None


def test_resume_by_hand_refuses_what_cannot_resume(client):
    queued = jobs.submit(CONFIG, client=client)
    with pytest.raises(jobs.JobError, match="only a FAILED or KILLED run"):
        jobs.resume(queued, client)
    with pytest.raises(jobs.JobError, match="no run"):
        jobs.resume("0" * 32, client)
    jobs.cancel(queued, client)
    assert "attempt 2" in jobs.resume(queued, client)  # cancelled before it started: it may go again
    assert client.get_run(queued).info.status == names.SCHEDULED
    jobs.cancel(queued, client)


def test_retriable_failures():
    from pipeline.config import ConfigError

    assert lifecycle.retriable(RuntimeError("CUDA error: an illegal memory access"))
    assert not lifecycle.retriable(ConfigError("lr must be > 0"))
    assert not lifecycle.retriable(engine.TrainingError("loss became nan at step 3"))
    assert settings.max_attempts() >= 1


def test_every_attempts_log_ends_up_in_train_log(client, tmp_path):
    run_id = jobs.submit(CONFIG, client=client)
    first, second = tmp_path / "1" / names.LOG_NAME, tmp_path / "2" / names.LOG_NAME
    for path, text in ((first, "attempt one\n"), (second, "attempt two\n")):
        path.parent.mkdir()
        path.write_text(text)
    lifecycle.attach_log(client, run_id, first)
    lifecycle.set_tags(client, run_id, {names.TAG_ATTEMPT: 2, names.TAG_ATTEMPT_REASON: "killed"})
    lifecycle.attach_log(client, run_id, second)
    log = open(client.download_artifacts(run_id, "logs/train.log", str(tmp_path / "out"))).read()
    assert log.index("attempt one") < log.index("attempt 2: killed") < log.index("attempt two")
    jobs.cancel(run_id, client)


def test_the_resume_command(client, capsys):
    from pipeline import cli

    run_id = jobs.submit(CONFIG, client=client)
    assert cli.main(["resume", run_id]) == 2 and "only a FAILED or KILLED run" in capsys.readouterr().err
    jobs.cancel(run_id, client)
    assert cli.main(["resume", run_id]) == 0 and "attempt 2" in capsys.readouterr().out
    assert cli.main(["queue"]) == 0 and "(attempt 2)" in capsys.readouterr().out
    jobs.cancel(run_id, client)


def test_a_run_checkpointed_before_the_two_slots_still_resumes(client, tmp_path):
    run_id = jobs.submit(CONFIG, client=client)
    old = tmp_path / names.CHECKPOINT_NAME
    torch.save({"epoch": 3, "weights": torch.ones(3)}, old)
    client.log_artifact(run_id, str(old), names.CHECKPOINT_DIR)  # checkpoints/last.pt, no file tag
    assert checkpoints.load(client, run_id)["epoch"] == 3
    jobs.cancel(run_id, client)
