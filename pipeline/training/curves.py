"""One-vs-rest precision-recall and ROC curves, AUC and AP per class, and top-k accuracy, by scikit-learn.

A class with no test image (or only test images) has no curve: it is left out of the macro means,
which are plain means over the classes that have one.
"""
from __future__ import annotations

import numpy as np

TOP_K = 5  # top-5 accuracy is logged when a model has more classes than this


def per_class(probabilities: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, dict]:
    """{class: {"auc", "ap", "roc": (fpr, tpr), "pr": (recall, precision), "positives"}}, one vs rest."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    out = {}
    for c, name in enumerate(classes):
        positive = y == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, p[:, c])
        precision, recall, _ = precision_recall_curve(positive, p[:, c])
        out[name] = {"auc": float(roc_auc_score(positive, p[:, c])), "ap": float(average_precision_score(positive, p[:, c])),
                     "roc": (fpr, tpr), "pr": (recall, precision), "positives": int(positive.sum())}
    return out


def macro(curves: dict[str, dict]) -> dict[str, float]:
    """Mean AUC and AP over the classes that have curves."""
    if not curves:
        return {"auc": float("nan"), "ap": float("nan")}
    return {k: float(np.mean([c[k] for c in curves.values()])) for k in ("auc", "ap")}


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int = TOP_K) -> float:
    """Share of images whose true class is among the k most probable."""
    top = np.argsort(-np.asarray(probabilities), axis=1, kind="stable")[:, :k]
    return float((top == np.asarray(labels)[:, None]).any(axis=1).mean()) if len(labels) else float("nan")
