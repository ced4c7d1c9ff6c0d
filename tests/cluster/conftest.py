"""The team setup, real and on loopback, once for tests/cluster: PostgreSQL, `mlflow server` on it with
proxied artifacts, a Ray head with 2 CPUs, and a worker process with the Ray launcher.

Every service is started here and stopped after the last cluster test, leaving nothing running.
Skipped (with the reason) only where PostgreSQL's binaries are missing; CI installs them (.ci/run).
Run: .venv/bin/python -m pytest tests/cluster -q -m cluster
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from pipeline import names
from pipeline.cluster import services
from pipeline.config import RunConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(dataset="digits", model="cnn", batch_size=64, experiment="cluster")
MODEL = "ray-digits"  # registered by the first of finished_runs


@dataclass
class Cluster:
    tracking_uri: str
    ray_address: str
    root: Path
    db_url: str  # the server's PostgreSQL, for seeding many runs straight into its tables
    ray_token_file: Path  # the Ray head's token (RUNBOARD_RAY_TOKEN_FILE): without it Ray refuses every request
    s3: services.S3Server  # where the server keeps artifacts: a bucket on moto's S3 server


class WorkerProcess:
    """`python -m pipeline worker` with the Ray launcher, as `make cluster` runs it."""

    def __init__(self, root: Path):
        self.root, self.process, self.count = root, None, 0

    def start(self) -> None:
        self.count += 1
        log = open(self.root / f"worker-{self.count}.log", "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "pipeline", "worker", "--concurrency", "2"],
                                        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def kill9(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.send_signal(signal.SIGTERM)  # cold: runs still going end KILLED
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="package")
def cluster():
    """PostgreSQL + mlflow server + Ray head, and the environment that points everything at them."""
    try:
        services.postgres_bin()
    except services.ServiceMissing as e:
        pytest.skip(f"cluster tests need PostgreSQL's binaries ({e})")
    root = Path(tempfile.mkdtemp(prefix="rb-cluster-", dir="/tmp"))
    root.chmod(0o755)  # the postgres user reaches its data folder inside
    started = time.monotonic()
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RUNBOARD_LAUNCHER",
                                          "RUNBOARD_LOG_DIR", "RUNBOARD_DATA_ROOT", "RUNBOARD_WORKER_PREWARM",
                                          "RUNBOARD_MLFLOW_CREDENTIALS", "MLFLOW_TRACKING_USERNAME",
                                          "MLFLOW_TRACKING_PASSWORD")}
    old["RUNBOARD_RAY_TOKEN_FILE"] = os.environ.get("RUNBOARD_RAY_TOKEN_FILE")
    before = mlflow.get_tracking_uri()
    try:
        with services.team_setup(root, root / "ray", num_cpus=2, num_gpus=0, logs=root, object_store_mb=200,
                                 s3=True) as setup:  # artifacts in a bucket, as a team's server keeps them
            os.environ.update(MLFLOW_TRACKING_URI=setup.server.url, RAY_ADDRESS=setup.head.address,
                              RUNBOARD_LAUNCHER="ray", RUNBOARD_LOG_DIR=str(root / "logs"),
                              RUNBOARD_DATA_ROOT=str(root / "data"), RUNBOARD_WORKER_PREWARM="0")
            services.use_login(setup.server)  # this process, the worker and the jobs as the service account
            os.environ["RUNBOARD_RAY_TOKEN_FILE"] = str(setup.head.token_file)  # the worker's and the tests'
            (root / "data").mkdir()
            print(f"\ncluster services up in {time.monotonic() - started:.1f} s", file=sys.stderr)
            yield Cluster(setup.server.url, setup.head.address, root, setup.db.url, setup.head.token_file, setup.s3)
            started = time.monotonic()
        print(f"\ncluster services stopped in {time.monotonic() - started:.1f} s", file=sys.stderr)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        mlflow.set_tracking_uri(before)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")
def worker(cluster):
    process = WorkerProcess(cluster.root)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="package")
def finished_runs(worker) -> list[str]:
    """Two short runs submitted together: the worker's two slots train them on Ray at once; the first
    registers its model as MODEL."""
    ids = [submit(epochs=2, run_name="ray-a", register=MODEL), submit(epochs=2, lr=1e-2, run_name="ray-b")]
    for run_id in ids:
        ended(run_id)
    return ids


def submit(**config) -> str:
    from pipeline.queue import jobs

    return jobs.submit(RunConfig(**{**TINY, **config}))


def wait_for(run_id: str, check, timeout: float = 180.0, what: str = ""):
    """Poll the run until `check(run)` is true; its last state in the failure message."""
    from pipeline.runs import tracking

    client = tracking.connect()
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_run(run_id)
        if check(run):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} not {what} after {timeout:.0f} s: {described(run)}")
        time.sleep(0.5)


def described(run) -> str:
    """A run's status and every tag that says why, for a failure message that can be read from CI's log alone."""
    tags = run.data.tags
    return (f"{run.info.status}; error: {tags.get(names.TAG_ERROR, '')}; "
            f"attempts: {tags.get(names.TAG_ATTEMPT_HISTORY, '')}\n"
            f"traceback: {tags.get(names.TAG_TRACEBACK, '')[-2000:]}\nlog tail: {tags.get(names.TAG_LOG_TAIL, '')[-2000:]}")


def ended(run_id: str, timeout: float = 180.0, status: str | None = None):
    """The run once it ended; with `status`, a failure that says why when it ended otherwise."""
    run = wait_for(run_id, lambda r: r.info.status in names.ENDED, timeout, "ended")
    if status is not None and run.info.status != status:
        raise AssertionError(f"run {run_id} should have ended {status}, but ended {described(run)}")
    return run


def training(run_id: str, timeout: float = 120.0):
    """Wait until the run has logged its first per-step loss (it trains on a Ray node)."""
    return wait_for(run_id, lambda r: names.TRAIN_LOSS_STEP in r.data.metrics or r.info.status in names.ENDED,
                    timeout, "training")
