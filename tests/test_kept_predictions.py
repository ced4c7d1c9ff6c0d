"""Checks of honesty, from the files a real run logged: predictions.npz, calibration.json and the curve
metrics equal an independent computation (numpy by hand, scikit-learn), and the temperature helps.

Run: .venv/bin/python -m pytest tests/test_kept_predictions.py -q
"""
from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import label_binarize

from pipeline import names
from pipeline.runs import tracking
from pipeline.serving import paired
from pipeline.training import calibration


@pytest.fixture(scope="module")
def logged(trained_run, tmp_path_factory) -> dict:
    client = tracking.connect()
    folder = tmp_path_factory.mktemp("kept")
    npz = paired.arrays(open(client.download_artifacts(trained_run, names.PREDICTIONS_NPZ, str(folder)), "rb").read())
    report = json.loads(open(client.download_artifacts(trained_run, names.CALIBRATION_JSON, str(folder))).read())
    embedding = paired.arrays(open(client.download_artifacts(trained_run, names.EMBEDDING_NPZ, str(folder)), "rb").read())
    return {"npz": npz, "calibration": report, "embedding": embedding, "metrics": client.get_run(trained_run).data.metrics,
            "run_id": trained_run}


def test_predictions_hold_every_test_image_with_its_id(logged):
    z = logged["npz"]
    n = len(z["labels"])
    assert n == 359 and z["probabilities"].shape == (n, 10) and z["probabilities"].dtype == np.float32
    assert np.array_equal(z["predicted"], z["probabilities"].argmax(1))
    assert "indices" in z and len(set(z["indices"].tolist())) == n  # digits: indices into the bundled set
    accuracy = (z["predicted"] == z["labels"]).mean()
    assert accuracy == pytest.approx(logged["metrics"][names.TEST_ACCURACY], abs=1e-6)


def test_ece_equals_an_independent_computation(logged):
    p, y = logged["npz"]["probabilities"].astype(np.float64), logged["npz"]["labels"]
    confidence, right = p.max(1), p.argmax(1) == y
    bins = np.clip(np.ceil(confidence * 15).astype(int) - 1, 0, 14)
    ece = sum((bins == b).sum() / len(y) * abs(right[bins == b].mean() - confidence[bins == b].mean())
              for b in range(15) if (bins == b).any())
    report = logged["calibration"]
    assert report["ece"] == pytest.approx(ece, abs=1e-6)
    assert logged["metrics"][names.TEST_ECE] == pytest.approx(ece, abs=1e-6)
    assert sum(b["count"] for b in report["bins"]) == len(y) and len(report["bins"]) == 15
    assert report["mce"] >= report["ece"]


def test_auc_and_ap_equal_scikit_learns(logged):
    p, y = logged["npz"]["probabilities"], logged["npz"]["labels"]
    onehot = label_binarize(y, classes=range(10))
    assert logged["metrics"][names.TEST_AUC] == pytest.approx(roc_auc_score(onehot, p, average="macro"), abs=1e-9)
    assert logged["metrics"][names.TEST_AP] == pytest.approx(average_precision_score(onehot, p, average="macro"),
                                                             abs=1e-9)
    top5 = (np.argsort(-p, axis=1)[:, :5] == y[:, None]).any(1).mean()
    assert logged["metrics"][names.TEST_TOP5] == pytest.approx(top5)


def test_temperature_does_not_raise_validation_nll_and_travels_with_the_model(logged):
    report = logged["calibration"]
    assert report["val_nll_after_temperature"] <= report["val_nll"]
    info = mlflow.models.get_model_info(f"runs:/{logged['run_id']}/{names.MODEL_NAME}")
    assert info.metadata[names.PREPROCESSING_KEY][names.TEMPERATURE_KEY] == pytest.approx(report["temperature"])


def test_temperature_fit_finds_the_overconfidence_it_was_given():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5)) * 2
    labels = np.array([rng.choice(5, p=row) for row in softmax(true_logits, axis=1)])
    fitted = calibration.fit_temperature(true_logits * 3, labels)  # three times too sure
    assert fitted == pytest.approx(3, rel=0.1)
    assert calibration.nll(true_logits * 3, labels, fitted) < calibration.nll(true_logits * 3, labels)
    assert calibration.fit_temperature(np.zeros((0, 5)), np.zeros(0, dtype=int)) == 1.0


def test_the_embedding_map_holds_every_test_image_by_the_same_ids(logged):
    z, e = logged["npz"], logged["embedding"]
    assert e["xy"].shape == (359, 2) and np.isfinite(e["xy"]).all() and str(e["method"]) == "pca"
    assert np.array_equal(e["indices"], z["indices"]) and np.array_equal(e["labels"], z["labels"])
    assert np.array_equal(e["predicted"], z["predicted"])
    assert e["xy"][:, 0].std() > 0  # spread out, not collapsed
