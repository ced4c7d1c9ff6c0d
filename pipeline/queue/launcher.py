"""How the worker starts a training process: one seam, chosen by the setting RUNBOARD_LAUNCHER.

`local` (the default) runs `python -m pipeline train --run-id ID` as a child process of the worker,
from an argument list (never a shell: the run id is the only argument, the config is in the run),
with stdout and stderr in a log file. `ray` (queue/ray_launcher.py) fits the same few verbs to Ray
Jobs: `start` is `submit_job(submission_id=f"runboard-{run_id}")`, `poll` is `get_job_status`,
`terminate`/`kill` are `stop_job`, and `get_job_logs` is copied into the log file; it can also
`adopt` the job of a run a dead worker started. Nothing else in the worker assumes that runs are
local processes.
"""
from __future__ import annotations

import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Protocol

from pipeline import settings

_PR_SET_PDEATHSIG = 1


class Job(Protocol):
    run_id: str
    log_path: Path
    pid: int | None                          # the training process, where it is one on this machine

    def poll(self) -> int | None: ...        # the exit code once it ended (negative: killed by that signal)
    def terminate(self) -> None: ...         # ask it to stop (the trainer then ends its run KILLED)
    def kill(self) -> None: ...              # stop it now
    def close(self) -> None: ...             # release local files once the log is uploaded


class Launcher(Protocol):
    def start(self, run_id: str, slot: int) -> Job: ...
    def warm(self, slot: int) -> None: ...   # get ready to start the next run in `slot` quickly
    def close(self) -> None: ...             # the worker stops: release what warm() holds
    # optional: blocked() -> str | None, why no run can be started now (the worker then leaves runs queued)


def train_command(run_id: str) -> list[str]:
    """What a launcher runs for a queued run, as `python -m pipeline` arguments: only its id."""
    return ["train", "--run-id", run_id]


LOG_TAIL_CHARS = 3000  # how much of a running run's log the live view sees


def log_tail(path: Path, max_chars: int = LOG_TAIL_CHARS) -> str:
    """The last whole lines of a log file (at most `max_chars`), '' when there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_chars))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    if size > max_chars and "\n" in text:
        text = text.split("\n", 1)[1]  # drop the cut first line
    # a progress bar redraws its line after each \r: keep what a terminal would show
    lines = [next((s for s in reversed(line.split("\r")) if s.strip()), "") for line in text.split("\n")]
    return "\n".join(line for line in lines if line.strip())


def _die_with_parent_fn():
    """A pre-exec hook: the kernel SIGKILLs the child when the worker dies, so no run trains unowned."""
    if not sys.platform.startswith("linux"):
        return None
    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the worker died between fork and prctl
            os._exit(1)
    return hook


class LocalJob:
    def __init__(self, run_id: str, process, log_path: Path, log_file):
        self.run_id, self.process, self.log_path, self._log_file = run_id, process, log_path, log_file

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def _signal(self, signum: int) -> None:
        try:  # the child leads its own process group: reach anything it started too
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def close(self) -> None:
        self._log_file.close()
        self.log_path.unlink(missing_ok=True)
        try:
            self.log_path.parent.rmdir()
        except OSError:
            pass


class LocalLauncher:
    """Child processes on this machine; with several slots, each gets its share of CPU threads and a GPU.

    With `prewarm`, a free slot keeps a spare process (pipeline/spare.py) that has already imported
    torch and MLflow, so a launched run logs its first metrics seconds sooner.
    """

    def __init__(self, concurrency: int = 1, log_dir: Path | None = None, prewarm: bool | None = None):
        self.concurrency = concurrency
        self.log_dir = log_dir or settings.log_dir()
        self.prewarm = settings.worker_prewarm() if prewarm is None else prewarm
        self._gpus: list[str] | None = None
        self._spare: tuple[int, subprocess.Popen] | None = None  # (slot, process)

    def gpus(self) -> list[str]:
        """Visible GPU ids (CUDA_VISIBLE_DEVICES, else all); only asked when runs share the machine."""
        if self._gpus is None:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible is not None:
                self._gpus = [g for g in visible.split(",") if g.strip()]
            else:
                import torch

                self._gpus = [str(i) for i in range(torch.cuda.device_count())]
        return self._gpus

    def environment(self, slot: int) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", MLFLOW_TRACKING_URI=settings.tracking_uri())
        if self.concurrency > 1:
            if "OMP_NUM_THREADS" not in os.environ:  # n runs on one CPU: no oversubscription
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.concurrency))
            if self.gpus():
                env["CUDA_VISIBLE_DEVICES"] = self.gpus()[slot % len(self.gpus())]
        return env

    def _popen(self, command: list[str], slot: int, stdin, stdout) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=settings.PROJECT_ROOT, env=self.environment(slot), stdin=stdin,
                                stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent_fn())

    def warm(self, slot: int) -> None:
        """Have a spare process ready for `slot` (one spare in all: the next run usually takes the lowest slot)."""
        if not self.prewarm or (self._spare and self._spare[0] == slot and self._spare[1].poll() is None):
            return
        self.close()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"spare-{slot}.log", "wb") as out:  # its import-time warnings, if any
            self._spare = (slot, self._popen([sys.executable, "-m", "pipeline.queue.spare"], slot, subprocess.PIPE,
                                             out))

    def close(self) -> None:
        """Let the spare go: end of input makes it exit once warm."""
        if self._spare:
            self._spare[1].stdin.close()
            self._spare = None

    def _hand_to_spare(self, slot: int, run_id: str, log_path: Path) -> subprocess.Popen | None:
        spare, self._spare = self._spare, None
        if not spare or spare[0] != slot or spare[1].poll() is not None:
            if spare:
                spare[1].stdin.close()
            return None
        try:
            spare[1].stdin.write(json.dumps({"run_id": run_id, "log": str(log_path)}).encode() + b"\n")
            spare[1].stdin.close()
        except OSError:  # it died since the poll: start cold
            return None
        return spare[1]

    def start(self, run_id: str, slot: int = 0) -> LocalJob:
        args = train_command(run_id)
        path = settings.run_log(run_id, self.log_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        env = self.environment(slot)
        log_file = open(path, "wb")
        gpu = f", CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in env else ""
        log_file.write(f"$ {shlex.join(['python', '-m', 'pipeline', *args])}\n# slot {slot}{gpu}\n".encode())
        log_file.flush()
        try:
            process = self._hand_to_spare(slot, run_id, path) or self._popen(
                [sys.executable, "-m", "pipeline", *args], slot, subprocess.DEVNULL, log_file)
        except OSError:
            log_file.close()
            raise
        return LocalJob(run_id, process, path, log_file)


def from_settings(concurrency: int) -> Launcher:
    """The launcher RUNBOARD_LAUNCHER names."""
    name = settings.launcher()
    if name == "local":
        return LocalLauncher(concurrency)
    if name == "ray":
        from pipeline.queue.ray_launcher import RayLauncher  # imports ray: only when asked for

        return RayLauncher(train_command, concurrency)
    raise settings.SettingError(f"RUNBOARD_LAUNCHER must be one of: local, ray; got {name!r}")
