"""torchrun on the CPU (gloo, 2 processes): one MLflow run with complete metrics and one process's accuracy.

Run: make test, or `.venv/bin/python -m pytest tests/test_distributed.py -q` (about a minute).
"""
import os
import subprocess
import sys
from pathlib import Path

import torch

from pipeline import names
from pipeline.runs import tracking
from pipeline.training import distributed, engine

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).parent / "torchrun"


def test_deal_gives_every_rank_the_same_number_of_items_and_misses_none():
    order = torch.randperm(10)
    shards = [distributed.deal(order, r, 3) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert set(torch.cat(shards).tolist()) == set(range(10))
    unpadded = [distributed.deal(order, r, 3, pad=False) for r in range(3)]
    assert sorted(torch.cat(unpadded).tolist()) == list(range(10))
    assert torch.equal(distributed.deal(order, 0, 1), order)
    assert [len(distributed.deal(torch.arange(1), r, 4)) for r in range(4)] == [1, 1, 1, 1]


def test_one_process_is_rank_0_of_1():
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    t = torch.ones(3)
    assert distributed.all_sum(t) is t and torch.equal(t, torch.ones(3))
    assert distributed.share("abc") == "abc"


def test_steps_per_epoch_splits_the_batch_between_processes():
    assert engine.steps_per_epoch(1295, 64) == 21
    assert engine.steps_per_epoch(1295, 64, 2) == 21  # 648 images and 32 per step on each
    assert engine.steps_per_epoch(1281, 64, 2) == 21


def test_torchrun_two_processes_make_one_run(store, trained_run):
    """The command from docs/training.md (torchrun), with --standalone so that a busy port 29500 cannot break it."""
    out = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "pipeline", "train", "--quiet",
         "--dataset", "digits", "--model", "cnn", "--epochs", "2", "--experiment", "ddp",
         "--device", "cpu"],  # gloo on the CPU: a one-GPU machine cannot give 2 processes a GPU each
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    client = tracking.connect()
    [run] = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert out.stdout.count("finished") == 1 and run_id in out.stdout  # rank 0 speaks, once
    assert run.data.tags["runboard.processes"] == "2"
    for key in names.EPOCH_METRICS:
        assert [m.step for m in client.get_metric_history(run_id, key)] == [1, 2], key
    steps = sorted(m.step for m in client.get_metric_history(run_id, names.TRAIN_LOSS_STEP))
    assert steps == list(range(1, 2 * engine.steps_per_epoch(1295, 64, 2) + 1))
    assert run.data.tags[names.TAG_STEPS_PER_EPOCH] == str(engine.steps_per_epoch(1295, 64, 2))  # what readers use
    for key in names.TEST_METRICS:
        assert [m.step for m in client.get_metric_history(run_id, key)] == [2], key
    assert {a.path for a in client.list_artifacts(run_id, "evaluation")} >= {"evaluation/confusion_matrix.json"}
    one_process = client.get_run(trained_run).data.metrics[names.TEST_ACCURACY]  # same config, 1 process
    two = run.data.metrics[names.TEST_ACCURACY]
    assert two > 0.9 and abs(two - one_process) < 0.05, (two, one_process)
