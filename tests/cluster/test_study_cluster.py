"""A study on the team setup: its trials run as Ray jobs against `mlflow server` (PostgreSQL behind it),
and each trial's pruning decision needs nothing but MLflow's HTTP API.

Run: .venv/bin/python -m pytest tests/cluster -q -k study
"""
from __future__ import annotations

import csv
import io

import mlflow
import pytest

from pipeline import names
from pipeline.config import RunConfig
from pipeline.queue import study
from pipeline.runs import tracking
from tests.cluster.conftest import TINY, ended

pytestmark = pytest.mark.cluster


def test_a_study_runs_its_trials_as_ray_jobs_and_ends_with_its_summary(worker):
    space = study.parse_search(["lr=1e-5:0.1:log"])
    study_id = study.submit(RunConfig(**{**TINY, "model": "mlp", "epochs": 2, "run_name": "ray-study"}), space, 3,
                            parallel=2)
    run = ended(study_id, timeout=600, status=names.FINISHED)
    client = tracking.connect()
    trials = client.search_runs([run.info.experiment_id], f"tags.\"{names.TAG_STUDY_ID}\" = '{study_id}'")
    assert sorted(int(t.data.tags[names.TAG_TRIAL]) for t in trials) == [0, 1, 2]
    assert all(t.data.tags.get(names.TAG_RAY_JOB) == f"runboard-{t.info.run_id}" for t in trials)
    assert all(names.TAG_TRIAL_ATTRS in t.data.tags for t in trials)  # each asked the pruner through MLflow
    rows = list(csv.DictReader(io.StringIO(mlflow.artifacts.load_text(f"runs:/{study_id}/{names.STUDY_TRIALS_CSV}"))))
    assert [r["state"] for r in rows if r["state"] not in ("COMPLETE", "PRUNED")] == []
    assert names.BEST_VALUE in run.data.metrics
