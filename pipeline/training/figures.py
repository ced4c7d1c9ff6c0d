"""Evaluation pictures as matplotlib figures: the confusion matrix and misclassified examples."""
from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.training import metrics  # noqa: E402

MISCLASSIFIED_SHOWN = 36  # a 6x6 grid


def plural(n: int, thing: str) -> str:
    """'1 misclassified test image', '2 misclassified test images'."""
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def confusion_matrix_figure(matrix: np.ndarray, labels: list[str]):
    """Counts with row-normalized colour, so small classes' mistakes are as visible as big ones'."""
    order = metrics.display_order(labels)  # "two" before "ten": the classes' indices stay as trained
    matrix, labels = np.asarray(matrix)[np.ix_(order, order)], [labels[i] for i in order]
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
    title = plural(len(np.flatnonzero(labels != predictions)), "misclassified test image")
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


# ---------------------------------------------------------------------------------------------
# explanations: red where a pixel raised the class score, blue where it lowered it, the image elsewhere

EXPLAINED_SHOWN = 8      # mistakes in the explanations figure, two per row
TITLE_CHAR_PX = 6.5      # an average character at fontsize 8 and 100 dpi: titles wrap to the figure's width
TITLE_LINE_PX = 13       # one title line
SCALE_PX = 50            # the colour scale under the maps, with its labels
OVERLAY_ALPHA = 0.75     # the strongest evidence covers the image this much
FOR_CLASS, AGAINST_CLASS = (214, 39, 40), (31, 119, 220)  # red raised the class score, blue lowered it


def rgb(picture: np.ndarray) -> np.ndarray:
    """A model input uint8 (C, H, W) with C = 1 or 3, or a picture (H, W) or (H, W, 3) -> uint8 (H, W, 3)."""
    if picture.ndim == 2:
        picture = picture[..., None]
    elif picture.shape[-1] != 3 and picture.shape[0] in (1, 3):
        picture = picture.transpose(1, 2, 0)
    return np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else picture


def overlay(picture: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The picture (any size) under the heat map (any size, values in [-1, 1], stretched over it)."""
    from PIL import Image

    base = rgb(picture).astype(np.float32)
    h, w = base.shape[:2]
    if heat.shape != (h, w):
        heat = np.asarray(Image.fromarray(heat.astype(np.float32), "F").resize((w, h), Image.Resampling.BILINEAR))
    heat = np.clip(heat, -1, 1)[..., None]
    colors = np.where(heat > 0, np.float32(FOR_CLASS), np.float32(AGAINST_CLASS))
    alpha = np.abs(heat) * OVERLAY_ALPHA
    return (base * (1 - alpha) + colors * alpha).round().clip(0, 255).astype(np.uint8)


def _panel(picture: np.ndarray, side: int) -> np.ndarray:
    """An RGB picture resized to side x side: pixels stay sharp when enlarged."""
    from PIL import Image

    img = Image.fromarray(rgb(picture))
    method = Image.Resampling.NEAREST if max(img.size) < side else Image.Resampling.BILINEAR
    return np.asarray(img.resize((side, side), method))


def explanations_figure(images: np.ndarray, for_predicted: np.ndarray, for_true: np.ndarray, labels: np.ndarray,
                        predictions: np.ndarray, confidence: np.ndarray, classes: list[str], method: str,
                        signed: bool = True):
    """The most confident mistakes (already chosen, in order), each as: image | map for the predicted
    class | map for the true class, over a colour scale. Maps: (K, H, W) in [-1, 1] (one symmetric
    scale per image). `signed`: the method keeps what lowered a score (integrated gradients); Grad-CAM's
    maps are >= 0, and the title and the scale say so. One picture with labels, not 24 axes: drawing
    stays well under a second."""
    side, gap, label = 96, 8, 26  # pixels of a panel, between panels, above a row
    pairs = 2 if len(images) > 1 else 1
    rows = max(1, int(np.ceil(len(images) / pairs)))
    width, grid = 3 * pairs * (side + gap) + gap * (pairs - 1), rows * (side + label)
    head = textwrap.wrap(_explanations_title(len(images), method, signed), int(width / TITLE_CHAR_PX))
    top = TITLE_LINE_PX * len(head) + 6
    height = top + grid + SCALE_PX
    canvas = np.full((grid, width, 3), 255, dtype=np.uint8)
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, SCALE_PX / height, 1, grid / height))
    ax.axis("off")
    labels_at = []
    for k, img in enumerate(images):
        row, pair = divmod(k, pairs)
        predicted, true = classes[predictions[k]], classes[labels[k]]
        none = ["" if np.any(m) else ": none" for m in (for_predicted[k], for_true[k])]
        panels = ((rgb(img), f"{true} → {predicted} ({confidence[k]:.0%})"),
                  (overlay(img, for_predicted[k]), f"for {predicted} (predicted){none[0]}"),
                  (overlay(img, for_true[k]), f"for {true} (true){none[1]}"))
        for j, (picture, text) in enumerate(panels):
            x, y = (3 * pair + j) * (side + gap) + pair * gap, row * (side + label) + label
            canvas[y:y + side, x:x + side] = _panel(picture, side)
            labels_at.append((x + side / 2, y - 4, text))
    ax.imshow(canvas, interpolation="nearest")
    for x, y, text in labels_at:
        ax.text(x, y, text, ha="center", va="bottom", fontsize=7)
    fig.text(0.5, 1 - 4 / height, "\n".join(head), ha="center", va="top", fontsize=8)
    if len(images):
        _colour_scale(fig, width, height, signed)
    return fig


def _explanations_title(shown: int, method: str, signed: bool) -> str:
    if not shown:
        return "no misclassified test images to explain"
    which = "The most confident mistake" if shown == 1 else f"The {shown} most confident mistakes"
    caveat = "" if signed else f" · {method} maps are ≥ 0: they show what raised a class score, not what lowered it"
    return f"{which}, explained ({method}){caveat}"


def _colour_scale(fig, width: int, height: int, signed: bool) -> None:
    """The overlay's colours over white, from -1 (or 0 for maps >= 0) to +1 of each image's largest |value|."""
    bar = min(width - 16, 360)
    low = -1.0 if signed else 0.0
    strip = overlay(np.full((1, 256), 255, dtype=np.uint8), np.linspace(low, 1, 256, dtype=np.float32)[None])
    cax = fig.add_axes(((width - bar) / 2 / width, 30 / height, bar / width, 10 / height))
    cax.imshow(strip, aspect="auto", extent=(low, 1, 0, 1), interpolation="bilinear")
    cax.set_yticks([])
    ticks = [low, 0.0, 1.0] if signed else [0.0, 1.0]
    names = ["lowered the score", "0", "raised the score"] if signed else ["0", "raised the score"]
    cax.set_xticks(ticks, names, fontsize=7)
    for tick, align in zip(cax.get_xticklabels(), ["left", *["center"] * (len(ticks) - 2), "right"]):
        tick.set_horizontalalignment(align)
    for spine in cax.spines.values():
        spine.set_linewidth(0.5)


def explanation_figure(original: np.ndarray, prepared: np.ndarray, heat: np.ndarray, title: str):
    """One image's explanation: over the original and over the model input (the CLI's PNG)."""
    fig, axes = plt.subplots(1, 2, figsize=(5.2, 2.9), dpi=100)
    for ax, picture, name in ((axes[0], original, "original"), (axes[1], prepared, "model input")):
        ax.imshow(overlay(picture, heat), interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
