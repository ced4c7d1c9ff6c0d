"""Decoding user images safely and turning them into the uint8 (C, H, W) arrays models train on.

Used for image folders at training time and for uploads at prediction time, so both see the same
conversion of odd modes (16-bit, CMYK, RGBA, palette) and the same resize (`resize`): it averages
areas when it shrinks (PIL's BOX filter), so an image enlarged by a screenshot or a phone comes back
to the pixels the model was trained on; it interpolates bilinearly when it enlarges. Models on
ImageNet weights take ImageNet's own preparation instead (`crop`): the shorter side scaled to
size / 0.875 (256 for 224), keeping the aspect ratio, then the centre cut out (torchvision's
Resize(256) + CenterCrop(224)), so photos of any shape are not squashed.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import UserError

MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding the pixels
CROP_FRACTION = 0.875    # ImageNet's evaluation crop: 224 of 256


class ImageError(UserError):
    """An image that cannot be used; the message says which and why."""


def open_image(source: str | Path | bytes, name: str = "", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode one image (first frame of animations), checking its size before its pixels are read."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    if isinstance(source, bytes):
        if not source:
            raise ImageError(f"{label}: empty file")
        stream = io.BytesIO(source)
    else:
        stream = open(source, "rb")
        if not stream.seek(0, io.SEEK_END):
            stream.close()
            raise ImageError(f"{label}: empty file")
        stream.seek(0)
    try:
        with Image.open(stream) as img:  # lazy: only the header is read here
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(f"{label}: {width}x{height} pixels is over the limit of {max_pixels:,}")
            img.seek(0)
            img.load()
            return _to_8bit(ImageOps.exif_transpose(img) or img)
    except ImageError:
        raise
    except UnidentifiedImageError:  # Pillow's message names a file object, not the file
        raise ImageError(f"{label}: not an image, or in a format that cannot be read") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{label}: not a readable image ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        raise ImageError(f"{label}: damaged image ({e})") from None
    finally:
        stream.close()


def _to_8bit(img: Image.Image) -> Image.Image:
    """Bring every mode to L or RGB without losing the picture (alpha over white, 16-bit scaled)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        span = float(arr.max() - arr.min()) or 1.0
        return Image.fromarray(((arr - arr.min()) / span * 255.0).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("1",):
        return img.convert("L")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBA (composited above)


GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})  # decode to one channel (LA: over white)


def read_header(path: str | Path) -> tuple[int, int, str]:
    """(width, height, mode) from the file's header only: no pixels are decoded (cheap folder scans)."""
    try:
        with Image.open(path) as img:
            return img.width, img.height, img.mode
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image, or in a format that cannot be read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path}: damaged image ({e})") from None


def is_grayscale(img: Image.Image) -> bool:
    return img.mode == "L"


def resize(img: Image.Image, size: tuple[int, int], crop: bool = False) -> Image.Image:
    """The one resize of training and prediction, to `size` (height, width).

    Shrinking averages areas (BOX), so an enlarged copy comes back to the original; enlarging (or a
    mix of the two) interpolates bilinearly. With `crop`, ImageNet's way: scale keeping the aspect
    ratio until `size` is CROP_FRACTION of it, then cut out the centre.
    """
    height, width = size
    if crop:
        scale = _crop_scale(img, size)
        scaled = resize(img, (max(height, round(img.height * scale)), max(width, round(img.width * scale))))
        left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
        return scaled.crop((left, top, left + width, top + height))
    if img.size == (width, height):
        return img
    shrinking = width <= img.width and height <= img.height
    return img.resize((width, height), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR)


def _crop_scale(img: Image.Image, size: tuple[int, int]) -> float:
    """The factor `resize(crop=True)` scales by: `size` is then CROP_FRACTION of the scaled picture's shorter fit."""
    return max(size[0] / img.height, size[1] / img.width) / CROP_FRACTION


def input_region(img: Image.Image, size: tuple[int, int], crop: bool) -> Image.Image:
    """The part of `img` a model's input of `size` shows, in the original's pixels: all of it, or with
    `crop` the centre that `resize(crop=True)` keeps (so a heat map can be laid over what it was computed on)."""
    if not crop:
        return img
    scale = _crop_scale(img, size)
    width, height = min(img.width, round(size[1] / scale)), min(img.height, round(size[0] / scale))
    left, top = (img.width - width) // 2, (img.height - height) // 2
    return img.crop((left, top, left + width, top + height))


def resize_array(arr: np.ndarray, size: tuple[int, int], crop: bool = False) -> np.ndarray:
    """uint8 (C, H, W) with C 1 or 3, resized by `resize`: the tensors of built-in datasets take it too."""
    if tuple(arr.shape[1:]) == tuple(size) and not crop:
        return arr
    img = Image.fromarray(arr[0], "L") if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0), "RGB")
    return _planes(resize(img, size, crop))


def to_array(img: Image.Image, channels: int, size: tuple[int, int], crop: bool = False) -> np.ndarray:
    """uint8 array (channels, H, W): converted to L or RGB and resized to `size` (height, width)."""
    return _planes(resize(img.convert("L" if channels == 1 else "RGB"), size, crop))


def _planes(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
