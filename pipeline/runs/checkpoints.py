"""A run's training checkpoint as its artifact `checkpoints/last.pt`, and a seamless metric history after a resume.

The engine hands over a CPU copy of its state after every epoch (and every few minutes within a long
one, see RUNBOARD_CHECKPOINT_SECONDS); writing and uploading it happen in a
background thread, so training waits only for that copy. When the previous upload is still going
(epochs shorter than an upload), that epoch's state is skipped: a checkpoint never holds training up. The upload overwrites the same artifact
path, so only the latest checkpoint is kept (a local artifact folder and a tracking server's proxied
artifacts both replace the file). The file holds tensors and plain data only: it is read back with
`torch.load(weights_only=True)`, never unpickled. Once the upload is complete, the tags
`runboard.checkpoint_epoch` and `runboard.checkpoint_step` name the last whole epoch and the step it holds.
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

PATH = f"{names.CHECKPOINT_DIR}/{names.CHECKPOINT_NAME}"


class CheckpointWriter:
    """Called with each epoch's state: saves it and uploads it while the next epoch trains."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client, self.run_id = client, run_id
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
            path, partial = self.folder / names.CHECKPOINT_NAME, self.folder / f"{names.CHECKPOINT_NAME}.partial"
            torch.save(state, partial)
            partial.replace(path)
            t1 = time.perf_counter()
            self.client.log_artifact(self.run_id, str(path), names.CHECKPOINT_DIR)
            lifecycle.set_tags(self.client, self.run_id, {names.TAG_CHECKPOINT: state["epoch"],
                                                          names.TAG_CHECKPOINT_STEP: state.get("step", "")})
            self.timings.append({"save_s": t1 - t0, "upload_s": time.perf_counter() - t1,
                                 "bytes": path.stat().st_size})
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
    """The run's latest checkpoint, or None when it has none (or an unreadable one: it then starts over)."""
    import torch

    if PATH not in {a.path for a in client.list_artifacts(run_id, names.CHECKPOINT_DIR)}:
        return None
    with tempfile.TemporaryDirectory(prefix="runboard-resume-") as folder:
        local = client.download_artifacts(run_id, PATH, folder)
        try:
            return torch.load(local, map_location="cpu", weights_only=True)
        except Exception as e:  # cut off mid-upload by a kill: nothing older is kept
            print(f"warning: {PATH} of run {run_id} cannot be read ({e}); training starts over", file=sys.stderr)
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
