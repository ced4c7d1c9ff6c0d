"""What a study's pruner and sampler buy, side by side in one run, on a throwaway store.

1. The median pruner against no pruner: the same TPE study (same seed) twice; epochs trained and the
   best test accuracy of its completed trials.
2. TPE against random: the same budget, SEEDS seeds each; the best val accuracy of each study.
3. The overhead per trial: a study's trial against a plain queued run of the same config, alternated;
   seconds from queueing to the run's end, both trained in this process as a worker's child would
   (the process start-up is the same for both, so it is left out).

Trials run in this process one after another (drive the study, train each queued trial), exactly
the code a worker's child runs. The issue's full configuration is the default; a smaller one fits
a busy 2-core machine:
Run: .venv/bin/python bench/study_pruning.py [--trials 16] [--epochs 5] [--seeds 3] [--model cnn]
                                            [--skip-pruner] [--skip-sampler] [--overhead-rounds 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

SPACE_SPECS = ["lr=1e-5:1:log", "weight_decay=0:1e-2", "batch_size=32,64,128"]


def run_study(client, study_id: str) -> None:
    """What a worker does, in this process: drive the study, train each queued trial, until it ends."""
    from pipeline import names
    from pipeline.queue import study
    from pipeline.runs import lifecycle, train

    experiment = client.get_run(study_id).info.experiment_id
    while client.get_run(study_id).info.status == "RUNNING":
        study.drive_one(client, client.get_run(study_id))
        for run in client.search_runs([experiment], f"tags.\"{names.TAG_STUDY_ID}\" = '{study_id}' AND "
                                                    "attributes.status = 'SCHEDULED'"):
            lifecycle.claim(client, run.info.run_id, "bench")
            lifecycle.mark_running(client, run.info.run_id, {})
            try:
                train.run_queued(run.info.run_id, progress=False)
            except Exception as e:  # a diverged trial ends FAILED, as under a worker
                print(f"  trial {run.info.run_name}: {type(e).__name__}: {str(e)[:80]}")


def outcome(client, study_id: str) -> dict:
    from pipeline import names

    run = client.get_run(study_id)
    trials = client.search_runs([run.info.experiment_id], f"tags.\"{names.TAG_STUDY_ID}\" = '{study_id}'")
    epochs = sum(len(client.get_metric_history(t.info.run_id, names.VAL_ACCURACY)) for t in trials)
    complete = [t for t in trials if t.info.status == "FINISHED" and names.TAG_PRUNED not in t.data.tags]
    return {"epochs": epochs, "pruned": sum(names.TAG_PRUNED in t.data.tags for t in trials),
            "best_test": max((t.data.metrics.get(names.TEST_ACCURACY, 0.0) for t in complete), default=float("nan")),
            "best_val": run.data.metrics.get(names.BEST_VALUE, float("nan"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--skip-pruner", action="store_true", help="leave out part 1 (median pruner against none)")
    parser.add_argument("--skip-sampler", action="store_true", help="leave out part 2 (TPE against random)")
    parser.add_argument("--overhead-rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="runboard-bench-"))
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", RUNBOARD_DATA_ROOT=str(root),
                      RUNBOARD_LOG_DIR=str(root / "logs"), RUNBOARD_MAX_ATTEMPTS="1")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    from pipeline.config import RunConfig
    from pipeline.queue import jobs, study
    from pipeline.runs import lifecycle, tracking, train

    client = tracking.connect()
    space = study.parse_search(SPACE_SPECS)
    base = RunConfig(dataset="digits", model=args.model, epochs=args.epochs, device="cpu", experiment="bench")
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.1f}; digits/{args.model}, "
          f"{args.trials} trials of up to {args.epochs} epochs over {study.describe(space)}")

    print("\n1. median pruner against none (TPE, seed 0)" + (": left out" if args.skip_pruner else ""))
    results = {}
    for pruner in () if args.skip_pruner else ("none", "median"):
        study_id = study.submit(base, space, args.trials, 1, pruner=pruner, client=client)
        run_study(client, study_id)
        results[pruner] = outcome(client, study_id)
        r = results[pruner]
        print(f"  {pruner:>6}: {r['epochs']} epochs trained, {r['pruned']} pruned, best test accuracy "
              f"{r['best_test']:.2%}, best val accuracy {r['best_val']:.2%}")
    if results:
        saved = 1 - results["median"]["epochs"] / results["none"]["epochs"]
        gap = 100 * (results["none"]["best_test"] - results["median"]["best_test"])
        print(f"  median prunes {saved:.0%} of the epochs; its best test accuracy is {gap:+.2f} points below "
              f"none's (goal: >= 40 % fewer epochs, within 0.5 points)")

    if not args.skip_sampler:
        print(f"\n2. TPE against random, {args.trials} trials, {args.seeds} seeds each (median pruner)")
        best = {"tpe": [], "random": []}
        for seed in range(args.seeds):
            for sampler in ("tpe", "random"):
                study_id = study.submit(dataclasses.replace(base, seed=seed), space, args.trials, 1,
                                        sampler=sampler, client=client)
                run_study(client, study_id)
                best[sampler].append(outcome(client, study_id)["best_val"])
                print(f"  seed {seed} {sampler:>6}: best val accuracy {best[sampler][-1]:.2%}")
        for sampler, values in best.items():
            print(f"  {sampler:>6}: best val accuracy per seed {', '.join(f'{v:.2%}' for v in values)}; "
                  f"mean {statistics.mean(values):.2%}")

    if args.overhead_rounds:
        print(f"\n3. overhead per trial against a plain queued run ({args.overhead_rounds} rounds, alternated)")
        one = study.parse_search(["lr=3e-3,3e-3"])  # one value: the trial trains exactly the plain run's config
        plain, trial = [], []
        for _ in range(args.overhead_rounds):
            t0 = time.monotonic()
            run_id = jobs.submit(base, client=client)
            lifecycle.claim(client, run_id, "bench")
            lifecycle.mark_running(client, run_id, {})
            train.run_queued(run_id, progress=False)
            plain.append(time.monotonic() - t0)
            t0 = time.monotonic()
            run_study(client, study.submit(base, one, 1, 1, pruner="median", client=client))
            trial.append(time.monotonic() - t0)
        p, t = statistics.median(plain), statistics.median(trial)
        print(f"  plain queued run {p:.1f} s, study of one trial {t:.1f} s (medians): overhead {t - p:+.1f} s per "
              f"trial, ratio {t / p:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}; store {root}")


if __name__ == "__main__":
    main()
