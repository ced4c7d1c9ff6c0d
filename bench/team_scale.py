"""The Runs page with thousands of runs: Runboard's paged read against MLflow's own search, side by side.

Seeds one experiment of finished runs (12 params, 6 metrics each) in a SQLite store, growing it through
--sizes (1,000 then 10,000 by default), and at each size times, with the same store and process:
- the anchor: MLflow's search_runs of one page of 100, newest first (what its UI asks for);
- Runboard's store read of that page (dashboard/store/listings.runs_page: search, SQL count), cold;
- the capped listing the page read before it paged (listings.runs: up to 5,000 runs into pandas), cold;
- the Runs page in Streamlit's AppTest: first draw with the app's start (caches empty), warm (a rerun),
  and with the filter `metrics.test_accuracy > 0.95 and params.model = 'cnn'`.
With --server, the same experiment is then served by `mlflow server` on PostgreSQL (make cluster's
services, on loopback) and the page read and the anchor are timed over REST.

    .venv/bin/python bench/team_scale.py [--sizes 1000 10000] [--repeats 5] [--server]
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
import streamlit.logger  # noqa: E402

streamlit.logger.set_log_level("error")  # AppTest and bare cache calls warn once per call otherwise

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, ViewType  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pipeline import names  # noqa: E402

import timing  # noqa: E402  (bench/timing.py, beside this script)

EXPERIMENT = "bench-scale"
FILTER = f"metrics.{names.TEST_ACCURACY} > 0.95 and params.model = 'cnn'"
PARAMS = ("dataset", "model", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "augment",
          "seed", "image_size", "val_fraction")
METRICS = (names.TEST_ACCURACY, names.TEST_F1, names.VAL_ACCURACY, names.VAL_LOSS, names.TRAIN_LOSS, "epoch_s")


def seed(client: MlflowClient, experiment: str, start: int, stop: int, t0: int) -> None:
    """Runs start..stop-1, one ms apart, finished; every 7th FAILED; params and metrics vary with i."""
    for i in tqdm(range(start, stop), desc="seeding runs", unit="run", leave=False):
        run_id = client.create_run(experiment, start_time=t0 + i, run_name=f"scale-{i:05d}").info.run_id
        params = [Param(p, str(i % (k + 2))) for k, p in enumerate(PARAMS)]
        params[1] = Param("model", ("cnn", "mlp", "resnet18")[i % 3])
        metrics = [Metric(m, ((i * 37 + k * 11) % 1000) / 1000, t0 + i, 0) for k, m in enumerate(METRICS)]
        client.log_batch(run_id, metrics=metrics, params=params)
        client.set_terminated(run_id, "FAILED" if i % 7 == 0 else "FINISHED", end_time=t0 + i + 1)


def median_s(fn, repeats: int) -> float:
    return timing.median_seconds(fn, repeats, warm_up=True)


def cold(fn):
    """fn with Streamlit's data caches emptied first: what the first person after a change waits for."""
    import streamlit as st

    def run():
        st.cache_data.clear()
        return fn()
    return run


def page_times(experiment: str, repeats: int) -> dict[str, float]:
    """The Runs page through AppTest: first draw (a fresh app, caches empty), a warm rerun, and filtered."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    def fresh(**query) -> AppTest:
        st.cache_data.clear()
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
        at.query_params.update({"experiment": EXPERIMENT, **query})
        return at

    def drawn(at: AppTest) -> AppTest:
        at.run()
        assert not at.exception and not at.error, (at.exception, at.error)
        assert len(at.dataframe[0].value) > 0
        return at

    warm_app = fresh()
    return {"first": median_s(lambda: drawn(fresh()), repeats), "warm": median_s(lambda: drawn(warm_app), repeats),
            "filtered": median_s(lambda: drawn(fresh(filter=FILTER)), repeats)}


def store_times(uri: str, experiment: str, repeats: int, with_listing: bool) -> dict[str, float]:
    """MLflow's one page (the anchor) against Runboard's page read, and the old capped listing, cold."""
    from dashboard.store import listings

    os.environ["MLFLOW_TRACKING_URI"] = uri
    client = MlflowClient(uri)
    client.search_experiments()  # connected, as in a running dashboard
    out = {
        "anchor": median_s(lambda: client.search_runs([experiment], "", ViewType.ACTIVE_ONLY, max_results=100,
                                                      order_by=["attributes.start_time DESC"]), repeats),
        "page": median_s(cold(lambda: listings.runs_page(experiment, size=100)), repeats),
        "anchor_filtered": median_s(lambda: client.search_runs([experiment], FILTER, ViewType.ACTIVE_ONLY,
                                                               max_results=100), repeats),
        "page_filtered": median_s(cold(lambda: listings.runs_page(experiment, FILTER, size=100, top_level=False)),
                                  repeats),
    }
    if with_listing:
        out["listing"] = median_s(cold(lambda: listings.runs([experiment])), max(1, repeats // 2))
    return out


def report(size: int, where: str, times: dict[str, float]) -> None:
    print(f"\n{size:,} runs, {where}:")
    print(f"  MLflow search_runs, one page of 100 (anchor)  {times['anchor'] * 1000:8.1f} ms")
    print(f"  Runboard's page read (search + count), cold   {times['page'] * 1000:8.1f} ms  "
          f"({times['page'] / times['anchor']:.2f}x the anchor; goal <= 1.5x)")
    print(f"  filtered: MLflow {times['anchor_filtered'] * 1000:.1f} ms, Runboard {times['page_filtered'] * 1000:.1f} ms"
          f" ({times['page_filtered'] / times['anchor_filtered']:.2f}x)")
    if "listing" in times:
        print(f"  the capped listing the page used to read      {times['listing'] * 1000:8.1f} ms  "
              f"({times['listing'] / times['page']:.1f}x the paged read)")
    if "first" in times:
        print(f"  Runs page in AppTest: first draw {times['first']:.2f} s (goal <= 1.0), warm {times['warm']:.3f} s "
              f"(goal <= 0.2), filtered {times['filtered']:.2f} s (goal <= 1.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="runs in the experiment, growing")
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure; the median is reported")
    parser.add_argument("--server", action="store_true", help="also over mlflow server on PostgreSQL (needs it)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rb-scale-", dir="/tmp"))
    folder.chmod(0o755)  # PostgreSQL's user keeps its data inside (--server), removed with the folder
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ.update(MLFLOW_TRACKING_URI=uri, RUNBOARD_DATA_ROOT=str(folder))
    client, t0, seeded = MlflowClient(uri), int(time.time() * 1000) - 86_400_000, 0
    experiment = client.create_experiment(EXPERIMENT, artifact_location=str(folder / "artifacts"))
    try:
        for size in sorted(args.sizes):
            started = time.perf_counter()
            seed(client, experiment, seeded, size, t0)
            print(f"seeded {size - seeded:,} runs in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            seeded = size
            times = store_times(uri, experiment, args.repeats, with_listing=True)
            times |= page_times(experiment, args.repeats)
            report(size, "SQLite", times)
        if args.server:
            server_figures(folder, uri, experiment, args.repeats, seeded)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def server_figures(folder: Path, sqlite_uri: str, experiment: str, repeats: int, size: int) -> None:
    """The same runs copied into PostgreSQL behind `mlflow server`: the page read over REST."""
    from pipeline.cluster import services

    with services.team_setup(folder / "team", None) as setup:
        services.use_login(setup.server)  # the server asks for a login, as make cluster's does
        direct, served = MlflowClient(setup.db.url), MlflowClient(setup.server.url)
        remote = served.create_experiment(EXPERIMENT)
        started = time.perf_counter()
        seed(direct, remote, 0, size, int(time.time() * 1000) - 86_400_000)
        print(f"seeded {size:,} runs into PostgreSQL in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        times = store_times(setup.server.url, remote, repeats, with_listing=False)
        times |= page_times(remote, repeats)
        report(size, "mlflow server on PostgreSQL (no count over REST)", times)
    os.environ["MLFLOW_TRACKING_URI"] = sqlite_uri


if __name__ == "__main__":
    main()
