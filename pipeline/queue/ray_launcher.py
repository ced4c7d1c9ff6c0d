"""The Ray launcher (RUNBOARD_LAUNCHER=ray): each claimed run becomes a job of a Ray cluster.

Ray decides where and when the run trains; the worker keeps the queue. Through Ray's Job Submission
API (at RAY_ADDRESS): `start` is `submit_job` with the submission id `runboard-<run id>` and the same
training command as a local run, `poll` is `get_job_status`, `terminate`/`kill` are `stop_job`, and
the job's logs are copied into the local log file the worker tails and uploads. The code goes to
the nodes as Ray's runtime environment (the project folder, less data and stores); runs report to
MLFLOW_TRACKING_URI themselves. Because the submission id comes from the run id, a restarted
worker finds its jobs again (`adopt`) instead of declaring their runs orphans.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mlflow.entities import Run

from pipeline import names, settings
from pipeline.errors import ServiceError
from pipeline.runs import lifecycle, tracking

SUBMISSION_PREFIX = "runboard-"
LOG_FETCH_SECONDS = 2.0      # between copies of a job's logs into the local log file
STOP_WAIT_SECONDS = 30       # Ray's SIGTERM -> SIGKILL grace (RAY_JOB_STOP_WAIT_TIME_S, default 3 s)
BLOCKED_RECHECK_S = 10.0     # while Ray refuses the token or cannot be reached: how often to try again
# what the nodes need not receive: the environment, the stores, datasets, test output
EXCLUDES = [".venv", ".git", "mlruns", "/data", "test-output", "__pycache__", "*.pyc", ".pytest_cache"]
# settings the trainer reads, when set; the credentials file's path, never the password in it
FORWARDED = ("RUNBOARD_DATA_ROOT", "RUNBOARD_MEMORY_BUDGET_MB", "RUNBOARD_MLFLOW_CREDENTIALS")

log = logging.getLogger("runboard.worker")


class RayUnavailable(ServiceError):
    """The Ray cluster's job API cannot be reached or refused a request."""


class RayRefused(RayUnavailable):
    """The job API wants a token (RAY_AUTH_MODE=token) that Runboard did not send, or sent wrong."""


def refusal(address: str, token_sent: bool) -> str:
    """The one line a refused token gets, naming where the token came from and how to give the right one."""
    named = settings.ray_token_file()
    source = f"{named[0]}={named[1]}" if named else "RAY_AUTH_TOKEN"
    why = f"the token from {source} is not the cluster's" if token_sent else "no token was sent"
    return (f"Ray at {address} refused the job: token authentication is on and {why}; set RUNBOARD_RAY_TOKEN_FILE "
            "to the cluster's token file (make cluster writes mlruns/cluster/ray-token)")


def _is_refusal(error: BaseException) -> bool:
    from ray.exceptions import AuthenticationError

    return isinstance(error, AuthenticationError)


def submission_id(run_id: str, attempt: int = 1) -> str:
    """The Ray job of a run's attempt: derived from its id, so any worker can find it again. Ray never
    reuses a submission id, so a resumed run's later attempts get their own (`runboard-<id>-2`, ...)."""
    if not re.fullmatch(r"[0-9A-Za-z_-]+", run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    return SUBMISSION_PREFIX + run_id + (f"-{attempt}" if attempt > 1 else "")


def _reason(message: str | None) -> str:
    """Ray's one-line reason (its message goes on with the log, which the worker keeps separately)."""
    first = (message or "").split(", last available logs", 1)[0].strip().splitlines()
    return f"Ray: {first[0]}" if first else "Ray: the job failed"


class RayJob:
    """One run's Ray job, seen through the verbs the worker uses for a local process."""

    pid = None  # the process lives on a Ray node, not here

    def __init__(self, launcher: "RayLauncher", run_id: str, log_path: Path, attempt: int = 1):
        self.launcher, self.run_id, self.log_path = launcher, run_id, log_path
        self.submission_id = submission_id(run_id, attempt)
        self.reason: str | None = None  # Ray's reason once the job failed
        self._code: int | None = None
        self._logs_at = 0.0
        self._node_known = False

    def poll(self) -> int | None:
        if self._code is not None:
            return self._code
        try:
            info = self.launcher.client.get_job_info(self.submission_id)
        except RuntimeError as e:  # the job API answered, but knows no such job
            if "does not exist" not in str(e):
                log.warning("Ray job %s: status unknown for now: %s", self.submission_id, str(e).splitlines()[0])
                return None
            self.reason = f"Ray: the cluster has no job {self.submission_id} any more (its head restarted?)"
            self._code = 1
            return self._code
        except Exception as e:  # unreachable for a moment: keep the run, ask again
            if _is_refusal(e):  # the token changed: read its file again next time
                self.launcher.forget_client()
                e = RayRefused(refusal(self.launcher.address, bool(self.launcher.headers)))
            log.warning("Ray job %s: status unknown for now: %s", self.submission_id, str(e).splitlines()[0])
            return None
        status = str(info.status)
        if not self._node_known and info.driver_node_id:
            self._node_known = True
            self.launcher.record_node(self.run_id, info.driver_agent_http_address, info.driver_node_id)
        ended = status in ("SUCCEEDED", "FAILED", "STOPPED")
        if ended or time.monotonic() - self._logs_at >= LOG_FETCH_SECONDS:
            self._copy_logs()
        if not ended:
            return None
        if status == "SUCCEEDED":
            self._code = 0
        elif status == "STOPPED":
            self._code = -signal.SIGTERM
        else:
            self.reason, self._code = _reason(info.message), info.driver_exit_code or 1
        return self._code

    def _copy_logs(self) -> None:
        self._logs_at = time.monotonic()
        try:
            text = self.launcher.client.get_job_logs(self.submission_id)
        except Exception as e:
            log.warning("Ray job %s: logs not readable now: %s", self.submission_id, str(e).splitlines()[0])
            return
        header = (f"$ {self.launcher.entrypoint(self.run_id)}\n"
                  f"# Ray job {self.submission_id} at {self.launcher.address}\n")
        tmp = self.log_path.with_suffix(".part")
        tmp.write_text(header + text, encoding="utf-8")
        tmp.replace(self.log_path)  # the tail reader never sees half a file

    def terminate(self) -> None:
        try:
            self.launcher.client.stop_job(self.submission_id)
        except Exception as e:  # the worker asks again after its grace period
            log.warning("Ray job %s: stop_job failed: %s", self.submission_id, str(e).splitlines()[0])

    kill = terminate  # Ray itself SIGKILLs STOP_WAIT_SECONDS after the SIGTERM

    def close(self) -> None:
        shutil.rmtree(self.log_path.parent, ignore_errors=True)  # the run's own folder: its log copies only


class RayLauncher:
    """Submits runs to the Ray cluster at RAY_ADDRESS: one GPU per run where it has GPUs, else a share of CPUs."""

    def __init__(self, command: Callable[[str], list[str]], concurrency: int = 1, log_dir: Path | None = None,
                 address: str | None = None):
        self.command = command  # launcher.train_command: the same as a local run's
        self.concurrency = max(1, concurrency)
        self.log_dir = log_dir or settings.log_dir()
        self.address = address or settings.ray_address()
        self.headers: dict[str, str] = {}
        self._client = None
        self._blocked: tuple[float, str | None] = (-BLOCKED_RECHECK_S, None)  # (when checked, why blocked)
        try:
            self.connect()
        except RayRefused as e:  # runs stay queued (blocked()) until the token file is right
            log.error("%s", e)
        self.mlflow = tracking.connect()
        self._resources: dict[str, float] | None = None

    # --- the job API, with the cluster's token --------------------------------------------------
    def connect(self):
        """Ray's job client, sending the token as its file holds it now (a corrected file needs no restart)."""
        from ray.job_submission import JobSubmissionClient

        token = settings.ray_auth_token()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            self._client = JobSubmissionClient(self.address, headers=dict(self.headers))
        except Exception as e:
            if _is_refusal(e):
                raise RayRefused(refusal(self.address, bool(token))) from None
            raise RayUnavailable(f"the Ray cluster at {self.address} (RAY_ADDRESS) cannot be reached: "
                                 f"{str(e).splitlines()[0]}") from None
        return self._client

    @property
    def client(self):
        return self._client or self.connect()

    def forget_client(self) -> None:
        """Ray refused the token: the next call connects again, reading the token file anew."""
        self._client = None

    # --- what a run asks of the cluster ---------------------------------------------------------
    def cluster_resources(self) -> dict[str, float]:
        """CPUs and GPUs of the cluster's live nodes (Ray's dashboard node summary); asked once."""
        if self._resources is None:
            request = urllib.request.Request(f"{self.address}/nodes?view=summary", headers=self.headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    nodes = json.load(response)["data"]["summary"]
                totals = [n["raylet"].get("resourcesTotal", {}) for n in nodes if n["raylet"].get("state") == "ALIVE"]
            except Exception as e:  # an older or newer dashboard: assume the smallest cluster
                log.warning("Ray's node summary is unreadable (%s); assuming 1 CPU and no GPU", e)
                totals = [{"CPU": 1.0}]
            self._resources = {key: sum(t.get(key, 0.0) for t in totals) for key in ("CPU", "GPU")}
        return self._resources

    def resources(self) -> dict[str, float]:
        """submit_job's entrypoint resources: one GPU where there are GPUs, else the CPUs over the worker's slots."""
        total = self.cluster_resources()
        if total["GPU"] >= 1:
            return {"entrypoint_num_gpus": 1, "entrypoint_num_cpus": 1}
        return {"entrypoint_num_cpus": max(1, int(total["CPU"] // self.concurrency))}

    def entrypoint(self, run_id: str) -> str:
        return shlex.join([settings.ray_python(), "-m", "pipeline", *self.command(run_id)])

    def runtime_env(self, cpus: int) -> dict:
        env = {"MLFLOW_TRACKING_URI": settings.tracking_uri(), "PYTHONUNBUFFERED": "1",
               "OMP_NUM_THREADS": str(cpus), "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_SECONDS)}
        env.update({k: os.environ[k] for k in FORWARDED if os.environ.get(k)})
        # secrets (MLFLOW_TRACKING_PASSWORD, tokens) are not sent: Ray shows a job's runtime env to whoever
        # reads its dashboard. Nodes get them from the environment their `ray start` ran in.
        return {"working_dir": str(settings.PROJECT_ROOT), "excludes": EXCLUDES, "env_vars": env}

    # --- the launcher verbs ---------------------------------------------------------------------
    def _job(self, run_id: str, attempt: int) -> RayJob:
        path = settings.run_log(run_id, self.log_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        return RayJob(self, run_id, path, attempt)

    def start(self, run_id: str, slot: int = 0) -> RayJob:
        attempt = lifecycle.attempt_of(self.mlflow.get_run(run_id))
        try:
            client = self.client
        except (RayUnavailable, settings.SettingError) as e:  # the worker ends the run FAILED with this line
            raise OSError(str(e)) from None
        job, resources = self._job(run_id, attempt), self.resources()
        try:
            client.submit_job(entrypoint=self.entrypoint(run_id), submission_id=job.submission_id,
                              runtime_env=self.runtime_env(int(resources["entrypoint_num_cpus"])),
                              metadata={"runboard_run_id": run_id}, **resources)
        except Exception as e:
            if _is_refusal(e):  # the cluster's token changed since we connected
                self.forget_client()
                raise OSError(refusal(self.address, bool(self.headers))) from None
            raise OSError(f"Ray at {self.address} refused the job: {str(e).splitlines()[0]}") from None
        lifecycle.set_tags(self.mlflow, run_id, {names.TAG_RAY_JOB: job.submission_id})
        job.log_path.write_text(f"$ {self.entrypoint(run_id)}\n# submitted to Ray as {job.submission_id}: "
                                f"{resources}\n", encoding="utf-8")
        return job

    def adopt(self, run: Run) -> RayJob | None:
        """The Ray job of a run a dead worker had started, when Ray still knows it; None otherwise."""
        if names.TAG_RAY_JOB not in run.data.tags:
            return None
        run_id, attempt = run.info.run_id, lifecycle.attempt_of(run)
        try:
            self.client.get_job_status(submission_id(run_id, attempt))
        except RuntimeError as e:  # Ray knows no such job: the caller treats the run as an orphan
            if "does not exist" in str(e):
                return None
            raise  # Ray unreachable: decide later rather than fail a run that may be training
        return self._job(run_id, attempt)

    def record_node(self, run_id: str, agent_address: str | None, node_id: str) -> None:
        """Tag the run with the node Ray placed it on."""
        host = (agent_address or "").split("://")[-1].rsplit(":", 1)[0] or "?"
        try:
            lifecycle.set_tags(self.mlflow, run_id, {names.TAG_RAY_NODE: f"{host} ({node_id[:12]})"})
        except Exception:
            log.exception("could not tag run %s with its Ray node", run_id)

    def warm(self, slot: int) -> None:
        """Nothing to pre-warm here: Ray keeps its own workers."""

    def blocked(self) -> str | None:
        """Why no job can be submitted now (Ray refuses the token), else None. The worker then leaves runs
        queued instead of failing each one it claims; the token file is read again every BLOCKED_RECHECK_S."""
        if self._client is not None:
            return None
        now = time.monotonic()
        if now - self._blocked[0] < BLOCKED_RECHECK_S:
            return self._blocked[1]
        try:
            self.connect()
            self._blocked = (now, None)
        except RayUnavailable as e:
            self._blocked = (now, str(e))
        return self._blocked[1]

    def close(self) -> None:
        """The jobs keep running without the worker; a restarted worker adopts them."""
