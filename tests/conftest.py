"""Shared fixtures: a temporary SQLite MLflow store and tiny real training runs, made once per session.

Run the suite with `make test` (or `.venv/bin/python -m pytest tests`).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.config import RunConfig
from tests.skip_summary import pytest_sessionfinish, pytest_terminal_summary  # noqa: F401  (loud skips)


STEPS_IN_ORDER = ("e2e", "cluster")  # files whose tests are steps sharing one app or cluster


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: drives the real app in headless Chromium (skip: -m 'not e2e')")
    config.addinivalue_line("markers", "cluster: runs on real PostgreSQL, mlflow server and Ray (skip: -m 'not cluster')")
    config.addinivalue_line("markers", "gpu: runs the CUDA path; skipped where torch sees no GPU")


def pytest_collection_modifyitems(config, items):
    """Under `-p randomly` the browser and cluster files still run top to bottom (their tests are
    ordered steps); randomly shuffles before this hook and keeps each file's tests together."""
    slots: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if any(item.get_closest_marker(m) for m in STEPS_IN_ORDER):
            slots.setdefault(str(item.path), []).append(i)
    for indices in slots.values():
        in_file_order = sorted((items[i] for i in indices), key=lambda item: item.location[1])
        for i, item in zip(indices, in_file_order):
            items[i] = item


TINY = dict(dataset="digits", model="cnn", epochs=2, batch_size=64)


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """A fresh MLflow store (SQLite + artifacts beside it) and data root for this test session."""
    root = tmp_path_factory.mktemp("store")
    (root / "data").mkdir()
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "RUNBOARD_DATA_ROOT")}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["RUNBOARD_DATA_ROOT"] = str(root / "data")
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def trained_run(store) -> str:
    """One real digits/cnn run of 2 epochs, registered as `digits-cnn`: its run id."""
    from pipeline.runs import train

    config = RunConfig(**TINY, experiment="tests", run_name="tiny-cnn", register="digits-cnn")
    return train.run(config, progress=False)


@pytest.fixture(scope="session")
def trained_runs(store, trained_run) -> list[str]:
    """Three finished runs in experiment `tests` that differ in learning rate and model."""
    from pipeline.runs import train

    others = [RunConfig(**{**TINY, "lr": 1e-2}, experiment="tests", run_name="tiny-cnn-lr1e-2"),
              RunConfig(**{**TINY, "model": "mlp"}, experiment="tests", run_name="tiny-mlp")]
    return [trained_run] + [train.run(c, progress=False) for c in others]


@pytest.fixture(scope="session")
def exported(trained_run):
    """`digits-cnn` v1 exported to ONNX and int8 (pipeline.serving.export.Report), each variant registered
    as a version of `digits-cnn-variants` (v1 onnx, v2 int8). Latency from few calls: it is not under test."""
    from pipeline.serving import export

    return export.export("models:/digits-cnn/1", register="digits-cnn-variants", runs=3)


@pytest.fixture(scope="session")
def planted(store) -> dict:
    """tests/planted.py's spoiled folder under the data root: what was planted where."""
    from tests import planted as folder

    return folder.plant(store / "data" / folder.FOLDER)


@pytest.fixture(scope="session")
def audited(planted) -> str:
    """The run id of one real audit (3 folds, 4 epochs) of the planted folder."""
    from tests import planted as folder

    return folder.audit()


@pytest.fixture(scope="session")
def pruned(trained_run):
    """The digits cnn registered again as `prune-cnn` v1 (digits-cnn v1's variants stay as other tests count
    them), pruned to half its channels, fine-tuned 1 epoch, with int8 (pipeline.serving.prune.PruneReport);
    both variants registered as `digits-cnn-pruned` v1 and v2 (the accuracy limit is loose here)."""
    from pipeline.serving import prune, registry

    made = registry.register_run(trained_run, "prune-cnn")
    return prune.prune(f"models:/{made.name}/{made.version}", "channels:0.5", epochs=1, register="digits-cnn-pruned",
                       max_drop=0.9, runs=2, progress=False)
