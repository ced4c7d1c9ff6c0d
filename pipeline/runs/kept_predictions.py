"""What a run keeps of its test split for later questions: every prediction, its calibration, its curves,
and a 2-D map of its penultimate features.

`evaluation/predictions.npz` (no pickle) is the source: calibration.json, the curve metrics, the
dashboard's Evaluation figures and `python -m pipeline compare` all read it, so a run without it
simply lacks those views.
"""
from __future__ import annotations

import numpy as np
from mlflow import MlflowClient

from pipeline import names
from pipeline.runs import tracking
from pipeline.training import calibration, curves, embedding, evaluation
from pipeline.training.data import ImageData
from pipeline.training.engine import TrainResult, Tracker


def arrays(result: TrainResult, data: ImageData) -> dict[str, np.ndarray]:
    """The predictions.npz content: probabilities, labels, predicted and the images' ids."""
    test = result.test
    ids = data.test_ids if data.test_ids is not None else np.arange(len(test.labels))
    id_key = "paths" if ids.dtype.kind in "US" else "indices"
    return {"probabilities": test.probabilities.astype(np.float32), "labels": test.labels.astype(np.int64),
            "predicted": test.predictions.astype(np.int64), id_key: ids,
            "classes": np.array(data.classes, dtype=str)}


def log(client: MlflowClient, run_id: str, result: TrainResult, data: ImageData, tracker: Tracker) -> float:
    """Log predictions.npz, calibration.json and the metrics from them; return the fitted temperature."""
    test, val = result.test, result.val
    kept = arrays(result, data)
    tracking.log_arrays(client, run_id, kept, names.PREDICTIONS_NPZ)
    logits = test.logits if test.logits is not None else np.log(np.clip(test.probabilities, 1e-38, None))
    report = calibration.calibration(logits, test.labels, val.logits if val is not None else None,
                                     val.labels if val is not None else None)
    tracking.log_json(client, run_id, report, names.CALIBRATION_JSON)
    per_class = curves.per_class(kept["probabilities"], kept["labels"], data.classes)
    means = curves.macro(per_class)
    values = {names.TEST_ECE: report["ece"], names.TEST_AUC: means["auc"], names.TEST_AP: means["ap"]}
    if len(data.classes) > curves.TOP_K:
        values[names.TEST_TOP5] = curves.top_k_accuracy(kept["probabilities"], kept["labels"])
    tracker.log_metrics({k: v for k, v in values.items() if np.isfinite(v)}, step=result.epochs_run)
    tracker.flush()
    log_embedding(client, run_id, result, data, kept)
    return report[names.TEMPERATURE_KEY]


def log_embedding(client: MlflowClient, run_id: str, result: TrainResult, data: ImageData, kept: dict) -> None:
    """evaluation/embedding.npz: the test split's penultimate features in 2-D (PCA), with labels and ids."""
    features = evaluation.features(result.model, data.test, data.mean, data.std)
    ids = {k: v for k, v in kept.items() if k in ("paths", "indices")}
    tracking.log_arrays(client, run_id, {"xy": embedding.reduce(features), "labels": kept["labels"],
                                         "predicted": kept["predicted"], **ids,
                                         "method": np.array(embedding.DEFAULT)}, names.EMBEDDING_NPZ)
