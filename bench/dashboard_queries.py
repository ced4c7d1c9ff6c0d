"""What opening the compare page costs: dashboard/store.py (bulk + cached) vs the naive way.

Seeds 20 finished runs x 1,000 optimizer steps (plus 10 epochs of epoch metrics) into a throwaway
SQLite store with log_batch, then times the data the compare page reads for all 20 runs:
- naive: one search_runs, then one get_metric_history per run per metric, no cache;
- store cold: empty caches (the client already connected, as in a running dashboard);
- store warm: the same page opened again (listing within its TTL, histories cached);
- store warm, listing expired: the runs listing re-read, histories still cached (a later visit).
Then the compare page itself through Streamlit's AppTest, first and warm, and the chart builder
alone on 50 runs x 10,000 steps. Prints medians and ratios.

    .venv/bin/python bench/dashboard_queries.py [--runs 20] [--steps 1000] [--repeats 5]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
logging.getLogger("streamlit").setLevel(logging.ERROR)  # "no runtime" warnings outside `streamlit run`

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

from dashboard import charts, store  # noqa: E402
from dashboard.store import histories  # noqa: E402
from dashboard.views.compare import DEFAULT_METRICS  # noqa: E402
from pipeline import names  # noqa: E402

import timing  # noqa: E402  (bench/timing.py, beside this script)
from pipeline.runs import tracking  # noqa: E402
from pipeline.config import RunConfig  # noqa: E402

EPOCHS = 10


def seed(n_runs: int, steps: int) -> list[str]:
    """Finished runs shaped like real ones: params, per-step loss, per-epoch metrics, test metrics."""
    client = tracking.connect()
    experiment = tracking.experiment_id(client, "bench-dashboard")
    rng, now, ids = np.random.default_rng(0), int(time.time() * 1000), []
    for i in range(n_runs):
        config = RunConfig(dataset="digits", model=("cnn", "mlp")[i % 2], lr=float(10 ** -rng.uniform(2, 4)),
                           epochs=EPOCHS, seed=i)
        run_id = client.create_run(experiment, run_name=f"bench-{i:02d}").info.run_id
        loss = np.exp(-np.arange(steps) / (steps / 3)) * 2 + rng.normal(0, 0.05, steps)
        metrics = [Metric(names.TRAIN_LOSS_STEP, float(v), now + s, s + 1) for s, v in enumerate(loss)]
        for e in range(1, EPOCHS + 1):
            metrics += [Metric(k, float(rng.uniform(0.1, 1)), now + steps + e, e) for k in names.EPOCH_METRICS]
        metrics += [Metric(k, float(rng.uniform(0.8, 1)), now + steps + 99, EPOCHS) for k in names.TEST_METRICS]
        for j in range(0, len(metrics), tracking.MAX_BATCH):
            client.log_batch(run_id, metrics=metrics[j:j + tracking.MAX_BATCH])
        client.log_batch(run_id, params=[Param(k, v) for k, v in config.to_params().items()],
                         tags=[RunTag("runboard.train_images", "1295")])
        client.set_terminated(run_id, "FINISHED")
        ids.append(run_id)
    return ids


def naive(ids: list[str], keys: tuple[str, ...]) -> pd.DataFrame:
    """The habit the issue names: one get_metric_history per run per metric, nothing cached."""
    client = tracking.connect()
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = {r.info.run_id: r for r in client.search_runs(experiments, max_results=1000)}
    rows = [(run_id, m.key, m.step, m.timestamp, m.value)
            for run_id in ids if run_id in runs for key in keys for m in client.get_metric_history(run_id, key)]
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "timestamp", "value"])


def cached(ids: list[str], keys: tuple[str, ...]) -> pd.DataFrame:
    """What the compare page reads through the store."""
    runs = store.runs()
    selected = runs[runs["run_id"].isin(ids)]
    return store.metric_histories(store.versions(selected), keys)


def clear_data_caches() -> None:
    st.cache_data.clear()
    histories._history_cache.clear()


def apptest_compare(ids: list[str]) -> tuple[float, float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.switch_page("views/compare.py")
    at.query_params["runs"] = ",".join(ids)
    start = time.perf_counter()
    at.run()
    first = time.perf_counter() - start
    assert not at.exception, at.exception
    start = time.perf_counter()
    at.run()
    return first, time.perf_counter() - start


def big_figure(n_runs: int = 50, steps: int = 10_000) -> tuple[float, int]:
    """Building one metric chart of 50 runs x 10,000 steps, smoothed: seconds and points drawn."""
    rng = np.random.default_rng(1)
    history = pd.DataFrame({"run_id": np.repeat([f"r{i}" for i in range(n_runs)], steps), "key": "loss",
                            "step": np.tile(np.arange(1, steps + 1), n_runs), "timestamp": 0,
                            "value": rng.normal(1, 0.1, n_runs * steps)})
    ids = [f"r{i}" for i in range(n_runs)]
    start = time.perf_counter()
    fig = charts.metric_figure(history, "loss", charts.run_colors(ids), {r: r for r in ids}, smoothing=0.6)
    return time.perf_counter() - start, sum(len(t.x) for t in fig.data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    start = time.perf_counter()
    ids = seed(args.runs, args.steps)
    keys = tuple(DEFAULT_METRICS)
    print(f"seeded {args.runs} runs x {args.steps} steps (+{EPOCHS} epochs of {len(names.EPOCH_METRICS)} metrics) "
          f"in {time.perf_counter() - start:.1f} s; compare page metrics: {', '.join(keys)}")
    store.client()  # connected once, as in a running dashboard
    points = len(cached(ids, keys))
    assert points == len(naive(ids, keys)), "the two ways must read the same points"

    t_naive = timing.median_seconds(lambda: naive(ids, keys), args.repeats)
    t_cold = timing.median_seconds(lambda: cached(ids, keys), args.repeats, before=clear_data_caches)
    cached(ids, keys)
    t_warm = timing.median_seconds(lambda: cached(ids, keys), args.repeats)
    t_listing = timing.median_seconds(lambda: cached(ids, keys), args.repeats, before=st.cache_data.clear)
    print(f"\ncompare page data, {args.runs} runs, {points:,} points (median of {args.repeats}):")
    print(f"  naive (get_metric_history per run per metric): {t_naive * 1000:8.1f} ms")
    for label, seconds in (("store cold (empty caches, bulk reads):", t_cold),
                           ("store warm, listing expired (1 search_runs):", t_listing),
                           ("store warm (page reopened within the TTL):", t_warm)):
        print(f"  {label:<47} {seconds * 1000:8.1f} ms   {t_naive / seconds:6.1f}x faster")

    first, warm = apptest_compare(ids)
    print(f"\ncompare page through AppTest ({args.runs} runs, {len(keys)} charts, diff table, parallel coordinates):")
    print(f"  first run (imports, connection, cold caches):   {first:8.2f} s")
    print(f"  warm rerun:                                     {warm:8.2f} s")

    seconds, drawn = big_figure()
    print(f"\none chart of 50 runs x 10,000 steps, smoothed: built in {seconds:.2f} s, "
          f"{drawn:,} points drawn of 1,000,000 (raw + smoothed)")


if __name__ == "__main__":
    main()
