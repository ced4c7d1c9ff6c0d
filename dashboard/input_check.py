"""Is an input like what the model was trained on? Plain reasons, shown beside the prediction (no Streamlit).

A model answers anything it is given, with a confident-looking probability; these checks say when
that answer deserves little trust: a colour picture to a grayscale model, a picture scaled far from
the model's input size, or one much brighter, darker or flatter than the training images (the
model's logged mean/std).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

COLOUR_SPREAD = 0.06    # mean |channel - gray| (0..1) above which an RGB picture is really in colour
SCALE_FACTOR = 4.0      # resized by more than this (either way) from its original size
BRIGHTNESS_GAP = 0.25   # |image mean - training mean| (0..1) above which it is much brighter/darker
FLAT_SHARE = 0.25       # image std below this share of the training std: nearly flat


def unlike_training(image: Image.Image, prepared: np.ndarray, channels: int, image_size: tuple[int, int],
                    mean: tuple[float, ...], std: tuple[float, ...]) -> list[str]:
    """Why `image` (the decoded original) and `prepared` (uint8 C,H,W model input) differ from the training data."""
    reasons = []
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255 if channels == 1 else np.zeros(0)
    if rgb.size:  # only a grayscale model loses colour (a 12 MP upload is ~144 MB of floats: not for nothing)
        spread = float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean())
        if spread > COLOUR_SPREAD:
            reasons.append("it is a colour picture, and this model was trained on grayscale images "
                           "(it sees only the brightness)")
    height, width = image_size
    factor = max(image.width / width, width / image.width, image.height / height, height / image.height)
    if factor > SCALE_FACTOR:
        reasons.append(f"it is {image.width}×{image.height}, resized to the model's {width}×{height} "
                       f"(×{factor:.0f} {'smaller' if image.width > width else 'larger'}), so details change a lot")
    pixels = prepared.astype(np.float32) / 255
    trained_mean, trained_std = float(np.mean(mean)), float(np.mean(std))
    seen_mean, seen_std = float(pixels.mean()), float(pixels.std())
    if abs(seen_mean - trained_mean) > BRIGHTNESS_GAP:
        reasons.append(f"it is much {'brighter' if seen_mean > trained_mean else 'darker'} than the training "
                       f"images (mean {seen_mean:.2f} vs {trained_mean:.2f} on 0..1)"
                       + (", as an inverted picture (dark on light) would be" if seen_mean > trained_mean else ""))
    if trained_std > 0 and seen_std < FLAT_SHARE * trained_std:
        reasons.append(f"it is nearly flat (contrast {seen_std:.2f} vs {trained_std:.2f} in training)")
    return reasons


def reasons_for(result, preprocessing) -> list[str]:
    """unlike_training for a predicted ImageResult under a model's Preprocessing ([] for an unusable image)."""
    if result.prediction is None:
        return []
    p = preprocessing
    return unlike_training(result.image, result.prepared, p.channels, p.image_size, p.mean, p.std)


def sentence(reasons: list[str]) -> str:
    """The reasons as one sentence, the way the detail view, the table row and the CSV all say it."""
    return "; ".join(reasons) + "." if reasons else ""
