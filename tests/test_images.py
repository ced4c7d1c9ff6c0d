"""Decoding and preparing every kind of image a user may upload, with images made here by PIL.

Run: .venv/bin/python -m pytest tests/test_images.py -q
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from pipeline.imaging import images
from pipeline.serving.predict import Preprocessing, decode

RED = (255, 0, 0)
GRAY_OF_RED = 76  # ITU-R 601-2 luma of pure red, what PIL's convert("L") gives


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels but carries almost no data: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- formats --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, options", [("PNG", {}), ("JPEG", {"quality": 95}), ("WEBP", {"lossless": True}),
                                          ("BMP", {}), ("GIF", {}), ("TIFF", {})])
def test_every_upload_format_decodes_to_rgb_or_l(fmt, options):
    img = images.open_image(encoded(Image.new("RGB", (16, 12), RED), fmt, **options), f"red.{fmt.lower()}")
    assert img.mode in ("RGB", "L") and img.size == (16, 12)
    rgb = images.to_array(img, 3, (12, 16))
    assert rgb.shape == (3, 12, 16) and rgb.dtype == np.uint8
    assert np.allclose(rgb[:, 6, 8], RED, atol=3)  # lossy JPEG: within a few levels
    assert abs(int(images.to_array(img, 1, (12, 16))[0, 6, 8]) - GRAY_OF_RED) <= 3


def test_gif_uses_the_first_frame_of_an_animation():
    first = Image.new("P", (8, 8), 0)
    first.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    second = first.copy()
    second.paste(1, (0, 0, 8, 8))
    img = images.open_image(encoded(first, "GIF", save_all=True, append_images=[second]), "anim.gif")
    assert images.to_array(img, 3, (8, 8))[:, 0, 0].tolist() == [10, 20, 30]


def test_lossless_png_roundtrip_keeps_pixels_exactly():
    pixels = noise(9, 7)
    img = images.open_image(encoded(Image.fromarray(pixels), "PNG"))
    assert np.array_equal(images.to_array(img, 3, (9, 7)), pixels.transpose(2, 0, 1))


# --- modes that need converting -------------------------------------------------------------------

def test_16_bit_grayscale_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    data = encoded(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really stored as 16-bit
    arr = images.to_array(images.open_image(data), 1, (8, 8))[0]
    assert arr[0, 0] == 0 and arr[-1, -1] == 255
    assert abs(int(arr[4, 0]) - 130) <= 1  # 33293/65535*255: mid-grey stays mid-grey
    assert np.all(np.diff(arr.ravel().astype(int)) >= 0)  # order kept, nothing saturated early


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_becomes_rgb(fmt):
    img = images.open_image(encoded(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), fmt), f"cmyk.{fmt}")
    assert img.mode == "RGB"
    assert np.allclose(images.to_array(img, 3, (8, 8))[:, 4, 4], RED, atol=3)


def test_rgba_is_composited_over_white():
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:4] = (255, 0, 0, 255)      # top half opaque red
    rgba[4:] = (0, 0, 0, 0)          # bottom half fully transparent black
    rgba[4:, :4] = (0, 0, 0, 128)    # a half-transparent black square
    arr = images.to_array(images.open_image(encoded(Image.fromarray(rgba, "RGBA"), "PNG")), 3, (8, 8))
    assert arr[:, 0, 0].tolist() == list(RED)
    assert arr[:, 7, 7].tolist() == [255, 255, 255]          # transparent shows white, not black
    assert all(abs(int(v) - 127) <= 1 for v in arr[:, 7, 0])  # half black over white: mid grey


def test_palette_images_with_and_without_transparency():
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    arr = images.to_array(images.open_image(encoded(pal, "PNG")), 3, (8, 8))
    assert arr[:, 3, 3].tolist() == [0, 255, 0]
    arr = images.to_array(images.open_image(encoded(pal, "PNG", transparency=1)), 3, (8, 8))
    assert arr[:, 3, 3].tolist() == [255, 255, 255]


@pytest.mark.parametrize("mode, value, gray", [("LA", (40, 255), 40), ("1", 1, 255), ("L", 99, 99)])
def test_other_gray_modes(mode, value, gray):
    img = images.open_image(encoded(Image.new(mode, (4, 4), value), "PNG"))
    assert images.to_array(img, 1, (4, 4))[0, 0, 0] == gray


def test_exif_orientation_is_applied():
    img = Image.fromarray(noise(4, 8))  # 8 wide, 4 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    shown = images.open_image(encoded(img, "JPEG", exif=exif.tobytes()))
    assert shown.size == (4, 8)


# --- sizes ----------------------------------------------------------------------------------------

def test_resize_to_the_models_height_and_width():
    img = images.open_image(encoded(Image.fromarray(noise(40, 30)), "PNG"))
    assert images.to_array(img, 1, (8, 6)).shape == (1, 8, 6)
    assert images.to_array(img, 3, (32, 32)).shape == (3, 32, 32)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(16, 16), (12, 20), (64, 64)])  # shrink, mixed, enlarge
def test_training_and_prediction_share_one_resize(channels, size):
    """data.py's in-memory resize and serving's to_array give the same pixels for the same image."""
    import torch

    from pipeline.training import data

    img = Image.fromarray(noise(40, 30)).convert("L" if channels == 1 else "RGB")
    arr = images.to_array(img, channels, (40, 30))
    x, _ = data._prepare((torch.from_numpy(arr[None]), torch.zeros(1)), size, rgb=False)
    assert np.array_equal(x[0].numpy(), images.to_array(img, channels, size))


def test_imagenet_resize_keeps_the_aspect_and_cuts_out_the_centre():
    """Resize 256 / CenterCrop 224 the torchvision way: a wide photo is not squashed into the square."""
    wide = np.zeros((200, 400, 3), np.uint8)
    wide[:, :100], wide[:, 100:300], wide[:, 300:] = RED, (0, 255, 0), (0, 0, 255)  # red | green | blue
    img = Image.fromarray(wide)
    cropped = images.to_array(img, 3, (64, 64), crop=True)
    assert cropped.shape == (3, 64, 64) and (cropped[1] > 200).all() and (cropped[0] < 30).all()  # all green
    stretched = images.to_array(img, 3, (64, 64))
    assert (stretched[0, :, :8] > 200).all()  # squashed: red on the left
    assert images.resize(Image.new("RGB", (500, 375)), (224, 224), crop=True).size == (224, 224)
    scaled = images.resize(Image.fromarray(np.full((256, 341, 3), 9, np.uint8)), (224, 224), crop=True)
    assert scaled.size == (224, 224)  # 256 shorter side: the centre 224 of it, as CenterCrop(224) after Resize(256)
    region = images.input_region(img, (64, 64), crop=True)  # what the playground lays a heat map over
    assert region.size == (175, 175) and (np.asarray(region)[..., 1] == 255).all()  # the green centre only
    same = np.asarray(images.resize(region, (64, 64)), dtype=int) - np.asarray(images.resize(img, (64, 64), crop=True))
    assert np.abs(same).max() <= 1  # the model's input is that region, resized
    assert images.input_region(img, (64, 64), crop=False) is img


@pytest.mark.parametrize("size", [(16, 16), (40, 40)])  # smaller and larger than the files
def test_imagenet_models_see_at_prediction_the_crop_they_trained_on(tmp_path, size):
    """An image folder decoded for ImageNet weights, and the same file uploaded: the same pixels."""
    import torch

    from pipeline.training import data

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(noise(30, 50)).save(tmp_path / cls / f"{i}.png")  # 50 wide, 30 tall
    x = data._imagefolder(tmp_path, size, imagenet=True)[0]
    uploaded = Preprocessing(("a", "b"), 3, size, (0.5,) * 3, (0.5,) * 3, crop=True).to_array(
        images.open_image((tmp_path / "a" / "0.png").read_bytes()))
    assert np.array_equal(x[0].numpy(), uploaded)
    streamed = data.FileImages([tmp_path / "a" / "0.png"], 3, size, crop=True)  # a folder too big for memory
    assert np.array_equal(streamed[0], uploaded) and np.array_equal(streamed.subset(torch.tensor([0]))[0], uploaded)
    cifar_like = torch.from_numpy(noise(40, 40).transpose(2, 0, 1)[None].copy())  # a built-in dataset's tensor
    prepared, _ = data._prepare((cifar_like, torch.zeros(1)), size, rgb=True, crop=True)
    same = Preprocessing(("a",), 3, size, (0.5,) * 3, (0.5,) * 3, crop=True).to_array(
        Image.fromarray(cifar_like[0].numpy().transpose(1, 2, 0)))
    assert np.array_equal(prepared[0].numpy(), same)  # cropped even at the same size, as an upload is


def test_logged_resize_reaches_prediction():
    meta = {"classes": ["a"], "channels": 3, "image_size": [8, 8], "mean": [0.5] * 3, "std": [0.5] * 3}
    from pipeline import names
    from pipeline.serving.predict import ModelError

    assert not Preprocessing.from_metadata({names.PREPROCESSING_KEY: meta}).crop  # models from before: stretch
    assert Preprocessing.from_metadata({names.PREPROCESSING_KEY: {**meta, "resize": "center_crop"}}).crop
    with pytest.raises(ModelError, match="unknown resize 'fisheye'"):
        Preprocessing.from_metadata({names.PREPROCESSING_KEY: {**meta, "resize": "fisheye"}})


def test_shrinking_averages_areas_so_an_enlarged_image_comes_back():
    small = Image.fromarray(noise(8, 8)[:, :, 0], "L")
    original = np.asarray(small, dtype=int)
    for side in (28, 32):  # nearest enlargement, whole and fractional factors: back exactly
        assert np.array_equal(images.to_array(small.resize((side, side), Image.Resampling.NEAREST), 1, (8, 8))[0],
                              original)
    for side in (28, 64, 256):  # bilinear enlargement: closer than a bilinear shrink (the old resize) gets
        big = small.resize((side, side), Image.Resampling.BILINEAR)
        area = np.abs(images.to_array(big, 1, (8, 8))[0] - original).mean()
        bilinear = np.abs(np.asarray(big.resize((8, 8), Image.Resampling.BILINEAR), dtype=int) - original).mean()
        assert area < 0.8 * bilinear, (side, area, bilinear)


def test_header_reads_size_and_mode_without_pixels(tmp_path):
    Image.fromarray(noise(30, 40)).save(tmp_path / "a.png")
    assert images.read_header(tmp_path / "a.png") == (40, 30, "RGB")
    (tmp_path / "b.png").write_bytes(b"junk")
    with pytest.raises(images.ImageError, match="b.png: not an image"):
        images.read_header(tmp_path / "b.png")


def test_decompression_bomb_is_refused_from_its_header(monkeypatch):
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda img: decoded.append(img))  # PNG pixels load here
    with pytest.raises(images.ImageError, match="over the limit"):
        images.open_image(png_header_only(7000, 7000), "bomb.png")  # 49 M pixels > 40 M
    with pytest.raises(images.ImageError, match="bomb.png"):
        images.open_image(png_header_only(60_000, 60_000), "bomb.png")  # 3.6 G pixels: PIL refuses too
    assert decoded == []  # refused from the header: no pixel was decoded


def test_a_lower_pixel_limit_is_honoured():
    with pytest.raises(images.ImageError, match="over the limit of 100"):
        images.open_image(encoded(Image.new("L", (20, 20)), "PNG"), max_pixels=100)


# --- bad files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, message", [
    (b"", "empty file"),
    (b"%PDF-1.4 definitely not a picture", "not an image"),
    (b"\x89PNG\r\n\x1a\n", "damaged|not an image"),
])
def test_unusable_bytes_raise_image_error_naming_the_file(data, message):
    with pytest.raises(images.ImageError, match=message) as e:
        images.open_image(data, "upload.png")
    assert str(e.value).startswith("upload.png: ")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_is_refused(fmt):
    data = encoded(Image.fromarray(noise(64, 64)), fmt)
    with pytest.raises(images.ImageError, match="damaged"):
        images.open_image(data[: len(data) // 2], f"cut.{fmt.lower()}")


def test_files_by_path_including_an_empty_one(tmp_path):
    good, empty = tmp_path / "good.png", tmp_path / "empty.png"
    good.write_bytes(encoded(Image.new("L", (5, 5), 7), "PNG"))
    empty.write_bytes(b"")
    assert images.open_image(good).size == (5, 5)
    with pytest.raises(images.ImageError, match="empty file"):
        images.open_image(empty)


# --- the model's preparation ----------------------------------------------------------------------

def test_preprocessing_normalizes_like_the_trainer():
    pre = Preprocessing(tuple("ab"), 3, (2, 2), (0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    batch = np.full((1, 3, 2, 2), 255, dtype=np.uint8)
    x = pre.normalize(batch)
    assert x.dtype.is_floating_point and x.shape == (1, 3, 2, 2)
    assert x[0, :, 0, 0].tolist() == pytest.approx([1.0, 3.0, 1.0])


@pytest.mark.parametrize("mode", ["RGBA", "P", "CMYK", "I;16", "LA", "1"])
def test_in_memory_pil_images_get_the_same_conversion_as_files(mode):
    base = Image.new("RGB", (6, 6), RED)
    img = Image.new(mode, (6, 6)) if mode == "I;16" else base.convert(mode)
    from_memory = decode(img)
    from_file = images.open_image(encoded(img, "TIFF" if mode in ("CMYK", "I;16") else "PNG"))
    assert from_memory.mode in ("L", "RGB")
    assert np.array_equal(np.asarray(from_memory), np.asarray(from_file))
