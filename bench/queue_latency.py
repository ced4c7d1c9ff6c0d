"""How fast the queue answers: submit -> RUNNING -> first metric, and a waiting worker's CPU use.

Starts a real worker on a throwaway store and submits tiny digits runs the way the Launch button
does (pipeline.jobs.submit), timing what a person watching the live view sees: once with cold
training processes (RUNBOARD_WORKER_PREWARM=0), once with the warm spare (the default). Then
measures the worker's CPU over IDLE_SECONDS with an empty queue.
Run: .venv/bin/python bench/queue_latency.py
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 3
IDLE_SECONDS = 30


def start_worker(root: Path, prewarm: bool) -> subprocess.Popen:
    env = {**os.environ, "RUNBOARD_WORKER_PREWARM": "1" if prewarm else "0"}
    return subprocess.Popen([sys.executable, "-m", "pipeline", "worker", "--concurrency", "1"], env=env,
                            stdout=open(root / f"worker-{prewarm}.log", "wb"), stderr=subprocess.STDOUT)


def wait_idle(root: Path, prewarm: bool) -> None:
    """Until the worker could take a run the way a person finds it: its spare (if any) ready."""
    spare = root / "logs" / "spare-0.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and prewarm and not (spare.exists() and "ready" in spare.read_text()):
        time.sleep(0.2)
    time.sleep(2)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="runboard-bench-"))
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", RUNBOARD_DATA_ROOT=str(root),
                      RUNBOARD_LOG_DIR=str(root / "logs"))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import psutil

    from pipeline.queue import jobs
    from pipeline.runs import tracking
    from pipeline import names
    from pipeline.config import RunConfig

    client = tracking.connect()
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.1f}")
    for prewarm in (False, True):
        worker = start_worker(root, prewarm)
        try:
            firsts = []
            time.sleep(10)  # the worker's own start-up is not what a person waits for
            for _ in range(ROUNDS):
                wait_idle(root, prewarm)
                (root / "logs" / "spare-0.log").unlink(missing_ok=True)
                t0 = time.monotonic()
                run_id = jobs.submit(RunConfig(dataset="digits", model="mlp", epochs=1, experiment="bench"),
                                     client=client)
                running = first = None
                while first is None:
                    run = client.get_run(run_id)
                    now = time.monotonic() - t0
                    running = running or (now if run.info.status == "RUNNING" else None)
                    first = now if names.TRAIN_LOSS_STEP in run.data.metrics else None
                    time.sleep(0.1)
                firsts.append(first)
                print(f"  {'warm' if prewarm else 'cold'}: RUNNING after {running:.1f} s, first "
                      f"{names.TRAIN_LOSS_STEP} after {first:.1f} s (load {os.getloadavg()[0]:.1f})")
                while client.get_run(run_id).info.status in jobs.ACTIVE:
                    time.sleep(0.2)
                pid = int(client.get_run(run_id).data.tags[names.TAG_PID])
                while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    time.sleep(0.2)  # the slot frees when the training process has exited
            print(f"{'warm spare' if prewarm else 'cold start'}: median {statistics.median(firsts):.1f} s "
                  f"from submit to RUNNING with a first {names.TRAIN_LOSS_STEP}")
            if prewarm:
                wait_idle(root, prewarm)
                proc = psutil.Process(worker.pid)
                before, t0 = proc.cpu_times(), time.monotonic()
                time.sleep(IDLE_SECONDS)
                after, seconds = proc.cpu_times(), time.monotonic() - t0
                used = (after.user + after.system) - (before.user + before.system)
                spares = proc.children()
                print(f"idle worker: {used:.2f} CPU-s over {seconds:.0f} s = {100 * used / seconds:.2f} % of one "
                      f"core; RSS worker {proc.memory_info().rss / 2**20:.0f} MiB, spare "
                      f"{sum(p.memory_info().rss for p in spares) / 2**20:.0f} MiB, spare CPU "
                      f"{sum(p.cpu_percent(1.0) for p in spares):.1f} %")
        finally:
            worker.terminate()
            worker.wait(timeout=60)


if __name__ == "__main__":
    main()
