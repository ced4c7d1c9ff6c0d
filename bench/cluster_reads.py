"""The compare page's data on SQLite vs a tracking server on PostgreSQL; Launch -> first metric, Ray vs local.

Part 1 seeds the same 50 runs x 1,000 steps x 4 metrics into a SQLite store and, straight through
its SQL store, into a PostgreSQL database that an `mlflow server` serves, then times what the compare
page reads (dashboard/store/histories.metric_histories): cold (empty history cache) and warm, on each
store, and the naive read against the server (one get_metric_history per run and metric).
Part 2 queues one tiny run at a time and times from submit (the Launch button) to its first logged
metric, through the local launcher and through the Ray launcher (a Ray head on this machine), both
starting a fresh process, then the local launcher with its pre-warmed spare process (its default).

    .venv/bin/python bench/cluster_reads.py [--runs 50] [--steps 1000] [--repeats 3] [--skip-launch]
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
logging.getLogger("streamlit").setLevel(logging.ERROR)

import numpy as np  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric  # noqa: E402

from dashboard.store import histories  # noqa: E402
from pipeline import names  # noqa: E402
from pipeline.cluster import services  # noqa: E402

import timing  # noqa: E402  (bench/timing.py, beside this script)

KEYS = [names.TRAIN_LOSS_STEP, names.TRAIN_LOSS, names.VAL_LOSS, names.VAL_ACCURACY]


def seed(client: MlflowClient, n_runs: int, steps: int) -> dict[str, int]:
    """n_runs finished runs with `steps` points of each of KEYS; run id -> version (end time)."""
    experiment = client.create_experiment("bench-cluster")
    rng, now, versions = np.random.default_rng(0), int(time.time() * 1000), {}
    for i in range(n_runs):
        run_id = client.create_run(experiment, run_name=f"bench-{i:02d}").info.run_id
        metrics = [Metric(k, float(v), now + s, s + 1) for k in KEYS for s, v in enumerate(rng.random(steps))]
        for j in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[j:j + 1000])
        client.set_terminated(run_id)
        versions[run_id] = client.get_run(run_id).info.end_time
    return versions


def timed(fn, repeats: int) -> float:
    return timing.median_seconds(fn, repeats)


def compare_reads(uri: str, versions: dict[str, int], repeats: int) -> tuple[float, float, int]:
    """(cold s, warm s, points) of metric_histories on `uri`, as the compare page calls it."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    histories.client().search_experiments()  # connected, as in a running dashboard

    def cold():
        histories._history_cache.clear()
        return histories.metric_histories(versions, KEYS)

    points = len(cold())
    return timed(cold, repeats), timed(lambda: histories.metric_histories(versions, KEYS), repeats), points


def naive_reads(uri: str, versions: dict[str, int]) -> float:
    client = MlflowClient(uri)
    start = time.perf_counter()
    for run_id in versions:
        for key in KEYS:
            client.get_metric_history(run_id, key)
    return time.perf_counter() - start


def first_metric_seconds(launcher: str, ray_address: str | None, prewarm: bool = False) -> float:
    """Submit one tiny run and run a worker (as its own process) until the run logged its first metric."""
    import subprocess

    from pipeline.config import RunConfig
    from pipeline.queue import jobs

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    env = dict(os.environ, RUNBOARD_LAUNCHER=launcher, RUNBOARD_WORKER_PREWARM="1" if prewarm else "0")
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    worker = subprocess.Popen([sys.executable, "-m", "pipeline", "worker", "--concurrency", "1"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(8)  # the worker is up and idle, as it is before someone clicks Launch
        start = time.perf_counter()
        config = RunConfig(dataset="digits", model="cnn", epochs=1, batch_size=64, experiment="bench-launch")
        run_id = jobs.submit(config)
        while names.TRAIN_LOSS_STEP not in client.get_run(run_id).data.metrics:
            if client.get_run(run_id).info.status in names.ENDED:
                raise RuntimeError(f"run {run_id} ended before logging a metric")
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        while client.get_run(run_id).info.status not in names.ENDED:
            time.sleep(0.5)
        return elapsed
    finally:
        services.stop_group(worker, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-launch", action="store_true")
    args = parser.parse_args()
    services.postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="rb-bench-", dir="/tmp"))
    root.chmod(0o755)
    try:
        with services.team_setup(root, None if args.skip_launch else root / "ray", num_cpus=2, num_gpus=0,
                                 object_store_mb=200) as setup:
            services.use_login(setup.server)  # the server asks for a login, as make cluster's does
            db, server = setup.db, setup.server
            print(f"seeding {args.runs} runs x {args.steps} steps x {len(KEYS)} metrics into SQLite and PostgreSQL ...")
            sqlite_uri = f"sqlite:///{root / 'bench.db'}"
            sqlite_versions = seed(MlflowClient(sqlite_uri), args.runs, args.steps)
            server_versions = seed(MlflowClient(db.url), args.runs, args.steps)  # the server serves this database
            rows = [("SQLite store", *compare_reads(sqlite_uri, sqlite_versions, args.repeats)),
                    ("tracking server on PostgreSQL", *compare_reads(server.url, server_versions, args.repeats))]
            naive = naive_reads(server.url, server_versions)
            print(f"\ncompare page data, {args.runs} runs x {args.steps} steps x {len(KEYS)} metrics "
                  f"(median of {args.repeats}):")
            print(f"{'store':32} {'cold':>8} {'warm':>8} {'points':>8}")
            for name, cold, warm, points in rows:
                print(f"{name:32} {cold:7.2f}s {warm * 1000:6.0f}ms {points:8d}")
            print(f"{'server, naive (1 call/run/metric)':32} {naive:7.2f}s")
            print(f"server: bulk cold is {naive / rows[1][1]:.1f}x faster than naive; "
                  "goals cold <= 1.5 s, warm <= 200 ms")
            if setup.head:
                os.environ["MLFLOW_TRACKING_URI"] = server.url
                local = first_metric_seconds("local", None)
                ray = first_metric_seconds("ray", setup.head.address)
                warm = first_metric_seconds("local", None, prewarm=True)
                print(f"\nLaunch -> first metric (tiny digits run, worker idle): local {local:.1f} s, Ray {ray:.1f} s "
                      f"({ray - local:+.1f} s), both without a pre-warmed process; local with one (its default): "
                      f"{warm:.1f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
