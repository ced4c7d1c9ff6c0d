"""Explanations: which pixels drove a model's answer, as a map over its input (Captum).

- Grad-CAM on the last convolutional block for conv nets (cnn, resnet18, mobilenet_v3_small),
  upsampled bilinearly to the input's size; it is >= 0 (evidence for the class only: `signed` says so).
- Signed integrated gradients from the mean image (0 after normalization) for the mlp, and for conv
  nets whose last block is 1x1 at this input size (resnet18 or mobilenet on 8x8 digits), where a
  Grad-CAM map would be one constant. Positive: raised the class score; negative: lowered it.
  (|IG| from a black image fails the randomization check: it mostly redraws the ink.)

The logged model is a pt2 program whose submodules are never called, so Captum's layer hooks see
nothing. The eager network is rebuilt from the logged architecture and the program's weights and
checked to give the same logits before it explains anything.

    from pipeline.serving import explain
    [e] = explain.explain("models:/digits-cnn@champion", ["7.png"])
    e.label, e.method, e.heat   # heat: (H, W) at the model input's size, in [-1, 1]
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from pipeline.errors import UserError
from pipeline.serving import predict

if TYPE_CHECKING:
    import torch
    from torch import nn

GRADCAM, INTEGRATED_GRADIENTS = "Grad-CAM", "integrated gradients"
IG_STEPS = 32              # Riemann steps; 32 gives the maps of 300 steps on digits, at 1.8 ms an image
IG_BATCH = 1024            # images x steps per forward pass
SAME_LOGITS = 1e-4         # the rebuilt network may differ from the logged program by this much
MIN_MAP_SIDE = 2           # a smaller Grad-CAM map (1x1) is constant: use integrated gradients


def signed(method: str) -> bool:
    """Whether `method`'s maps show what lowered a score too: integrated gradients do; Grad-CAM here keeps
    Captum's relu_attributions (the published method), so its maps are >= 0."""
    return method == INTEGRATED_GRADIENTS


class ClassNotFoundError(UserError):
    """A class to explain that the model does not have."""


@dataclass(frozen=True)
class Explanation:
    label: str              # the class explained
    method: str             # GRADCAM or INTEGRATED_GRADIENTS
    attribution: np.ndarray  # float32 (H, W) at the model input's size, unscaled

    @property
    def heat(self) -> np.ndarray:
        """The attribution over its largest |value|, in [-1, 1]; all zero when nothing spoke for the class."""
        return scaled(self.attribution)

    @property
    def empty(self) -> bool:
        return not np.any(self.attribution)

    @property
    def signed(self) -> bool:
        return signed(self.method)


def scaled(attribution: np.ndarray) -> np.ndarray:
    top = float(np.abs(attribution).max()) if attribution.size else 0.0
    return (attribution / top).astype(np.float32) if top > 0 else np.zeros_like(attribution, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# which layer

def last_block(name: str, net: nn.Module) -> nn.Module | None:
    """The last convolutional block of a Runboard architecture; None for the mlp."""
    from torch import nn

    if name == "cnn":
        return [m for m in net if isinstance(m, nn.Sequential)][-1]
    if name == "resnet18":
        return net.layer4
    if name == "mobilenet_v3_small":
        return net.features[-1]
    return None


def _map_side(net: nn.Module, layer: nn.Module, x: torch.Tensor) -> int:
    """The smaller side of `layer`'s output for input `x`."""
    import torch

    seen = []
    handle = layer.register_forward_hook(lambda m, i, out: seen.append(out.shape[-2:]))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    return int(min(seen[0]))


# ---------------------------------------------------------------------------------------------
# maps

class Explainer:
    """Maps for an eager network and its preprocessing; thread-safe (Captum's hooks are one at a time)."""

    def __init__(self, net: nn.Module, preprocessing: predict.Preprocessing):
        import torch

        self.net, self.preprocessing = net.eval(), preprocessing
        self.device = next(net.parameters()).device
        c, (h, w) = preprocessing.channels, preprocessing.image_size
        layer = last_block(preprocessing.model, net)
        if layer is not None and _map_side(net, layer, torch.zeros(1, c, h, w, device=self.device)) < MIN_MAP_SIDE:
            layer = None
        self.layer = layer
        self.method = GRADCAM if layer is not None else INTEGRATED_GRADIENTS
        self._lock = threading.Lock()

    def inputs(self, batch: np.ndarray) -> torch.Tensor:
        """Prepared uint8 (N, C, H, W) -> the normalized float batch on the network's device."""
        return self.preprocessing.normalize(np.require(batch, requirements="W")).to(self.device)  # torch wants writable

    def targets(self, target: str | None, n: int) -> list[int] | None:
        if target is None:
            return None
        classes = self.preprocessing.classes
        if target not in classes:
            raise ClassNotFoundError(f"the model has no class {target!r}; its classes: {', '.join(classes)}")
        return [classes.index(target)] * n

    def attribute(self, x: torch.Tensor, targets: Sequence[int]) -> np.ndarray:
        """float32 (N, H, W) maps of normalized inputs `x` for class indices `targets`."""
        import torch
        from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

        if len(x) == 0:
            return np.zeros((0, *x.shape[-2:]), dtype=np.float32)
        target = torch.as_tensor(list(targets), device=x.device)
        with self._lock:
            if self.layer is not None:
                cam = LayerGradCam(self.net, self.layer).attribute(x, target=target, relu_attributions=True)
                maps = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]
            else:
                ig = IntegratedGradients(self.net).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                             n_steps=IG_STEPS, internal_batch_size=IG_BATCH)
                maps = ig.sum(1)  # channels add up: one map per image
        return maps.detach().float().cpu().numpy()

    def explain(self, batch: np.ndarray, target: str | None = None) -> list[Explanation]:
        """One explanation per prepared uint8 image: for `target` (a class name), else the predicted class."""
        import torch

        x = self.inputs(batch)
        indices = self.targets(target, len(x))
        if indices is None:
            with torch.no_grad():
                indices = self.net(x).argmax(1).tolist() if len(x) else []
        maps = self.attribute(x, indices)
        return [Explanation(self.preprocessing.classes[i], self.method, m) for i, m in zip(indices, maps)]


# ---------------------------------------------------------------------------------------------
# from a logged model

def rebuild(predictor: predict.Predictor) -> nn.Module:
    """The eager network of a loaded model: its architecture from the metadata, the program's weights.

    Raises predict.ModelError when the architecture is unknown or the weights or logits do not match.
    """
    import torch

    from pipeline.training import models

    pre, label = predictor.preprocessing, predictor.ref.label
    if predictor.module is None:  # before building a network for weights that are not there
        raise predict.ModelError(f"{label}: an exported ONNX variant has no PyTorch weights to explain; "
                                 "explain its source model")
    if pre.model not in models.MODELS:
        raise predict.ModelError(f"{label}: its architecture {pre.model or '(not logged)'!r} is not one Runboard "
                                 "builds, so it cannot be explained")
    net = models.build(pre.model, pre.channels, pre.image_size, len(pre.classes))
    try:
        net.load_state_dict(predictor.module.state_dict())
    except (AttributeError, RuntimeError) as e:
        raise predict.ModelError(f"{label}: its weights do not fit a {pre.model} ({str(e).splitlines()[0]})") from None
    net.eval()
    probe = np.random.default_rng(0).integers(0, 256, (4, pre.channels, *pre.image_size), dtype=np.uint8)
    with torch.no_grad():
        difference = (net(pre.normalize(probe)) - predictor.logits(probe)).abs().max().item()
    if not difference <= SAME_LOGITS:
        raise predict.ModelError(f"{label}: the rebuilt {pre.model} differs from the logged model "
                                 f"(logits by {difference:.2g}), so its maps would explain another model")
    return net


def for_predictor(predictor: predict.Predictor) -> Explainer:
    """An Explainer for a loaded model (rebuild, check, pick the method): cache it beside the model."""
    return Explainer(rebuild(predictor), predictor.preprocessing)


def explain(model_uri: str, sources: Sequence[predict.ImageSource], target: str | None = None,
            client=None) -> list[Explanation]:
    """Maps of `sources` (paths, bytes, PIL images) under `model_uri`, for `target` or each predicted class."""
    predictor = predict.load(model_uri, client)
    return for_predictor(predictor).explain(predictor.prepare(sources), target)
