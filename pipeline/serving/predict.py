"""Predictions from logged models: load by registry alias, version or run, prepare images as logged.

A model is pinned to one registered version (an alias is resolved once, at load) and prepares every
image from the preprocessing logged with it (`names.PREPROCESSING_KEY`): no training code and
no guessing. The dashboard's playground, the CLI and scripts all go through `load` and `predict`.

    from pipeline import predict
    model = predict.load("models:/digits-cnn@champion")
    [p] = model.predict([open("7.png", "rb").read()], top=3)
    p.label, p.probability, p.top
"""
from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from PIL import Image

from pipeline import names
from pipeline.runs import tracking
from pipeline.imaging import images
from pipeline.serving.model_refs import URI_FORMS, ModelError, ModelNotFoundError, ModelRef, missing, resolve

__all__ = ["URI_FORMS", "ModelError", "ModelNotFoundError", "ModelRef", "resolve", "Preprocessing", "Prediction",
           "Predictor", "ImageResult", "decode", "predict_many", "load"]
BATCH = 256  # images per forward pass; the exported graph takes any batch size
ImageSource = Union[Image.Image, bytes, str, Path]
if TYPE_CHECKING:  # torch loads with the first model, not with this module (the dashboard lists models first)
    import torch


# ---------------------------------------------------------------------------------------------
# how its inputs are made

@dataclass(frozen=True)
class Preprocessing:
    """What the model was trained on, from its logged metadata: classes, channels, size, mean/std."""
    classes: tuple[str, ...]
    channels: int
    image_size: tuple[int, int]  # (height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset: str = ""
    model: str = ""
    crop: bool = False  # ImageNet's resize (metadata "resize": names.RESIZE_CENTER_CROP); older models stretch
    temperature: float | None = None  # fitted on validation NLL (runs/kept_predictions.py); older models: None

    @classmethod
    def from_metadata(cls, metadata: dict | None, where: str = "the model") -> "Preprocessing":
        pre = (metadata or {}).get(names.PREPROCESSING_KEY)
        if not isinstance(pre, dict):
            raise ModelError(f"{where} has no '{names.PREPROCESSING_KEY}' metadata: it was not logged "
                             "by Runboard's pipeline, so its inputs cannot be prepared")
        resize = pre.get("resize", names.RESIZE_STRETCH)
        if resize not in (names.RESIZE_STRETCH, names.RESIZE_CENTER_CROP):
            raise ModelError(f"{where}: unknown resize {resize!r} in its preprocessing metadata")
        try:
            made = cls(tuple(str(c) for c in pre["classes"]), int(pre["channels"]),
                       (int(pre["image_size"][0]), int(pre["image_size"][1])),
                       tuple(float(v) for v in pre["mean"]), tuple(float(v) for v in pre["std"]),
                       str(pre.get("dataset", "")), str(pre.get("model", "")),
                       crop=resize == names.RESIZE_CENTER_CROP,
                       temperature=float(pre[names.TEMPERATURE_KEY]) if pre.get(names.TEMPERATURE_KEY) else None)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ModelError(f"{where}: unusable preprocessing metadata ({e})") from None
        if made.channels not in (1, 3) or len(made.mean) != made.channels or len(made.std) != made.channels:
            raise ModelError(f"{where}: preprocessing metadata has {made.channels} channels but "
                             f"{len(made.mean)} means and {len(made.std)} stds")
        return made

    def to_array(self, img: Image.Image) -> np.ndarray:
        """uint8 (C, H, W): the image as this model sees it before normalization."""
        return images.to_array(img, self.channels, self.image_size, self.crop)

    def normalize(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float32 /255, minus mean, over std: the same ops as the trainer's."""
        import torch

        return torch.from_numpy(self.normalize_array(batch))

    def normalize_array(self, batch: np.ndarray) -> np.ndarray:
        """normalize() in numpy (float32), for onnxruntime."""
        x = np.asarray(batch, dtype=np.float32) / np.float32(255)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def decode(source: ImageSource, name: str = "") -> Image.Image:
    """A PIL image in L or RGB from bytes, a path or a PIL image; raises images.ImageError."""
    if isinstance(source, Image.Image):
        if source.mode in ("L", "RGB"):
            return source
        source = _encoded(source)  # odd modes (16-bit, CMYK, alpha, palette) take the files' conversion
        if isinstance(source, Image.Image):
            return source
    return images.open_image(source, name)


def _encoded(img: Image.Image) -> bytes | Image.Image:
    for fmt in ("PNG", "TIFF"):  # PNG holds alpha, palettes and 16-bit; TIFF holds CMYK and float
        buffer = io.BytesIO()
        try:
            img.save(buffer, format=fmt)
            return buffer.getvalue()
        except (OSError, KeyError, ValueError):
            continue
    return img.convert("RGB")  # modes no lossless format holds (LAB, HSV): PIL's own conversion


# ---------------------------------------------------------------------------------------------
# predictions

@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    top: list[tuple[str, float]]     # the k most likely classes, most likely first
    probabilities: tuple[float, ...]  # every class, in the order of Preprocessing.classes
    calibrated: bool = False          # softmax(logits / temperature) rather than the raw softmax

    def to_json(self, image: str) -> dict:
        """The CLI's --json line: {"image", "label", "probability", "top": [[label, p], ...]}, and
        "calibrated": true when the probabilities are the temperature-scaled ones."""
        return {"image": image, "label": self.label, "probability": round(self.probability, 6),
                "top": [[label, round(p, 6)] for label, p in self.top], **({"calibrated": True} if self.calibrated else {})}


def probability_kind(preprocessing: "Preprocessing", calibrated: bool) -> str:
    """Which probabilities are shown, in words: 'calibrated (temperature 0.57)' or 'raw softmax'."""
    if calibrated and preprocessing.temperature:
        return f"calibrated (temperature {preprocessing.temperature:.2f}, fitted on validation)"
    return "raw softmax" + (" (this model carries no temperature)" if calibrated else "")


class Predictor:
    """A loaded model with its preprocessing; thread-safe to share (inference only)."""

    def __init__(self, module: torch.nn.Module, preprocessing: Preprocessing, ref: ModelRef):
        self.module, self.preprocessing, self.ref = module, preprocessing, ref

    @property
    def classes(self) -> tuple[str, ...]:
        return self.preprocessing.classes

    def prepare(self, sources: Sequence[ImageSource], names: Sequence[str] = ()) -> np.ndarray:
        """uint8 (N, C, H, W) model inputs before normalization; raises ImageError on a bad image."""
        names = list(names) or [""] * len(sources)
        return np.stack([self.preprocessing.to_array(decode(s, n)) for s, n in zip(sources, names)])

    def logits(self, batch: np.ndarray) -> torch.Tensor:
        """Raw model outputs for prepared uint8 (N, C, H, W) inputs."""
        import torch

        with torch.no_grad():
            out = [self.module(self.preprocessing.normalize(batch[i:i + BATCH])) for i in range(0, len(batch), BATCH)]
            return torch.cat(out).float() if out else torch.empty(0, len(self.classes))

    def predict_prepared(self, batch: np.ndarray, top: int = 5, calibrated: bool = False) -> list[Prediction]:
        """With `calibrated`, the logits are divided by the model's temperature first (when it carries one)."""
        temperature = self.preprocessing.temperature if calibrated else None
        probabilities = (self.logits(batch) / (temperature or 1.0)).softmax(1)
        k = max(1, min(top, len(self.classes)))
        values, indices = probabilities.topk(k, dim=1)
        out = []
        for row, vals, idx in zip(probabilities.tolist(), values.tolist(), indices.tolist()):
            ranked = [(self.classes[i], v) for i, v in zip(idx, vals)]
            out.append(Prediction(ranked[0][0], ranked[0][1], ranked, tuple(row), calibrated=bool(temperature)))
        return out

    def predict(self, sources: Sequence[ImageSource], top: int = 5, names: Sequence[str] = ()) -> list[Prediction]:
        """Labels, probabilities and top-k of each image (one forward pass per BATCH images)."""
        return self.predict_prepared(self.prepare(sources, names), top)


class OnnxPredictor(Predictor):
    """An exported variant (MLflow's ONNX flavor) run by onnxruntime, with the same preprocessing and interface."""

    def __init__(self, session, preprocessing: Preprocessing, ref: ModelRef):
        super().__init__(None, preprocessing, ref)
        self.session = session

    def logits(self, batch: np.ndarray) -> torch.Tensor:
        import torch

        from pipeline.serving import onnx_runtime

        return torch.from_numpy(onnx_runtime.logits(self.session, self.preprocessing.normalize_array(batch)))


@dataclass
class ImageResult:
    """One image of a batch: what was seen and predicted, or why it could not be used."""
    name: str
    image: Image.Image | None = None     # decoded original, in L or RGB
    prepared: np.ndarray | None = None   # uint8 (C, H, W) model input before normalization
    prediction: Prediction | None = None
    error: str = ""


def predict_many(predictor: Predictor, items: Sequence[tuple[str, ImageSource]], top: int = 5,
                 max_bytes: int | None = None, calibrated: bool = False) -> list[ImageResult]:
    """Predict the usable images in one batch; each unusable one (too big, not an image) keeps its error."""
    results = [ImageResult(name) for name, _ in items]
    for result, (name, source) in zip(results, items):
        try:
            if max_bytes is not None and isinstance(source, bytes) and len(source) > max_bytes:
                raise images.ImageError(f"{name}: {len(source) / 2**20:.1f} MB is over the upload limit "
                                        f"of {max_bytes / 2**20:.0f} MB")
            result.image = decode(source, name)
            result.prepared = predictor.preprocessing.to_array(result.image)
        except (images.ImageError, OSError) as e:  # OSError: a path that cannot be opened
            result.error = str(e) if isinstance(e, images.ImageError) else f"{name}: {e.strerror or e}"
    usable = [r for r in results if r.prepared is not None]
    if usable:
        predictions = predictor.predict_prepared(np.stack([r.prepared for r in usable]), top, calibrated)
        for result, prediction in zip(usable, predictions):
            result.prediction = prediction
    return results


def load(uri: str, client: MlflowClient | None = None) -> Predictor:
    """Load `uri` (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model) without pickle.

    A PyTorch (pt2) model runs in torch; an exported variant (ONNX flavor) in onnxruntime.
    """
    import mlflow.pytorch
    from mlflow.models import get_model_info

    client = client or tracking.connect()
    mlflow.set_tracking_uri(client.tracking_uri)  # the loaders below read models:/ through it
    ref = resolve(client, uri)
    try:
        info = get_model_info(ref.load_uri)
        preprocessing = Preprocessing.from_metadata(info.metadata, ref.label)
        if "onnx" in info.flavors and "pytorch" not in info.flavors:
            predictor = _onnx_predictor(ref, info.metadata, preprocessing)
        else:
            with tempfile.TemporaryDirectory(prefix="runboard-model-") as tmp:  # weights end up in memory
                predictor = Predictor(mlflow.pytorch.load_model(ref.load_uri, dst_path=tmp), preprocessing, ref)
    except MlflowException as e:
        reason = str(e).splitlines()[0]
        if missing(e) and not ref.name:
            path = ref.load_uri.split("/", 2)[2]
            raise ModelNotFoundError(f"run {ref.run_id} has no model logged as {path!r}") from None
        if missing(e):
            raise ModelNotFoundError(f"{ref.label}: its logged model is gone ({reason})") from None
        raise ModelError(f"{ref.label}: cannot be loaded ({reason})") from None
    except (OSError, RuntimeError) as e:  # missing or damaged artifact files
        raise ModelError(f"{ref.label}: cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    c, (h, w) = preprocessing.channels, preprocessing.image_size
    for n in (2, 1):  # the first calls of an exported graph are slow: pay them here, not per image
        predictor.predict_prepared(np.zeros((n, c, h, w), dtype=np.uint8))
    return predictor


def _onnx_predictor(ref: ModelRef, metadata: dict, preprocessing: Preprocessing) -> OnnxPredictor:
    """The variant in onnxruntime, named after its source (`digits-cnn v1 · int8`) when loaded by run."""
    import dataclasses

    import mlflow.onnx

    from pipeline import settings
    from pipeline.serving import onnx_runtime

    variant, source = str(metadata.get(names.VARIANT_KEY, "onnx")), str(metadata.get(names.SOURCE_KEY, ""))
    proto = mlflow.onnx.load_model(ref.load_uri)  # onnx.checker + protobuf parse: no pickle
    session = onnx_runtime.session(proto.SerializeToString(), settings.predict_threads())
    return OnnxPredictor(session, preprocessing, dataclasses.replace(ref, variant=variant, source=source))
