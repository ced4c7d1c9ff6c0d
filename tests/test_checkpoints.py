"""pipeline/runs/checkpoints.py beyond the resume tests (tests/test_resume.py): written to kill the mutants those
let live (`make mutation`). Run: .venv/bin/python -m pytest tests/test_checkpoints.py -q
"""
from __future__ import annotations

import threading

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


def test_every_state_offered_while_an_upload_goes_on_is_skipped_and_counted(store):
    client = tracking.connect()
    run_id = jobs.submit(RunConfig(dataset="digits", model="mlp", epochs=1, experiment="checkpoints-unit"), client=client)
    try:
        writer = checkpoints.CheckpointWriter(client, run_id)
        upload = threading.Event()
        writer._thread = threading.Thread(target=upload.wait)  # an upload still going, held until we let it end
        writer._thread.start()
        writer({"epoch": 1})
        writer({"epoch": 2})
        upload.set()
        writer.close()
        assert writer.skipped == 2 and checkpoints.load(client, run_id) is None
    finally:
        jobs.cancel(run_id, client)


def test_a_checkpoint_tags_the_epoch_and_the_step_it_holds(store):
    client = tracking.connect()
    run_id = jobs.submit(RunConfig(dataset="digits", model="mlp", epochs=1, experiment="checkpoints-unit"), client=client)
    try:
        writer = checkpoints.CheckpointWriter(client, run_id)
        writer({"epoch": 2, "step": 37})
        writer.close()
        tags = client.get_run(run_id).data.tags
        assert (tags[names.TAG_CHECKPOINT], tags[names.TAG_CHECKPOINT_STEP]) == ("2", "37")
    finally:
        jobs.cancel(run_id, client)
