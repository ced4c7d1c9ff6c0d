"""Compare's first draw: sampled histories against full ones, on SQLite and over a tracking server on PostgreSQL.

Seeds the same 50 runs x 4 metrics x 10,000 steps (2,000,000 points) into a SQLite store and, straight
through its SQL tables, into the PostgreSQL database that an `mlflow server` serves. Then times, side by
side, what the Compare page reads: store.sampled_histories (at most SAMPLED_POINTS a curve), cold (empty
caches) and warm, and store.metric_histories (every point), cold and warm; and, as the anchor, MLflow's
own sampling with max_results=320, as its UI asks: SqlAlchemyStore.get_metric_history_bulk_interval on
SQLite, the get-history-bulk-interval endpoint (one request per metric, all runs) over the server.

    .venv/bin/python bench/compare_sampled.py [--runs 50] [--steps 10000] [--repeats 3] [--skip-full]
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
logging.getLogger("streamlit").setLevel(logging.ERROR)

import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.store.tracking.dbmodels.models import SqlMetric  # noqa: E402

from dashboard.store import histories, mlflow_internals  # noqa: E402
from pipeline import names, settings  # noqa: E402
from pipeline.cluster import services  # noqa: E402

KEYS = [names.TRAIN_LOSS_STEP, names.TRAIN_LOSS, names.VAL_LOSS, names.VAL_ACCURACY]
MLFLOW_UI_POINTS = 320  # what MLflow's UI asks get-history-bulk-interval for


def seed(client: MlflowClient, n_runs: int, steps: int) -> dict[str, int]:
    """n_runs finished runs with `steps` points of each of KEYS, inserted in bulk; run id -> version."""
    experiment = client.create_experiment("bench-compare")
    store, rng, now, versions = client._tracking_client.store, np.random.default_rng(0), int(time.time() * 1000), {}
    for i in range(n_runs):
        run_id = client.create_run(experiment, run_name=f"bench-{i:02d}").info.run_id
        rows = []
        for key in KEYS:
            values = 1 / np.sqrt(np.arange(1, steps + 1)) + rng.normal(0, 0.02, steps)
            values[rng.integers(steps)] = 5.0  # a spike somewhere
            rows += [dict(key=key, value=float(v), timestamp=now + s, step=s + 1, run_uuid=run_id, is_nan=False)
                     for s, v in enumerate(values)]
        with store.ManagedSessionMaker() as session:
            session.execute(sa.insert(SqlMetric), rows)
        client.set_terminated(run_id)
        versions[run_id] = client.get_run(run_id).info.end_time
    return versions


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def cold_caches() -> None:
    histories._history_cache.clear()
    histories._sampled_cache.clear()


def dashboard_reads(uri: str, versions: dict[str, int], repeats: int, full: bool) -> dict[str, tuple[float, int]]:
    """(seconds, points) of the Compare page's reads on `uri`, cold and warm."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    histories.client().search_experiments()  # connected, as in a running dashboard
    out = {}

    def cold_sampled():
        cold_caches()
        return histories.sampled_histories(versions, KEYS)

    out["sampled, cold"] = timed(cold_sampled, repeats)
    out["sampled, warm"] = timed(lambda: histories.sampled_histories(versions, KEYS), repeats)
    if full:
        def cold_full():
            cold_caches()
            return histories.metric_histories(versions, KEYS)

        out["full, cold"] = timed(cold_full, 1)
        out["full, warm"] = timed(lambda: histories.metric_histories(versions, KEYS), repeats)
    return {name: (seconds, len(frame)) for name, (seconds, frame) in out.items()}


def mlflow_sqlite_anchor(uri: str, versions: dict[str, int], repeats: int) -> tuple[float, int]:
    """MLflow's own sampling on the SQLite store, as its server would run it: per metric, all runs."""
    store = MlflowClient(uri)._tracking_client.store

    def read():
        return sum(len(store.get_metric_history_bulk_interval(list(versions), key, MLFLOW_UI_POINTS, None, None))
                   for key in KEYS)

    return timed(read, repeats)


def mlflow_server_anchor(uri: str, versions: dict[str, int], repeats: int) -> tuple[float, int]:
    """The bulk-interval endpoint as MLflow's UI calls it: max_results=320, one request per metric, in parallel."""
    host_creds = MlflowClient(uri)._tracking_client.store.get_host_creds
    requests = [(key, list(versions)) for key in KEYS]
    return timed(lambda: len(mlflow_internals._bulk_interval_rows(host_creds, requests, MLFLOW_UI_POINTS)), repeats)


def report(title: str, rows: dict[str, tuple[float, int]], anchor: tuple[float, int], goal_cold: float) -> None:
    print(f"\n{title}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  {'read':34} {'time':>9} {'points':>10}")
    for name, (seconds, points) in rows.items():
        print(f"  {name:34} {seconds * 1000:7.0f}ms {points:10,d}")
    print(f"  {'MLflow bulk-interval, 320/run':34} {anchor[0] * 1000:7.0f}ms {anchor[1]:10,d}")
    sampled = rows["sampled, cold"][0]
    ratios = [f"sampled cold / MLflow's own call {sampled / anchor[0]:.2f}"]
    if "full, cold" in rows:
        ratios.append(f"full cold / sampled cold {rows['full, cold'][0] / sampled:.1f}")
    print(f"  ratios: {'; '.join(ratios)}. Goals: sampled cold <= {goal_cold:.1f} s, warm <= 0.2 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-full", action="store_true", help="leave out the full reads (minutes at 10,000 steps)")
    args = parser.parse_args()
    services.postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="rb-bench-", dir="/tmp"))
    root.chmod(0o755)
    try:
        with services.team_setup(root, None) as setup:
            credentials = getattr(setup.server, "credentials", None)  # MLflow's login on: its service account
            if credentials:
                os.environ["RUNBOARD_MLFLOW_CREDENTIALS"] = str(credentials)
                settings.use_tracking_credentials()
            print(f"seeding {args.runs} runs x {len(KEYS)} metrics x {args.steps:,} steps into SQLite and "
                  "PostgreSQL ...", flush=True)
            sqlite_uri = f"sqlite:///{root / 'bench.db'}"
            started = time.perf_counter()
            sqlite_versions = seed(MlflowClient(sqlite_uri), args.runs, args.steps)
            server_versions = seed(MlflowClient(setup.db.url), args.runs, args.steps)
            print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
            points = args.runs * len(KEYS) * args.steps
            sqlite = dashboard_reads(sqlite_uri, sqlite_versions, args.repeats, not args.skip_full)
            report(f"SQLite store, {points:,} points (median of {args.repeats}; full cold: once)", sqlite,
                   mlflow_sqlite_anchor(sqlite_uri, sqlite_versions, args.repeats), 1.0)
            server = dashboard_reads(setup.server.url, server_versions, args.repeats, not args.skip_full)
            report(f"tracking server on PostgreSQL, {points:,} points (median of {args.repeats}; full cold: once)",
                   server, mlflow_server_anchor(setup.server.url, server_versions, args.repeats), 1.5)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
