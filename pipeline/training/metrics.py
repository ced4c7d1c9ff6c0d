"""Classification metrics in plain numpy: confusion matrix, per-class and macro scores."""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with rows = true class and columns = predicted class."""
    idx = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_metrics(matrix: np.ndarray, labels: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class; a class never predicted has precision 0."""
    tp = np.diag(matrix).astype(float)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, actual)
    }


def macro_scores(per_class: dict[str, dict[str, float]]) -> dict[str, float]:
    """Unweighted means over the classes present in the evaluated split."""
    present = [m for m in per_class.values() if m["support"] > 0]
    return {k: float(np.mean([m[k] for m in present])) if present else 0.0 for k in ("precision", "recall", "f1")}


def most_confused(matrix: np.ndarray, labels: list[str], top: int = 5) -> list[tuple[str, str, int]]:
    """The largest off-diagonal cells as (true, predicted, count), largest first."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top]
    return [(labels[i], labels[j], int(off[i, j])) for i, j in zip(*np.unravel_index(order, off.shape)) if off[i, j]]


def display_order(labels: Sequence[str]) -> list[int]:
    """The order to show classes in: by value when every name is a number, a number word or holds a
    number ("zero".."nine", "0".."10", "class9" before "class10"), else as given.

    Display only: a model's class indices stay the sorted folder names it was trained on, which its
    logged class names, its checkpoints and the fixed test split of a folder depend on.
    """
    def key(label: str) -> list[tuple[int, int, str]]:
        name = str(label).strip().lower()
        if name in NUMBER_WORDS:
            return [(0, NUMBER_WORDS.index(name), "")]
        return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]

    numbered = all(str(label).strip().lower() in NUMBER_WORDS or re.search(r"\d", str(label)) for label in labels)
    order = list(range(len(labels)))
    return sorted(order, key=lambda i: key(labels[i])) if numbered else order
