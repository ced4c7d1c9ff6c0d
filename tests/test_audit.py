"""The data audit on a small planted folder: label errors, exact duplicates, leaks across the trainer's own
test split, the summary, refusals, and the queued path (worker, kind tag, artifacts).

Real fold models on tiny 8x8 digits (two classes that look nothing alike). Run:
.venv/bin/python -m pytest tests/test_audit.py -q
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline import cli, names
from pipeline.config import RunConfig
from pipeline.queue import jobs
from tests.planted import PER_CLASS, plain_folder, plant


def _rows(client: MlflowClient, run_id: str, path: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(Path(client.download_artifacts(run_id, path)).read_text())))


def test_the_audit_finds_the_planted_label_errors_duplicates_and_leak(planted, audited):
    client = MlflowClient()
    run = client.get_run(audited)
    assert run.info.status == "FINISHED" and run.data.tags[names.TAG_KIND] == names.KIND_AUDIT
    issues = _rows(client, audited, names.AUDIT_LABEL_ISSUES_CSV)
    top = {r["path"]: r for r in issues[:4]}
    assert set(planted["wrong"]) <= set(top), issues[:6]
    assert all(top[p]["given"] == "zero" and top[p]["suggested"] == "one" for p in planted["wrong"])
    assert [int(r["rank"]) for r in issues] == list(range(1, len(issues) + 1))
    duplicates = {frozenset((r["path_a"], r["path_b"])): r for r in _rows(client, audited, names.AUDIT_DUPLICATES_CSV)}
    assert duplicates[frozenset(planted["dup"])]["kind"] == "exact"
    assert duplicates[frozenset(planted["leak"])]["distance"] == "0"
    leaks = _rows(client, audited, names.AUDIT_LEAKS_CSV)
    assert {"train_path": planted["leak"][0], "test_path": planted["leak"][1], "kind": "exact"} in leaks
    summary = json.loads(Path(client.download_artifacts(audited, names.AUDIT_SUMMARY_JSON)).read_text())
    assert summary["files_per_class"] == {"one": PER_CLASS, "zero": PER_CLASS + 2}  # 2 wrong + dup + leak, -2
    assert summary["imbalance_ratio"] == pytest.approx((PER_CLASS + 2) / PER_CLASS, abs=1e-3)
    assert summary["counts"]["exact_duplicates"] >= 2 and summary["counts"]["leaks"] == len(leaks) >= 1
    assert summary["modes"] == {"L": 2 * PER_CLASS + 2}
    assert run.data.metrics[names.AUDIT_LABEL_ISSUES] == len(issues)
    [logged] = run.inputs.dataset_inputs  # the audit records what it audited, like a run
    assert logged.dataset.digest == summary["digest"]


def test_a_class_with_fewer_images_than_folds_is_refused_with_exit_2_naming_it(store, capsys):
    plain_folder(store / "data" / "tiny", {"big": 6, "small": 2})
    assert cli.main(["audit", "imagefolder:tiny", "--folds", "3"]) == 2
    err = capsys.readouterr().err
    assert "small (2)" in err and "big" not in err.split("too few in")[1]
    assert cli.main(["audit", "digits"]) == 2
    assert "imagefolder:PATH" in capsys.readouterr().err


def own_folder(store, name: str) -> str:
    """The planted folder again under its own name: an audit of `planted` would become the Data page's latest."""
    plant(store / "data" / name)
    return f"imagefolder:{name}"


def test_a_queued_audit_is_trained_by_the_worker_and_ends_as_an_audit_run(store, tmp_path):
    config = RunConfig(dataset=own_folder(store, "planted-queued"), epochs=1, experiment="audit-queued", device="cpu")
    run_id = jobs.submit_audit(config, folds=2)
    client = MlflowClient()
    assert client.get_run(run_id).info.status == names.SCHEDULED
    done = subprocess.run([sys.executable, "-m", "pipeline", "worker", "--burst", "--concurrency", "1",
                           "--experiment", "audit-queued"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RUNBOARD_LOG_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED", run.data.tags.get(names.TAG_ERROR)
    assert run.data.params[names.PARAM_FOLDS] == "2"
    assert {a.path for a in client.list_artifacts(run_id, "audit")} == {
        names.AUDIT_SUMMARY_JSON, names.AUDIT_DUPLICATES_CSV, names.AUDIT_LEAKS_CSV, names.AUDIT_LABEL_ISSUES_CSV,
        names.AUDIT_OUT_OF_FOLD_NPZ, names.AUDIT_FOLDS_DIR}
    assert run.data.metrics[names.AUDIT_FOLDS_DONE] == 2


def test_a_cancelled_audit_resumes_training_only_the_folds_it_had_not_scored(store, tmp_path):
    import time

    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    experiment = "audit-resumed"
    config = RunConfig(dataset=own_folder(store, "planted-resumed"), epochs=150, experiment=experiment, device="cpu")
    run_id = jobs.submit_audit(config, folds=3)
    client = MlflowClient()
    env = {**os.environ, "RUNBOARD_LOG_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "pipeline", "worker", "--concurrency", "1", "--experiment", experiment]
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while names.AUDIT_FOLDS_DONE not in client.get_run(run_id).data.metrics and time.monotonic() < deadline:
            time.sleep(0.2)
        jobs.cancel(run_id, client)  # within fold 2: fold 1 is scored and stored
        while client.get_run(run_id).info.status != "KILLED" and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(60)
    stored = sorted(a.path for a in client.list_artifacts(run_id, names.AUDIT_FOLDS_DIR))
    assert client.get_run(run_id).info.status == "KILLED" and 1 <= len(stored) < 3, stored
    kept = {p: np.load(client.download_artifacts(run_id, p, str(tmp_path)))["probabilities"] for p in stored}
    jobs.resume(run_id, client)
    done = subprocess.run([*command, "--burst"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED", run.data.tags.get(names.TAG_ERROR)
    reused = [int(k) for k in run.data.tags[names.TAG_AUDIT_FOLDS_REUSED].split(",")]
    assert [f"{names.AUDIT_FOLDS_DIR}/fold-{k}.npz" for k in reused] == stored  # not trained again...
    assert sorted(m.step for m in client.get_metric_history(run_id, names.AUDIT_FOLDS_DONE)) == [1, 2, 3]
    with np.load(client.download_artifacts(run_id, names.AUDIT_OUT_OF_FOLD_NPZ, str(tmp_path))) as final:
        labels, probabilities = final["labels"], final["probabilities"]
    splits = StratifiedKFold(n_splits=3, shuffle=True, random_state=config.seed).split(np.zeros(len(labels)), labels)
    for k, (_, held) in enumerate(splits, start=1):
        if k in reused:  # ...their rows are the stored ones, image for image
            assert np.array_equal(probabilities[held], kept[f"{names.AUDIT_FOLDS_DIR}/fold-{k}.npz"])
