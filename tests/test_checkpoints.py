"""pipeline/runs/checkpoints.py beyond the resume tests (tests/test_resume.py): written to kill the mutants those
let live (`make mutation`). Run: .venv/bin/python -m pytest tests/test_checkpoints.py -q
"""
from __future__ import annotations

import tempfile
import threading
import time
from fractions import Fraction

import pytest
import torch

from pipeline import names
from pipeline.config import RunConfig
from pipeline.queue import jobs
from pipeline.runs import checkpoints, tracking
from pipeline.runs.checkpoints import ContinuingTracker


class Recorder:
    """A tracker that keeps what it is given (engine's tracker interface)."""

    def __init__(self):
        self.points, self.flushed = [], 0

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        self.points.append((step, values))

    def flush(self) -> None:
        self.flushed += 1


def warning_lines(captured) -> list[str]:
    """The warning lines written to stderr, among MLflow's progress bars; stdout must stay clean."""
    assert captured.out == ""
    return [line for line in captured.err.splitlines() if line.startswith("warning")]


def test_a_continuing_tracker_drops_exactly_the_steps_the_run_already_holds():
    recorder = Recorder()
    tracker = ContinuingTracker(recorder, {"loss": 3, "accuracy": 1})
    tracker.log_metrics({"new": 1.0}, step=0)  # a metric the run never logged keeps even step 0
    tracker.log_metrics({"loss": 1.0, "accuracy": 0.5}, step=2)
    tracker.log_metrics({"loss": 0.9}, step=3)  # held already: nothing to log
    tracker.log_metrics({"loss": 0.5, "accuracy": 0.7}, step=4)
    tracker.flush()
    assert recorder.points == [(0, {"new": 1.0}), (2, {"accuracy": 0.5}), (4, {"loss": 0.5, "accuracy": 0.7})]
    assert recorder.flushed == 1


@pytest.fixture
def run(store):
    """A queued run of its own, to hold checkpoints; cancelled afterwards, so that no worker ever takes it."""
    client = tracking.connect()
    run_id = jobs.submit(RunConfig(dataset="digits", model="mlp", epochs=1, experiment="checkpoints-unit"), client=client)
    yield client, run_id
    jobs.cancel(run_id, client)


def test_every_state_offered_while_an_upload_goes_on_is_skipped_and_counted(run):
    client, run_id = run
    writer = checkpoints.CheckpointWriter(client, run_id)
    upload = threading.Event()
    writer._thread = threading.Thread(target=upload.wait)  # an upload still going, held until we let it end
    writer._thread.start()
    writer({"epoch": 1})
    writer({"epoch": 2})
    upload.set()
    writer.close()
    assert writer.skipped == 2 and checkpoints.load(client, run_id) is None


def test_a_checkpoint_tags_the_epoch_and_the_step_it_holds(run):
    client, run_id = run
    writer = checkpoints.CheckpointWriter(client, run_id)
    writer({"epoch": 2, "step": 37})
    writer.close()
    tags = client.get_run(run_id).data.tags
    assert (tags[names.TAG_CHECKPOINT], tags[names.TAG_CHECKPOINT_STEP]) == ("2", "37")


def test_the_upload_runs_in_a_daemon_thread_and_reports_its_timings(run):
    """A hung upload must not keep a finished or crashing process alive; bench/checkpoint_overhead.py reads
    the timings."""
    client, run_id = run
    writer = checkpoints.CheckpointWriter(client, run_id)
    started = time.perf_counter()
    writer({"epoch": 1, "step": 5, "weights": torch.zeros(1000)})
    assert writer._thread.daemon
    writer.close()
    elapsed = time.perf_counter() - started
    [timing] = writer.timings
    stored = {a.path: a.file_size for a in client.list_artifacts(run_id, names.CHECKPOINT_DIR)}
    assert set(timing) == {"save_s", "upload_s", "bytes"} and timing["bytes"] == stored[checkpoints.SLOTS[0]] > 4000
    assert 0 < timing["save_s"] and 0 < timing["upload_s"] and timing["save_s"] + timing["upload_s"] <= elapsed
    assert not writer.folder.exists()  # the local copy is dropped


def test_a_state_that_cannot_be_saved_is_a_warning_and_training_goes_on(run, capsys):
    client, run_id = run
    writer = checkpoints.CheckpointWriter(client, run_id)
    writer({"epoch": 3, "step": 9, "unsaveable": lambda: 0})  # torch.save cannot pickle a lambda
    writer.close()
    [warning] = warning_lines(capsys.readouterr())
    assert warning.startswith("warning: the checkpoint of epoch 3 was not saved: ")
    assert names.TAG_CHECKPOINT_FILE not in client.get_run(run_id).data.tags and writer.timings == []


def test_a_checkpoint_that_would_need_unpickling_is_refused_and_the_other_slot_read(run, capsys, tmp_path):
    client, run_id = run
    writer = checkpoints.CheckpointWriter(client, run_id)
    writer({"epoch": 1, "step": 5, "w": torch.ones(2)})  # slot a, complete
    writer.close()
    crafted = tmp_path / "b.pt"
    torch.save({"epoch": 2, "step": 10, "w": Fraction(1, 3)}, crafted)  # loads only with pickle allowed
    client.log_artifact(run_id, str(crafted), names.CHECKPOINT_DIR)
    client.set_tag(run_id, names.TAG_CHECKPOINT_FILE, checkpoints.SLOTS[1])  # and named as the latest
    capsys.readouterr()
    state = checkpoints.load(client, run_id)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(2))
    err = capsys.readouterr()
    [warning] = warning_lines(err)
    assert warning.startswith(f"warning: {checkpoints.SLOTS[1]} of run {run_id} cannot be read (")


def test_no_readable_checkpoint_says_training_starts_over(run, capsys, tmp_path):
    client, run_id = run
    (tmp_path / "a.pt").write_bytes(b"cut off mid-upl")
    client.log_artifact(run_id, str(tmp_path / "a.pt"), names.CHECKPOINT_DIR)
    capsys.readouterr()
    assert checkpoints.load(client, run_id) is None
    assert warning_lines(capsys.readouterr())[-1] == (f"warning: no checkpoint of run {run_id} can be read; "
                                                 "training starts over")


def test_loading_leaves_no_copy_behind(run, monkeypatch, tmp_path):
    """A resumed worker loads a checkpoint at every attempt: its downloaded copy (megabytes for a resnet) goes."""
    client, run_id = run
    writer = checkpoints.CheckpointWriter(client, run_id)
    writer({"epoch": 1, "step": 5, "w": torch.ones(2)})
    writer.close()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where this load, and MLflow, make temporary folders
    assert checkpoints.load(client, run_id)["epoch"] == 1
    assert list(scratch.iterdir()) == []
