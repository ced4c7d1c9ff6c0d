"""A run's training checkpoint as its artifacts `checkpoints/a.pt` and `b.pt`, and a seamless metric history after a resume.

The engine hands over a CPU copy of its state after every epoch (and every few minutes within a long
one, see RUNBOARD_CHECKPOINT_SECONDS); writing and uploading it happen in a background thread, so
training waits only for that copy. When the previous upload is still going (epochs shorter than an
upload), that state is skipped: a checkpoint never holds training up.

Uploads go to the two slots in turn, each overwriting the older one, so the run keeps its latest
complete checkpoint and the one before: a process killed in the middle of an upload cuts off only
the file being written, and the tag `runboard.checkpoint_file`, set once an upload is complete,
still names the other. With it, `runboard.checkpoint_epoch` and `runboard.checkpoint_step` name the
last whole epoch and the step it holds. The files hold tensors and plain data only: they are read
back with `torch.load(weights_only=True)`, never unpickled.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from mlflow import MlflowClient

from pipeline import names
from pipeline.runs import lifecycle

SLOTS = tuple(f"{names.CHECKPOINT_DIR}/{slot}" for slot in names.CHECKPOINT_SLOTS)
LEGACY = f"{names.CHECKPOINT_DIR}/{names.CHECKPOINT_NAME}"  # a run checkpointed before the two slots


class CheckpointWriter:
    """Called with each epoch's state: saves it and uploads it while the next epoch trains."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client, self.run_id = client, run_id
        # a resumed attempt first writes the slot it did not resume from
        self.complete = client.get_run(run_id).data.tags.get(names.TAG_CHECKPOINT_FILE)
        self.folder = Path(tempfile.mkdtemp(prefix="runboard-checkpoint-"))
        self._thread: threading.Thread | None = None
        self.timings: list[dict[str, float]] = []  # per checkpoint: save and upload seconds, bytes
        self.skipped = 0  # epochs whose state was not written: the previous upload was still going

    def __call__(self, state: dict) -> None:
        if self._thread is not None and self._thread.is_alive():
            # epochs shorter than an upload (small data on a fast GPU): skip rather than make training wait;
            # the next epoch's state goes up once this upload is done
            self.skipped += 1
            return
        self._thread = threading.Thread(target=self._write, args=(state,), name="checkpoint", daemon=True)
        self._thread.start()

    def _write(self, state: dict) -> None:
        import torch

        try:
            t0 = time.perf_counter()
            slot = SLOTS[1] if self.complete == SLOTS[0] else SLOTS[0]  # never the complete one
            path = self.folder / Path(slot).name
            partial = path.with_suffix(".partial")
            torch.save(state, partial)
            partial.replace(path)
            t1 = time.perf_counter()
            self.client.log_artifact(self.run_id, str(path), names.CHECKPOINT_DIR)
            lifecycle.set_tags(self.client, self.run_id, {names.TAG_CHECKPOINT: state["epoch"],
                                                          names.TAG_CHECKPOINT_STEP: state["step"],
                                                          names.TAG_CHECKPOINT_FILE: slot})
            self.complete = slot
            self.timings.append({"save_s": t1 - t0, "upload_s": time.perf_counter() - t1,
                                 "bytes": path.stat().st_size})
            path.unlink()
        except Exception as e:  # training goes on; a resume then starts from an older checkpoint
            print(f"warning: the checkpoint of epoch {state.get('epoch')} was not saved: {e}", file=sys.stderr)

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        """Wait for the last upload, then drop the local copy."""
        self.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def load(client: MlflowClient, run_id: str) -> dict | None:
    """The run's latest complete checkpoint (the one its tag names, else the other slot), or None when
    it has none that reads: it then starts over."""
    import torch

    stored = {a.path for a in client.list_artifacts(run_id, names.CHECKPOINT_DIR)}
    named = client.get_run(run_id).data.tags.get(names.TAG_CHECKPOINT_FILE)
    for path in dict.fromkeys(p for p in (named, *SLOTS, LEGACY) if p in stored):
        with tempfile.TemporaryDirectory(prefix="runboard-resume-") as folder:
            try:
                return torch.load(client.download_artifacts(run_id, path, folder), map_location="cpu",
                                  weights_only=True)
            except Exception as e:  # cut off mid-upload by a kill: the other slot may still read
                print(f"warning: {path} of run {run_id} cannot be read ({e})", file=sys.stderr)
    if stored:
        print(f"warning: no checkpoint of run {run_id} can be read; training starts over", file=sys.stderr)
    return None


# --- one point per step -----------------------------------------------------------------------
def logged_steps(client: MlflowClient, run_id: str) -> dict[str, int]:
    """The last step each of the run's own metrics reached (MLflow's system/ samples resume by themselves)."""
    keys = [k for k in client.get_run(run_id).data.metrics if not k.startswith(names.SYSTEM_PREFIX)]
    return {k: max(m.step for m in client.get_metric_history(run_id, k)) for k in keys}


class ContinuingTracker:
    """A resumed attempt's tracker: it drops points at steps the run already holds.

    A dead attempt may have logged past its last checkpoint (step losses of a cut-off epoch, or an
    epoch's metrics just before the checkpoint upload). MLflow cannot delete points, so the resumed
    attempt, which trains those steps again, does not log them twice: every step keeps one point, the
    first logged. Each metric's points are flushed in step order, so what a run holds is a prefix.
    """

    def __init__(self, tracker, logged: dict[str, int]):
        self.tracker, self.logged = tracker, logged

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        fresh = {k: v for k, v in values.items() if step > self.logged.get(k, -1)}
        if fresh:
            self.tracker.log_metrics(fresh, step)

    def flush(self) -> None:
        self.tracker.flush()
