"""The playground's "unlike the training data" check: pure, on real digits images. Run:
.venv/bin/python -m pytest tests/dashboard/test_input_check.py -q
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dashboard.input_check import unlike_training
from pipeline.config import RunConfig
from pipeline.imaging import images
from pipeline.training import data


@pytest.fixture(scope="module")
def digits():
    return data.load(RunConfig(dataset="digits"))


def check(picture: Image.Image, digits) -> list[str]:
    prepared = images.to_array(picture, digits.channels, digits.image_size)
    return unlike_training(picture, prepared, digits.channels, digits.image_size, digits.mean, digits.std)


def test_a_test_image_is_like_the_training_data(digits):
    for i in range(5):
        assert check(Image.fromarray(digits.test.images[i, 0].numpy(), "L"), digits) == []


def test_a_big_colour_photo_to_a_grayscale_model_is_named(digits):
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), "RGB")
    reasons = " ".join(check(photo, digits))
    assert "colour picture" in reasons and "grayscale" in reasons and "400×300" in reasons


def test_dark_on_light_and_flat_inputs_are_named(digits):
    inverted = Image.fromarray(255 - digits.test.images[0, 0].numpy(), "L")
    assert any("much brighter" in r for r in check(inverted, digits))
    assert any("nearly flat" in r for r in check(Image.new("L", (8, 8), 40), digits))
