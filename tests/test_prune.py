"""Pruned variants: channels (Torch-Pruning) and weights (global magnitude) pruning on cnn and mlp, the
fine-tuning run, the ONNX export of the pruned net, the accuracy-drop flag, the refusals, and a prune job
on the queue run by a real worker.

Against the session's real store (tests/conftest.py: `trained_run` is the digits cnn); its model is registered
again here as prune-cnn v1, so the variants of digits-cnn v1 that other tests count stay as they are.
Run: .venv/bin/python -m pytest tests/test_prune.py -q
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow.models import get_model_info

from pipeline import names
from pipeline.cli import main
from pipeline.config import RunConfig
from pipeline.queue import jobs
from pipeline.runs import train
from pipeline.serving import export, predict, prune
from pipeline.training import models, pruning

DIGITS = (1, (8, 8), 10)  # channels, size, classes


# --- pruning itself, on the networks Runboard builds -----------------------------------------------

@pytest.mark.parametrize("model", ["cnn", "mlp"])
@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_channels_pruning_removes_parameters_and_keeps_the_classifier(model, ratio):
    torch.manual_seed(0)
    net = models.build(model, *DIGITS)
    before = pruning.parameters(net)
    pruning.apply(net, pruning.parse(f"channels:{ratio}"), torch.zeros(2, 1, 8, 8))
    after = pruning.parameters(net)
    # every hidden layer keeps (1 - r) of its outputs, so a layer between two of them keeps about (1 - r)^2
    assert after < (1 - ratio) * before
    assert models.classifier(net).out_features == 10
    assert net(torch.randn(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize("model", ["cnn", "mlp"])
@pytest.mark.parametrize("ratio", [0.5, 0.9])
def test_weights_pruning_zeroes_the_share_asked_for(model, ratio):
    torch.manual_seed(0)
    net = models.build(model, *DIGITS)
    before = pruning.parameters(net)
    pruning.apply(net, pruning.parse(f"weights:{ratio}"), torch.zeros(2, 1, 8, 8))
    assert pruning.weight_sparsity(net) == pytest.approx(ratio, abs=1e-3)
    pruning.finalize(net)  # masks baked in: plain weights, still as sparse, nothing to undo
    assert not any(name.endswith("_orig") for name, _ in net.named_parameters())
    assert pruning.weight_sparsity(net) == pytest.approx(ratio, abs=1e-3)
    assert pruning.parameters(net) == before  # shapes stay: only zeros
    assert 1 - pruning.nonzero(net) / before == pytest.approx(ratio, abs=0.05)  # biases and norms are not pruned


# --- refusals --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, says", [
    ("channels:0", "in (0, 0.95], got 0"), ("weights:0.96", "in (0, 0.95], got 0.96"),
    ("channels:-0.5", "got -0.5"), ("channels:abc", "must be a number"), ("filters:0.5", "channels:R or weights:R"),
    ("channels", "must be a number")])
def test_a_bad_spec_is_refused_in_one_line(spec, says):
    with pytest.raises(pruning.PruneError, match=r"^--prune") as e:
        pruning.parse(spec)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_network_with_nothing_to_prune_is_refused_naming_why():
    only_classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(pruning.PruneError, match="only conv or linear layer is the classifier"):
        pruning.apply(only_classifier, pruning.parse("channels:0.5"), torch.zeros(2, 1, 8, 8))
    with pytest.raises(pruning.PruneError, match="no conv or linear weight"):
        pruning.apply(torch.nn.Sequential(torch.nn.Flatten()), pruning.parse("weights:0.5"), torch.zeros(2, 1, 8, 8))


def exports(client) -> int:
    experiment = client.get_experiment_by_name(names.EXPORT_EXPERIMENT)
    return len(client.search_runs([experiment.experiment_id])) if experiment else 0


@pytest.mark.parametrize("argv, says", [
    (["--prune", "channels:1.2"], "--prune channels: the ratio must be in (0, 0.95], got 1.2"),
    (["--prune", "channels:0.5", "--finetune-epochs", "0"], "--finetune-epochs must be from 1 to 100, got 0"),
    (["--prune", "weights:0.5", "--max-accuracy-drop", "2"], "--max-accuracy-drop must be in [0, 1), got 2.0")])
def test_the_cli_refuses_with_exit_2_one_line_and_logs_nothing(source, capsys, argv, says):
    client = MlflowClient()
    before = exports(client)
    assert main(["export", source, *argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {says}"
    assert exports(client) == before


def test_an_exported_variant_is_refused_as_a_source(pruned_cnn, capsys):
    client = MlflowClient()
    before = exports(client)
    assert main(["export", pruned_cnn.variants[0].model_uri, "--prune", "channels:0.5", "--quiet"]) == 2
    assert "already an exported variant" in capsys.readouterr().err
    assert exports(client) == before


def test_the_accuracy_drop_flag_names_the_worst_variant():
    plan = prune.plan("models:/m/1", "channels:0.5", max_drop=0.01)
    report = prune.PruneReport("models:/m/1", "m v1", export.Variant(names.ORIGINAL, {names.TEST_ACCURACY: 0.95}),
                               [export.Variant("channels:0.5", {names.TEST_ACCURACY: 0.945}),
                                export.Variant("channels:0.5+int8", {names.TEST_ACCURACY: 0.92})])
    flag = prune._flag(report, plan)
    assert flag.startswith("channels:0.5+int8 lost 3.0% of test accuracy") and "limit 1.0%" in flag
    assert report.variants[0].metrics[names.ACCURACY_DROP] == pytest.approx(0.005)
    report.variants.pop()
    assert prune._flag(report, plan) == ""  # half a point: within the limit


# --- the whole job ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source(pruned) -> str:
    """prune-cnn v1 (tests/conftest.py): the session's digits cnn, registered again for the jobs here."""
    return pruned.source


@pytest.fixture(scope="module")
def pruned_cnn(pruned):
    return pruned


def test_the_pruned_cnn_is_smaller_exported_within_1e4_and_beside_the_other_variants(pruned_cnn, source):
    client = MlflowClient()
    pruned, quantized = pruned_cnn.variants
    assert (pruned.variant, quantized.variant) == ("channels:0.5", "channels:0.5+int8")
    original = pruned_cnn.original.metrics
    assert pruned.metrics[names.PARAMETERS] < 0.5 * original[names.PARAMETERS]
    assert pruned.metrics[names.SPARSITY] == pytest.approx(1 - pruned.metrics[names.PARAMETERS]
                                                           / original[names.PARAMETERS], abs=0.01)
    assert pruned.metrics[names.ONNX_MAX_LOGIT_DIFF] <= 1e-4
    assert quantized.metrics[names.MODEL_SIZE] < pruned.metrics[names.MODEL_SIZE] < original[names.MODEL_SIZE]
    rows = export.variants_of(client, source)
    assert [r["variant"] for r in rows][:3] == [names.ORIGINAL, "channels:0.5", "channels:0.5+int8"]
    assert rows[1]["run_id"] == pruned.run_id and rows[1][names.SPARSITY] == pytest.approx(
        pruned.metrics[names.SPARSITY])
    assert rows[0][names.PARAMETERS] == original[names.PARAMETERS] and rows[1]["flag"] == ""
    assert [v.registered for v in pruned_cnn.variants] == ["models:/digits-cnn-pruned/1", "models:/digits-cnn-pruned/2"]


def test_the_fine_tuning_is_a_tracked_checkpointed_run(pruned_cnn):
    client = MlflowClient()
    run = client.get_run(pruned_cnn.variants[0].run_id)
    assert run.info.status == names.FINISHED
    tags, params = run.data.tags, run.data.params
    assert tags[names.TAG_KIND] == names.KIND_PRUNE and tags[names.TAG_PRUNE] == "channels:0.5"
    assert tags[names.TAG_EXPORT_SOURCE] == "models:/prune-cnn/1"
    assert params["epochs"] == "1" and params["dataset"] == "digits" and params["prune"] == "channels:0.5"
    assert [m.step for m in client.get_metric_history(run.info.run_id, names.VAL_ACCURACY)] == [1]
    assert names.PRUNED_TEST_ACCURACY in run.data.metrics and names.TEST_F1 in run.data.metrics
    assert tags[names.TAG_CHECKPOINT_FILE] in {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    info = get_model_info(pruned_cnn.variants[0].model_uri)
    assert info.metadata[names.VARIANT_KEY] == "channels:0.5" and "onnx" in info.flavors


def test_a_pruned_variant_predicts_like_its_evaluation_said(pruned_cnn, trained_run):
    from pipeline.training import data as datasets

    test = datasets.load(RunConfig.from_params(MlflowClient().get_run(trained_run).data.params)).test
    model = predict.load(pruned_cnn.variants[0].model_uri)
    assert isinstance(model, predict.OnnxPredictor) and model.ref.label == "prune-cnn v1 · channels:0.5"
    got = np.array([p.label for p in model.predict_prepared(test.images.numpy())], dtype=int)
    assert (got == test.labels.numpy()).mean() == pytest.approx(pruned_cnn.variants[0].metrics[names.TEST_ACCURACY])


def test_weights_pruning_of_an_mlp_through_the_cli(store, capsys):
    train.run(RunConfig(dataset="digits", model="mlp", epochs=2, experiment="tests-prune", run_name="tiny-mlp",
                        register="prune-mlp"), progress=False)
    assert main(["export", "models:/prune-mlp/1", "--prune", "weights:0.8", "--finetune-epochs", "1", "--no-int8",
                 "--register", "prune-mlp-pruned", "--max-accuracy-drop", "0", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "weights:0.8: sparsity " in out.out
    [row] = [r for r in export.variants_of(MlflowClient(), "models:/prune-mlp/1") if r["variant"] == "weights:0.8"]
    layers_zero = 0.8 * 50_432 / 50_826  # weights of the mlp's linear layers / all its parameters
    assert row[names.SPARSITY] == pytest.approx(layers_zero, abs=0.002)
    assert row[names.COMPRESSED_SIZE] < 0.6 * row[names.MODEL_SIZE]  # zeros deflate; the plain file does not shrink
    flagged = row[names.ACCURACY_DROP] > 0  # limit 0: any loss flags it, and a flagged variant is not registered
    assert bool(row["flag"]) == flagged
    assert ("not registered as prune-mlp-pruned" in out.err) == flagged
    assert ("registered as models:/prune-mlp-pruned/1" in out.out) == (not flagged)


# --- the queue -------------------------------------------------------------------------------------

def test_a_prune_job_is_queued_and_a_worker_runs_it(source, tmp_path):
    client = MlflowClient()
    with pytest.raises(prune.PruneError, match="ratio must be in"):
        jobs.submit_prune(source, "weights:0.99", client=client)
    run_id = jobs.submit_prune(source, "weights:0.5", epochs=1, int8=False, client=client)
    run = client.get_run(run_id)
    assert run.info.status == names.SCHEDULED and run.data.tags[names.TAG_KIND] == names.KIND_PRUNE
    done = subprocess.run([sys.executable, "-m", "pipeline", "worker", "--experiment", names.EXPORT_EXPERIMENT,
                           "--concurrency", "1", "--burst"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RUNBOARD_LOG_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    run = client.get_run(run_id)
    assert run.info.status == names.FINISHED, run.data.tags.get(names.TAG_ERROR)
    assert run.data.metrics[names.SPARSITY] > 0.4 and run.data.metrics[names.ONNX_MAX_LOGIT_DIFF] <= 1e-4
    assert "weights:0.5" in [r["variant"] for r in export.variants_of(client, source)]
