"""The logged evaluation pictures (matplotlib): what a person reads on them fits, and says what it shows.

Run: .venv/bin/python -m pytest tests/test_figures.py -q
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from pipeline.training import figures
from tests.test_metrics import WORDS

CLASSES = [str(i) for i in range(10)]


def mistakes(k: int, signed: bool):
    rng = np.random.default_rng(k)
    low = -1 if signed else 0
    maps = [np.clip(rng.normal(0.1, 0.5, (k, 8, 8)), low, 1).astype(np.float32) for _ in range(2)]
    return figures.explanations_figure(rng.integers(0, 256, (k, 1, 8, 8), dtype=np.uint8), *maps, np.arange(k) % 10,
                                       (np.arange(k) + 1) % 10, np.full(k, 0.9), CLASSES,
                                       "integrated gradients" if signed else "Grad-CAM", signed)


def outside(fig) -> list[str]:
    """The texts drawn (partly) outside the figure: what a PNG of it cuts off."""
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    width, height = fig.canvas.get_width_height()
    ticks = [t for ax in fig.axes if ax.axison for t in (*ax.get_xticklabels(), *ax.get_yticklabels())]
    texts = [*fig.texts, *(t for ax in fig.axes for t in ax.texts), *ticks]
    cut = []
    for text in texts:
        if not text.get_visible() or not text.get_text():
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < -0.5 or box.y0 < -0.5 or box.x1 > width + 0.5 or box.y1 > height + 0.5:
            cut.append(text.get_text())
    return cut


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("signed", [False, True])
def test_the_explanations_figure_cuts_off_no_text(k, signed):
    fig = mistakes(k, signed)
    assert outside(fig) == []
    plt.close(fig)


def test_the_colour_scale_shows_the_range_the_method_can_draw():
    signed, grad_cam = mistakes(2, True), mistakes(2, False)
    scale = signed.axes[-1]
    assert scale.get_xlim() == (-1, 1) and [t.get_text() for t in scale.get_xticklabels()][0] == "lowered the score"
    assert np.asarray(scale.images[0].get_array())[0, 0, 2] > np.asarray(scale.images[0].get_array())[0, 0, 0]  # blue
    assert grad_cam.axes[-1].get_xlim() == (0, 1)  # no blue end promised for maps >= 0
    assert "maps are ≥ 0" in grad_cam.texts[0].get_text() and "≥ 0" not in signed.texts[0].get_text()
    assert len(figures.explanations_figure(np.zeros((0, 1, 8, 8), np.uint8), *[np.zeros((0, 8, 8))] * 2, *[[]] * 3,
                                           CLASSES, "Grad-CAM", False).axes) == 1  # nothing to explain: no scale


def test_one_misclassified_image_is_one_image():
    labels, predictions = np.array([0, 1, 2]), np.array([0, 2, 2])
    fig = figures.misclassified_figure(np.zeros((3, 1, 8, 8), np.uint8), labels, predictions, np.full(3, 0.9), CLASSES)
    assert fig._suptitle.get_text() == "1 misclassified test image"
    assert figures.plural(2, "misclassified test image") == "2 misclassified test images"


def test_the_logged_confusion_png_shows_number_words_in_number_order():
    fig = figures.confusion_matrix_figure(np.diag(np.arange(1, 11)), WORDS)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][:3] == ["zero", "one", "two"]
    assert ax.images[0].get_array()[0, 0] == 1.0  # "zero" (10 images, all right) moved with its row
