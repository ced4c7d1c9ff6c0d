"""`make cluster`: the team setup on this machine, on loopback, until Ctrl-C.

Starts PostgreSQL (data kept in mlruns/cluster/), `mlflow server` on it with proxied artifacts (it also
serves MLflow's UI), a Ray head, a worker with the Ray launcher and the dashboard; Ctrl-C stops them
in reverse order (running runs end KILLED) and leaves nothing running.

    .venv/bin/python -m pipeline.cluster
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline import settings
from pipeline.cluster import services

DATA = settings.PROJECT_ROOT / "mlruns" / "cluster"


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=settings.PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _stop_worker(worker: subprocess.Popen) -> None:
    """Two SIGTERMs: the worker's cold stop, so runs still training end KILLED rather than orphaned."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
    services.stop_group(worker, timeout=60)


def main() -> int:
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    DATA.mkdir(parents=True, exist_ok=True)
    logs = DATA / "logs"
    logs.mkdir(exist_ok=True)
    ray_dir = Path(tempfile.mkdtemp(prefix="runboard-ray-"))  # short: Ray's socket paths have a length limit
    worker = dashboard = None
    print("starting PostgreSQL, mlflow server and a Ray head ...", flush=True)
    try:
        with services.team_setup(DATA, ray_dir, num_cpus=os.cpu_count() or 1, mlflow_port=settings.mlflow_port(),
                                 logs=logs, artifacts=settings.artifacts_destination()) as setup:
            env = dict(os.environ, MLFLOW_TRACKING_URI=setup.server.url, RAY_ADDRESS=setup.head.address,
                       RUNBOARD_LAUNCHER="ray", RUNBOARD_MLFLOW_UI_URL=setup.server.url,
                       RUNBOARD_DATA_ROOT=str(settings.data_root()),  # one machine: the jobs share its datasets
                       RUNBOARD_MLFLOW_CREDENTIALS=str(setup.server.credentials),  # the service account's login
                       RUNBOARD_SIGN_IN=os.environ.get("RUNBOARD_SIGN_IN") or "mlflow")  # each person as themselves
            env["RUNBOARD_RAY_TOKEN_FILE"] = str(setup.head.token_file)  # the worker's Ray requests carry it
            try:
                worker = _start([sys.executable, "-m", "pipeline", "worker"], env, logs / "worker.log")
                dashboard = _start([sys.executable, "-m", "dashboard.serve"], env, logs / "dashboard.log")
                print(f"\nRunboard on the cluster setup (logs in {logs}):\n"
                      f"  dashboard      http://{settings.host()}:{settings.port()}  (people sign in with their MLflow "
                      "users: docs/cluster.md)\n"
                      f"  MLflow         {setup.server.url}  (tracking server on PostgreSQL, port {setup.db.port}; "
                      f"it asks for a login: the admin's is in {DATA / 'auth' / 'admin.ini'})\n"
                      f"  Ray dashboard  {setup.head.address}  (RAY_ADDRESS; other nodes: "
                      f"ray start --address={setup.head.gcs})\n"
                      f"  Ray token      in {setup.head.token_file} (0600; other nodes and job submissions need it: "
                      f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={setup.head.token_file} ray ...)\n"
                      "Ctrl-C stops everything.", flush=True)
                while not stop:
                    for name, process in (("worker", worker), ("dashboard", dashboard)):
                        if process.poll() is not None:
                            print(f"the {name} exited with code {process.returncode}; see {logs / (name + '.log')}")
                            stop.append(1)
                    time.sleep(0.5)
            finally:
                print("\nstopping ...", flush=True)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
                if worker:
                    _stop_worker(worker)
                if dashboard:
                    services.stop_group(dashboard)
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    print("stopped; the runs are kept in mlruns/cluster/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
