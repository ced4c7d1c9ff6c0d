"""A run's ending and its next attempt (pipeline/runs/lifecycle.py: finish, requeue), tag by tag on a real SQLite
store: what people read on the run's page and what the next attempt's times are summed from. Written to kill the
mutants `make mutation MUTATE=pipeline.runs.lifecycle` left alive (issue 27).

Run: .venv/bin/python -m pytest tests/test_lifecycle.py -q
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from pipeline import names
from pipeline.runs import lifecycle, tracking

EXPERIMENT = "lifecycle-unit"


@pytest.fixture(scope="module")
def client(store):
    return tracking.connect()


def ended(client, status: str, tags: dict[str, str] | None = None, start: float | None = None,
          end: float | None = None) -> str:
    """A run ended `status` with these tags, created at `start` and ended at `end` (unix seconds; now if None)."""
    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT), run_name=f"ended-{status}",
                               start_time=int(start * 1000) if start else None).info.run_id
    if tags:
        lifecycle.set_tags(client, run_id, tags)
    client.set_terminated(run_id, status, end_time=int(end * 1000) if end else None)
    return run_id


def traceback_file(client, run_id: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        return Path(client.download_artifacts(run_id, names.TRACEBACK_TXT, folder)).read_text()


def test_finish_keeps_one_line_of_reason_the_tail_of_the_details_and_the_whole_as_a_file(client):
    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT)).info.run_id
    details = "Traceback (most recent call last):\n" + "x" * 5000 + "\nRuntimeError: boom"
    lifecycle.finish(client, run_id, names.FAILED, "RuntimeError: boom\nsecond line" + "", details)
    run = client.get_run(run_id)
    assert run.info.status == names.FAILED
    assert run.data.tags[names.TAG_ERROR] == "RuntimeError: boom"
    assert run.data.tags[names.TAG_TRACEBACK] == details[-lifecycle.TRACEBACK_TAG_CHARS:]
    assert len(run.data.tags[names.TAG_TRACEBACK]) == lifecycle.TRACEBACK_TAG_CHARS
    assert traceback_file(client, run_id) == f"RuntimeError: boom\nsecond line\n\n{details}"  # reason not in it


def test_finish_writes_the_details_alone_when_they_hold_the_reason_and_cuts_a_long_reason(client):
    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT)).info.run_id
    lifecycle.finish(client, run_id, names.FAILED, "ValueError: bad", "Traceback ...\nValueError: bad")
    assert traceback_file(client, run_id) == "Traceback ...\nValueError: bad"
    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT)).info.run_id
    lifecycle.finish(client, run_id, names.KILLED, "y" * 900)
    tags = client.get_run(run_id).data.tags
    assert tags[names.TAG_ERROR] == "y" * lifecycle.REASON_CHARS and names.TAG_TRACEBACK not in tags
    assert client.list_artifacts(run_id) == []  # no details: no file


def test_finish_without_a_reason_adds_no_tag_and_a_killed_run_keeps_its_details_as_a_tag_only(client):
    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT)).info.run_id
    lifecycle.finish(client, run_id, names.KILLED, details="the log's last lines")
    run = client.get_run(run_id)
    assert run.info.status == names.KILLED and names.TAG_ERROR not in run.data.tags
    assert run.data.tags[names.TAG_TRACEBACK] == "the log's last lines" and client.list_artifacts(run_id) == []
    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT)).info.run_id
    lifecycle.finish(client, run_id, names.FINISHED)
    run = client.get_run(run_id)
    assert run.info.status == names.FINISHED and not {names.TAG_ERROR, names.TAG_TRACEBACK} & set(run.data.tags)
    with pytest.raises(ValueError, match="a run ends FINISHED, FAILED, KILLED, not RUNNING"):
        lifecycle.finish(client, run_id, names.RUNNING)


def test_requeue_folds_the_ended_attempt_into_the_next_and_clears_its_ending(client):
    t = round(time.time()) - 1000.0  # the first attempt: queued at t, launched at +10, trained from +20 to +120
    first = {names.TAG_QUEUED: f"{t:.6f}", names.TAG_ATTEMPT_QUEUED: f"{t:.3f}", names.TAG_STARTED: f"{t + 10:.3f}",
             names.TAG_TRAIN_STARTED: f"{t + 20:.3f}", names.TAG_TRAIN_ENDED: f"{t + 120:.3f}",
             names.TAG_ERROR: "RuntimeError: boom", names.TAG_TRACEBACK: "Traceback ...", names.TAG_WORKER: "host:1",
             names.TAG_PID: "123", names.TAG_HEARTBEAT: f"{t + 119:.3f}", names.TAG_CANCEL: "1",
             names.TAG_ORPHANED: "1", names.TAG_RETRY: "yes", names.TAG_RETRIES: "1"}
    run_id = ended(client, names.FAILED, first, start=t, end=t + 130)  # and stood FAILED since
    before = time.time()
    assert lifecycle.requeue(client, run_id, "the worker died", automatic=True) == 2
    after = time.time()
    run = client.get_run(run_id)
    tags = run.data.tags
    assert run.info.status == names.SCHEDULED
    assert [k for k in lifecycle.RESET_ON_REQUEUE if k in tags] == []
    assert (tags[names.TAG_ATTEMPT], tags[names.TAG_ATTEMPT_REASON]) == ("2", "the worker died")
    assert tags[names.TAG_ATTEMPT_HISTORY] == "attempt 2 (automatic): the worker died"
    assert tags[names.TAG_RETRIES] == "2"  # one more automatic resume
    assert tags[names.TAG_QUEUED] == f"{t:.6f}"  # its place in line stays
    assert before - 0.01 <= float(tags[names.TAG_ATTEMPT_QUEUED]) <= after + 0.01
    assert float(tags[names.TAG_EARLIER_TRAINING]) == pytest.approx(100.0, abs=0.002)
    assert float(tags[names.TAG_EARLIER_QUEUED]) == pytest.approx(10.0, abs=0.002)
    assert before - (t + 130) - 0.01 <= float(tags[names.TAG_STOPPED]) <= after - (t + 130) + 0.01  # ~870 s
    assert before - 0.01 <= float(run.data.params[f"{names.PARAM_REQUEUE}.2"]) <= after + 0.01
    assert lifecycle.requeue(client, run_id, "again", automatic=True) is None  # SCHEDULED: not ended

    client.set_terminated(run_id, names.KILLED)  # the second attempt stopped; resumed by hand, reason too long
    assert lifecycle.requeue(client, run_id, "r" * 900, automatic=False) == 3
    tags = client.get_run(run_id).data.tags
    assert tags[names.TAG_RETRIES] == "0" and tags[names.TAG_ATTEMPT_REASON] == "r" * lifecycle.REASON_CHARS
    history = tags[names.TAG_ATTEMPT_HISTORY].splitlines()
    assert history[0] == "attempt 2 (automatic): the worker died"
    assert history[1] == ("attempt 3 (by hand): " + "r" * 900)[:lifecycle.REASON_CHARS]
    assert float(tags[names.TAG_EARLIER_TRAINING]) == pytest.approx(100.0, abs=0.002)  # attempt 2 never trained


def test_requeue_of_a_run_that_never_retried_counts_from_nothing_and_a_lost_race_changes_nothing(client):
    t = round(time.time()) - 500.0  # a run started by hand (not queued): trained from t+5 until it failed at t+65
    run_id = ended(client, names.FAILED, {names.TAG_TRAIN_STARTED: f"{t + 5:.3f}"}, start=t, end=t + 65)
    assert lifecycle.requeue(client, run_id, "why", automatic=True) == 2
    tags = client.get_run(run_id).data.tags
    assert tags[names.TAG_RETRIES] == "1" and float(tags[names.TAG_QUEUED]) == pytest.approx(time.time(), abs=60)
    assert tags[names.TAG_EARLIER_TRAINING] == "60.000"  # until its end: no train-ended tag
    assert tags[names.TAG_EARLIER_QUEUED] == "0.000"  # never queued
    queued = ended(client, names.KILLED, {names.TAG_QUEUED: f"{t:.6f}", names.TAG_STARTED: f"{t + 30:.3f}"},
                   start=t, end=t)  # queued at its creation, launched 30 s later, stopped before it trained
    assert lifecycle.requeue(client, queued, "resume", automatic=False) == 2
    tags = client.get_run(queued).data.tags
    assert tags[names.TAG_EARLIER_QUEUED] == "30.000" and tags[names.TAG_EARLIER_TRAINING] == "0.000"
    no_end = client.create_run(tracking.experiment_id(client, EXPERIMENT)).info.run_id
    client.update_run(no_end, status=names.KILLED)  # ended without an end time (as an old store may hold)
    assert lifecycle.requeue(client, no_end, "resume", automatic=False) == 2
    assert float(client.get_run(no_end).data.tags[names.TAG_STOPPED]) == pytest.approx(0.0, abs=0.5)
    raced = ended(client, names.KILLED, {names.TAG_ERROR: "cancelled"})
    client.log_param(raced, f"{names.PARAM_REQUEUE}.2", "1.0")  # another process requeued attempt 2 first
    assert lifecycle.requeue(client, raced, "mine", automatic=False) is None
    run = client.get_run(raced)
    assert run.info.status == names.KILLED and run.data.tags[names.TAG_ERROR] == "cancelled"
    assert names.TAG_ATTEMPT not in run.data.tags


def test_training_started_marks_the_first_attempts_start_once_and_each_attempts_own(client):
    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT)).info.run_id
    before = time.time()
    lifecycle.training_started(client, run_id)
    tags = client.get_run(run_id).data.tags
    first = tags[names.TAG_TRAIN_STARTED]
    assert tags[names.TAG_ATTEMPT_TRAIN_STARTED] == first and before - 0.01 <= float(first) <= time.time() + 0.01
    time.sleep(0.05)
    lifecycle.training_started(client, run_id)  # a resumed attempt
    tags = client.get_run(run_id).data.tags
    assert tags[names.TAG_TRAIN_STARTED] == first and float(tags[names.TAG_ATTEMPT_TRAIN_STARTED]) > float(first)


def test_reopen_runs_a_group_again_without_its_last_endings_reason(client):
    run_id = lifecycle.open_group(client, tracking.experiment_id(client, EXPERIMENT), "a study", {"kept": "yes"})
    run = client.get_run(run_id)
    assert run.info.status == names.RUNNING and run.info.run_name == "a study" and run.data.tags["kept"] == "yes"
    lifecycle.finish(client, run_id, names.KILLED, "cancelled", "details")
    lifecycle.set_tags(client, run_id, {names.TAG_CANCEL: "1"})
    lifecycle.reopen(client, run_id)
    run = client.get_run(run_id)
    assert run.info.status == names.RUNNING and run.data.tags["kept"] == "yes"
    assert not {names.TAG_ERROR, names.TAG_TRACEBACK, names.TAG_CANCEL} & set(run.data.tags)


def test_the_log_of_a_resumed_attempt_follows_the_earlier_ones_under_a_header(client, tmp_path):
    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT)).info.run_id
    first, second = tmp_path / "1" / names.LOG_NAME, tmp_path / "2" / names.LOG_NAME  # as settings.run_log names it
    first.parent.mkdir()
    second.parent.mkdir()
    first.write_text("epoch 1\nepoch 2 X\n\n")
    second.write_text("epoch 3\n")
    lifecycle.attach_log(client, run_id, first)
    artifact = f"{names.LOG_DIR}/{names.LOG_NAME}"
    with tempfile.TemporaryDirectory() as folder:
        assert Path(client.download_artifacts(run_id, artifact, folder)).read_text() == "epoch 1\nepoch 2 X\n\n"
    lifecycle.set_tags(client, run_id, {names.TAG_ATTEMPT: "2", names.TAG_ATTEMPT_REASON: "the worker died"})
    lifecycle.attach_log(client, run_id, second)
    with tempfile.TemporaryDirectory() as folder:
        whole = Path(client.download_artifacts(run_id, artifact, folder)).read_text()
    assert whole == "epoch 1\nepoch 2 X\n\n# ---- attempt 2: the worker died ----\nepoch 3\n"  # newlines trimmed
    third = tmp_path / "3" / names.LOG_NAME
    third.parent.mkdir()
    third.write_text("epoch 4 X\t \n")
    lifecycle.set_tags(client, run_id, {names.TAG_ATTEMPT: "3"})
    client.delete_tag(run_id, names.TAG_ATTEMPT_REASON)  # a run resumed before reasons were recorded
    lifecycle.attach_log(client, run_id, third)
    lifecycle.attach_log(client, run_id, second)  # the log so far ends in "X\t ": only newlines are trimmed
    with tempfile.TemporaryDirectory() as folder:
        whole = Path(client.download_artifacts(run_id, artifact, folder)).read_text()
    assert whole.endswith("epoch 3\n\n# ---- attempt 3:  ----\nepoch 4 X\t \n\n# ---- attempt 3:  ----\nepoch 3\n")


def test_a_process_key_names_this_machine_and_tells_a_dead_or_reused_pid(tmp_path):
    import os
    import socket
    import subprocess

    import psutil

    machine = lifecycle._machine()
    parts = [socket.gethostname(), Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8],
             str(os.stat("/proc/self/ns/pid").st_ino)]
    assert machine == "-".join(parts)
    key = lifecycle.process_key()
    assert key == f"{machine}/{os.getpid()}/{psutil.Process().create_time():.2f}"
    assert lifecycle.process_gone(key) is False
    child = subprocess.Popen(["sleep", "30"])
    child_key = lifecycle.process_key(child.pid)
    assert child_key == f"{machine}/{child.pid}/{psutil.Process(child.pid).create_time():.2f}"
    child.kill()
    child.wait()
    assert lifecycle.process_gone(child_key) is True
    created = psutil.Process().create_time()
    assert lifecycle.process_gone(f"{machine}/{os.getpid()}/{created + 5:.2f}") is True  # the pid, reused later
    assert lifecycle.process_gone(f"{machine}/{os.getpid()}/{created + 0.5:.2f}") is False  # rounding, not reuse
    assert lifecycle.process_gone(f"{machine}/{os.getpid()}/{created + 1.5:.2f}") is True  # past a second: another
    assert lifecycle.process_gone(f"another-host-1234/{child.pid}/1.00") is False  # only its heartbeat can tell
    assert lifecycle.process_gone(f"{machine}/not-a-pid/1.00") is False


def test_a_claim_is_taken_once_per_attempt_and_read_back(client):
    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT)).info.run_id
    assert lifecycle.claim(client, run_id, "host:1") is True
    assert lifecycle.claim(client, run_id, "host:2") is False  # someone else's
    claim = lifecycle.Claim.of(client.get_run(run_id))
    assert claim.owner == "host:1" and claim.process == lifecycle.process_key()
    assert claim.at == pytest.approx(time.time(), abs=60)
    assert client.get_run(run_id).data.params[names.PARAM_CLAIM] == str(claim)
    assert lifecycle.claim(client, run_id, lifecycle.Claim("host:3", "p", 5.0), attempt=2) is True
    assert client.get_run(run_id).data.params[f"{names.PARAM_CLAIM}.2"] == "host:3 p 5.000"
    lifecycle.set_tags(client, run_id, {names.TAG_ATTEMPT: "2"})
    assert lifecycle.Claim.of(client.get_run(run_id)) == lifecycle.Claim("host:3", "p", 5.0)
    lifecycle.set_tags(client, run_id, {names.TAG_ATTEMPT: "3"})
    assert lifecycle.Claim.of(client.get_run(run_id)) is None  # attempt 3 is unclaimed


def test_a_scheduled_run_is_never_left_half_made_and_a_group_record_ends_finished(client):
    experiment = tracking.experiment_id(client, EXPERIMENT)
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="bad\\?key"):  # MLflow refuses the param: the run must not linger
        lifecycle.schedule(client, experiment, "half-made", {"bad?key": "1"}, {})
    [run] = client.search_runs([experiment], "attributes.run_name = 'half-made'")
    assert run.info.status == names.FAILED
    run_id = lifecycle.record(client, experiment, "a sweep", {"kind": "sweep"})
    run = client.get_run(run_id)
    assert (run.info.status, run.info.run_name, run.data.tags["kind"]) == (names.FINISHED, "a sweep", "sweep")
    group = client.get_run(lifecycle.open_group(client, experiment, "a group", {}))
    assert group.info.experiment_id == experiment


def test_running_heartbeats_and_failures_are_recorded_as_people_read_them(client):
    run_id = lifecycle.schedule(client, tracking.experiment_id(client, EXPERIMENT), "beats", {"lr": "0.1"}, {})
    lifecycle.mark_running(client, run_id, {names.TAG_WORKER: "host:9"})
    run = client.get_run(run_id)
    assert run.info.status == names.RUNNING and run.data.tags[names.TAG_WORKER] == "host:9"
    assert float(run.data.tags[names.TAG_STARTED]) == pytest.approx(time.time(), abs=60)
    lifecycle.heartbeat(client, run_id)  # no tags of its own
    assert float(client.get_run(run_id).data.tags[names.TAG_HEARTBEAT]) == pytest.approx(time.time(), abs=60)
    try:
        raise ValueError("first line\nsecond line")
    except ValueError as e:
        reason, details = lifecycle.failure(e)
    assert reason == "ValueError: first line"
    assert details.startswith("Traceback (most recent call last):\n  File ") and details.endswith("second line\n")
    config = lifecycle.config_of(client, client.get_run(run_id))
    assert (config.lr, config.run_name, config.register, config.experiment) == (0.1, "beats", "", EXPERIMENT)


def test_finish_ends_the_trainers_own_active_run_through_mlflow(client):
    import mlflow

    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT)).info.run_id
    mlflow.start_run(run_id=run_id)
    lifecycle.finish(client, run_id, names.FAILED, "\n\n")  # a reason of blank lines is kept as it is
    assert mlflow.active_run() is None  # ended through the fluent API, which also stops its samplers
    run = client.get_run(run_id)
    assert run.info.status == names.FAILED and run.data.tags[names.TAG_ERROR] == "\n\n"


def test_a_claim_written_by_an_older_version_reads_with_defaults(client):
    run_id = client.create_run(tracking.experiment_id(client, EXPERIMENT)).info.run_id
    client.log_param(run_id, names.PARAM_CLAIM, "host:1")  # owner only
    assert lifecycle.Claim.of(client.get_run(run_id)) == lifecycle.Claim("host:1", "", 0.0)
