"""Evaluation pictures as matplotlib figures: the confusion matrix and misclassified examples."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MISCLASSIFIED_SHOWN = 36  # a 6x6 grid


def confusion_matrix_figure(matrix: np.ndarray, labels: list[str]):
    """Counts with row-normalized colour, so small classes' mistakes are as visible as big ones'."""
    n = len(labels)
    side = min(max(4.0, 0.55 * n + 2), 24)
    fig, ax = plt.subplots(figsize=(side, side * 0.9), dpi=100)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), labels, rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix: {int(np.trace(matrix))}/{int(matrix.sum())} correct")
    fig.tight_layout()
    return fig


def misclassified_figure(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                         confidence: np.ndarray, classes: list[str]):
    """A grid of the most confidently wrong test images, titled 'true -> predicted (p)'."""
    wrong = np.flatnonzero(labels != predictions)
    wrong = wrong[np.argsort(-confidence[wrong])][:MISCLASSIFIED_SHOWN]
    cols = 6
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.8 + 0.4), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        img = images[i]
        ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0),
                  cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=255)
        ax.set_title(f"{classes[labels[i]]} → {classes[predictions[i]]}\n({confidence[i]:.0%})", fontsize=8)
    title = f"{len(np.flatnonzero(labels != predictions))} misclassified test images"
    fig.suptitle(title if len(wrong) else "no misclassified test images", fontsize=10)
    fig.tight_layout()
    return fig


def lr_find_figure(lrs: list[float], losses: list[float], smoothed: list[float], suggestion: float):
    """The range test: raw and smoothed loss against a log learning rate, the suggestion marked."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(lrs, losses, color="#bbbbbb", linewidth=1, label="loss")
    ax.plot(lrs, smoothed, color="#1f77b4", linewidth=2, label="smoothed loss")
    ax.axvline(suggestion, color="#d62728", linestyle="--", label=f"suggested lr {suggestion:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    top = max(smoothed[: max(1, len(smoothed) // 2)]) * 1.5 if smoothed else None
    ax.set_ylim(0, top)
    ax.legend()
    fig.tight_layout()
    return fig
