"""Dashboard cold start: from starting the server to the Runs page rendered in a real browser.

Runs this checkout and, with --other DIR, another checkout (e.g. `git worktree add /tmp/before REV`)
side by side, interleaved, on the same empty store, so the ratio is fair on a busy machine:

    .venv/bin/python bench/dashboard_cold_start.py --other /tmp/before --repeats 3

Needs Debian's chromium (/usr/bin/chromium), as the browser test does.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, _free_port  # noqa: E402  (the browser test's own set-up)


def cold_start(project: Path, store: str, browser) -> float:
    """Seconds from `python -m dashboard.serve` to the Runs page's empty state drawn in the browser."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "RUNBOARD_PORT": str(port)}
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "dashboard.serve"], cwd=project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    page = browser.new_page()
    try:
        while True:
            try:
                page.goto(f"http://127.0.0.1:{port}/", timeout=5000)
                break
            except Exception:
                if server.poll() is not None or time.perf_counter() - start > 120:
                    raise RuntimeError(f"the dashboard of {project} did not start")
                time.sleep(0.1)
        page.get_by_text("No runs yet").first.wait_for(timeout=120_000)
        return time.perf_counter() - start
    finally:
        page.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, help="another checkout to race (it must have .venv or use ours)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        MlflowClient(store).search_experiments()  # tables made before the clock starts
        projects = {"this checkout": ROOT} | ({f"other ({args.other})": args.other} if args.other else {})
        times: dict[str, list[float]] = {name: [] for name in projects}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(args.repeats):
                for name, project in projects.items():
                    times[name].append(cold_start(project, store, browser))
            browser.close()
    for name, values in times.items():
        print(f"{name:<40} median {statistics.median(values):5.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    if args.other:
        mine, other = (statistics.median(v) for v in times.values())
        print(f"ratio other / this checkout: {other / mine:.2f}x")


if __name__ == "__main__":
    main()
