"""A real run into a temporary SQLite store: everything DESIGN.md promises is in MLflow. Run: make test."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from pipeline import names
from pipeline.runs import lifecycle, tracking, train
from pipeline.training import data, engine, models
from pipeline.config import RunConfig
from tests.conftest import TINY


@pytest.fixture(scope="module")
def client(store):
    return tracking.connect()


def test_run_holds_params_tags_and_status(client, trained_run):
    run = client.get_run(trained_run)
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny-cnn"
    assert run.data.params == {**RunConfig(**TINY).to_params(), names.PARAM_IMAGE_SIZE_RESOLVED: "8x8"}
    assert RunConfig.from_params(run.data.params) == RunConfig(**TINY)  # clone-able
    tags = run.data.tags
    assert tags[names.TAG_DEVICE] == engine.device_name(engine.pick_device("auto"))  # a GPU where there is one
    assert tags[names.TAG_TORCH] == torch.__version__
    assert tags[names.TAG_EPOCHS_RUN] == "2"
    # training is timed apart from the run's creation: started after the run began, ended before it ended
    started, ended = float(tags[names.TAG_TRAIN_STARTED]), float(tags[names.TAG_TRAIN_ENDED])
    assert run.info.start_time / 1000 <= started < ended <= run.info.end_time / 1000


def test_metric_histories_use_the_contract_names_and_steps(client, trained_run):
    for key in names.EPOCH_METRICS:
        assert [m.step for m in client.get_metric_history(trained_run, key)] == [1, 2], key
    steps = sorted(m.step for m in client.get_metric_history(trained_run, names.TRAIN_LOSS_STEP))
    per_epoch = -(-1295 // TINY["batch_size"])  # 1295 training images in digits' default split
    assert steps == list(range(1, 2 * per_epoch + 1))
    final = client.get_run(trained_run).data.metrics
    for key in names.TEST_METRICS:
        assert [m.step for m in client.get_metric_history(trained_run, key)] == [2], key
    assert final[names.TEST_ACCURACY] > 0.9


def test_runs_carry_mlflow_system_metrics(client, monkeypatch):
    """Sampled every 2 s while a run trains; sampled faster here, as a warm tiny run may take under 2 s."""
    monkeypatch.setattr(lifecycle, "SYSTEM_METRICS_INTERVAL", 0.2)
    run_id = train.run(RunConfig(**{**TINY, "model": "mlp"}, experiment="system-metrics", run_name="system-metrics"),
                       progress=False)
    metrics = client.get_run(run_id).data.metrics
    assert any(k.startswith("system/cpu_utilization") for k in metrics), sorted(metrics)


def test_evaluation_artifacts(client, trained_run, tmp_path):
    paths = {a.path for a in client.list_artifacts(trained_run, "evaluation")}
    assert paths == {f"evaluation/{n}" for n in
                     ("confusion_matrix.json", "confusion_matrix.png", "per_class.json", "misclassified.png",
                      "explanations.png", "explanations.npz")} | {
                         names.PREDICTIONS_NPZ, names.CALIBRATION_JSON, names.EMBEDDING_NPZ}
    local = client.download_artifacts(trained_run, "evaluation", str(tmp_path))
    cm = json.load(open(f"{local}/confusion_matrix.json"))
    assert cm["labels"] == [str(i) for i in range(10)]
    matrix = np.array(cm["matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 359
    accuracy = client.get_run(trained_run).data.metrics[names.TEST_ACCURACY]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(accuracy)
    per_class = json.load(open(f"{local}/per_class.json"))
    assert set(per_class) == set(cm["labels"]) and sum(c["support"] for c in per_class.values()) == 359
    for png in ("confusion_matrix.png", "misclassified.png"):
        assert open(f"{local}/{png}", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_artifacts_live_beside_the_sqlite_store(store, client, trained_run):
    uri = client.get_run(trained_run).info.artifact_uri
    assert uri.startswith((store / "artifacts").as_uri())


def test_registered_model_loads_without_pickle_and_predicts_like_evaluation(client, trained_run, monkeypatch, tmp_path):
    versions = client.search_model_versions("name='digits-cnn'")
    assert [v.run_id for v in versions] == [trained_run]
    uri = "models:/digits-cnn/1"
    info = mlflow.models.get_model_info(uri)
    prep = info.metadata[names.PREPROCESSING_KEY]
    assert prep["classes"] == [str(i) for i in range(10)] and prep["channels"] == 1
    assert prep["image_size"] == [8, 8] and len(prep["mean"]) == len(prep["std"]) == 1
    assert info.signature.inputs.inputs[0].shape == (-1, 1, 8, 8)
    # what is on disk: one torch.export archive, no pickled module or state dict
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path)))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert sorted(f for f in files if f.startswith("data/")) == ["data/model.pt2"], files  # not model.pth
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")  # a pickled model would refuse to load
    model = mlflow.pytorch.load_model(uri)
    # prepare the whole test split exactly as the metadata says, in batches of 3 (not the example's 2)
    test = data.load(RunConfig()).test
    mean, std = torch.tensor(prep["mean"]).view(1, -1, 1, 1), torch.tensor(prep["std"]).view(1, -1, 1, 1)
    x = (test.images.float() / 255 - mean) / std
    with torch.no_grad():
        preds = torch.cat([model(x[i:i + 3]) for i in range(0, len(x), 3)]).argmax(1)
    # every image lands where the run's own evaluation put it: the logged confusion matrix, rebuilt exactly
    logged = json.loads(Path(client.download_artifacts(trained_run, "evaluation/confusion_matrix.json",
                                                       str(tmp_path))).read_text())
    matrix = np.zeros((10, 10), dtype=int)
    np.add.at(matrix, (test.labels.numpy(), preds.numpy()), 1)
    assert matrix.tolist() == logged["matrix"]


def _cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, **kw)


def _count_runs(client):
    return len(client.search_runs([e.experiment_id for e in client.search_experiments()]))


@pytest.mark.parametrize("args, message", [
    (["--lr", "-1"], "error: lr must be > 0"),
    (["--optimizer", "rmsprop"], "error: argument --optimizer: invalid choice"),
    (["--epochs", "x"], "error: argument --epochs: invalid int value"),
    (["--dataset", "imagefolder:missing"], "error: image folder not found"),
    (["--dataset", "imagefolder:/etc"], "error: dataset imagefolder path must be inside the data root"),
])
def test_bad_values_exit_2_with_one_line_and_write_nothing(client, trained_run, args, message):
    before = _count_runs(client)
    out = _cli("train", "--experiment", "bad-values", *args)
    assert out.returncode == 2
    assert out.stderr.strip().startswith(message) and len(out.stderr.strip().splitlines()) == 1
    assert _count_runs(client) == before


def test_unreachable_tracking_server_is_one_clear_line():
    """One short health request, not MLflow's minutes of retries (those would end in another message)."""
    out = _cli("train", "--quiet", env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})  # nothing listens there
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: cannot reach the MLflow tracking server http://127.0.0.1:9")


def test_crash_ends_failed_with_reason_and_traceback(client, tmp_path):
    nan = {k: torch.full_like(v, float("nan")) for k, v in models.build("mlp", 1, (8, 8), 10).state_dict().items()}
    torch.save(nan, tmp_path / "nan.pt")
    out = _cli("train", "--quiet", "--model", "mlp", "--epochs", "1", "--weights", str(tmp_path / "nan.pt"),
               "--experiment", "crashes")
    assert out.returncode == 1 and "loss became nan" in out.stderr
    run = client.search_runs([client.get_experiment_by_name("crashes").experiment_id])[0]
    assert run.info.status == "FAILED"
    assert run.data.tags[names.TAG_ERROR].startswith("TrainingError: loss became nan")
    assert "Traceback" in run.data.tags[names.TAG_TRACEBACK]
    assert "error/traceback.txt" in {a.path for a in client.list_artifacts(run.info.run_id, "error")}


def test_sigterm_ends_the_run_killed_and_keeps_what_was_logged(client):
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "train", "--quiet", "--epochs", "200",
                             "--experiment", "cancelled"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline, run = time.time() + 60, None
    while time.time() < deadline:
        exp = client.get_experiment_by_name("cancelled")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if runs and names.VAL_LOSS in runs[0].data.metrics:
            run = runs[0]
            break
        time.sleep(0.3)
    assert run is not None, "the run never logged a first epoch"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED" and names.VAL_LOSS in run.data.metrics
    assert run.data.tags[names.TAG_ERROR].startswith("cancelled")


def test_cli_train_succeeds_and_prints_the_run(client):
    out = _cli("train", "--quiet", "--epochs", "1", "--model", "mlp", "--experiment", "cli", "--run-name", "from-cli")
    assert out.returncode == 0, out.stderr
    run = client.search_runs([client.get_experiment_by_name("cli").experiment_id])[0]
    assert run.info.run_id in out.stdout and run.info.run_name == "from-cli" and run.info.status == "FINISHED"


def test_library_run_rebuilds_from_params(client, trained_run):
    """What "clone run" relies on: the params of a run give back a config that trains again."""
    config = RunConfig.from_params(client.get_run(trained_run).data.params, experiment="clones")
    clone = train.run(config, progress=False)
    assert client.get_run(clone).data.params == client.get_run(trained_run).data.params
