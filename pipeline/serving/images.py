"""Decoding user images safely and turning them into the uint8 (C, H, W) arrays models train on.

Used for image folders at training time and for uploads at prediction time, so both see the same
conversion of odd modes (16-bit, CMYK, RGBA, palette) and the same resize.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import UserError

MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding the pixels


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


def is_grayscale(img: Image.Image) -> bool:
    return img.mode == "L"


def to_array(img: Image.Image, channels: int, size: tuple[int, int]) -> np.ndarray:
    """uint8 array (channels, H, W): converted to L or RGB and resized to `size` (height, width)."""
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR, reducing_gap=3.0)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)
