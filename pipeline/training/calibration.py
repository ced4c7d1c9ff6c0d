"""Is a model's confidence honest? Reliability bins, ECE/MCE and one temperature fitted on validation NLL.

Plain numpy and scipy (no torch), so the dashboard and the tests recompute the same numbers from a
run's `evaluation/predictions.npz`.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

BINS = 15                    # equal-width bins over the top-label confidence (Guo et al. 2017's choice)
TEMPERATURE_RANGE = (0.05, 20.0)  # searched on a log scale; beyond it the model is broken, not miscalibrated


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """ECE (bins weighted by their share of images), MCE, and each bin's count, mean confidence, accuracy.

    A bin holds confidences in (lower, upper]; the first also holds 0.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    correct = (predicted == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows, ece, mce, n = [], 0.0, 0.0, max(len(p), 1)
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        row = {"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": count,
               "confidence": float(confidence[inside].mean()) if count else None,
               "accuracy": float(correct[inside].mean()) if count else None}
        if count:
            gap = abs(row["accuracy"] - row["confidence"])
            ece += count / n * gap
            mce = max(mce, gap)
        rows.append(row)
    return {"ece": float(ece), "mce": float(mce), "bins": rows, "n": int(len(p))}


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes with logits divided by `temperature`."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The one scalar T minimizing validation NLL of softmax(logits / T); 1.0 when nothing beats it."""
    if len(labels) == 0:
        return 1.0
    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    found = minimize_scalar(lambda t: nll(logits, labels, float(np.exp(t))), bounds=(low, high), method="bounded")
    best = float(np.exp(found.x))
    return best if nll(logits, labels, best) < nll(logits, labels, 1.0) else 1.0  # strictly better, or raw


def scaled(logits_or_probabilities: np.ndarray, temperature: float, probabilities: bool = False) -> np.ndarray:
    """softmax(logits / T) as float32; from probabilities, their logs stand in for logits (same softmax)."""
    x = np.asarray(logits_or_probabilities, dtype=np.float64)
    if probabilities:
        x = np.log(np.clip(x, np.finfo(np.float64).tiny, None))
    return np.exp(log_softmax(x / temperature, axis=1)).astype(np.float32)


def calibration(test_logits: np.ndarray, test_labels: np.ndarray, val_logits: np.ndarray | None,
                val_labels: np.ndarray | None) -> dict:
    """What `evaluation/calibration.json` holds: the test split's reliability before and after the
    temperature fitted on validation, and the validation NLL at T = 1 and at T."""
    test_probs = scaled(test_logits, 1.0)
    raw = reliability(test_probs, test_labels)
    fitted = val_logits is not None and len(val_labels)
    temperature = fit_temperature(val_logits, val_labels) if fitted else 1.0
    after = reliability(scaled(test_logits, temperature), test_labels)
    return {**raw, "temperature": temperature, "ece_after_temperature": after["ece"],
            "mce_after_temperature": after["mce"], "bins_after_temperature": after["bins"],
            "val_nll": nll(val_logits, val_labels) if fitted else None,
            "val_nll_after_temperature": nll(val_logits, val_labels, temperature) if fitted else None,
            "binning": f"{BINS} equal-width bins over the top-label confidence, weighted by bin size"}
