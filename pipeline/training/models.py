"""Architecture registry: each builder adapts its network to the data's channels, size and classes.

Models take normalized float images (N, C, H, W) and return logits. Pretrained weights only ever
come from a local file (`--weights`); layers whose shapes differ (the classifier, a first conv on
other channels) keep their fresh initialization.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

IMAGENET_CLASSES = 1000
SMALL_INPUT = 64  # at or below this side, torchvision nets drop their early downsampling
BN_MOMENTUM = 0.1  # torchvision's mobilenet uses 0.01, which suits ImageNet-long runs; short runs need 0.1


def mlp(channels: int, size: tuple[int, int], classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(channels * size[0] * size[1], 256), nn.ReLU(inplace=True), nn.Dropout(0.1),
        nn.Linear(256, 128), nn.ReLU(inplace=True),
        nn.Linear(128, classes),
    )


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def cnn(channels: int, size: tuple[int, int], classes: int) -> nn.Module:
    """A small VGG-style net: good on 8x8 digits and fine up to CIFAR-sized images."""
    pool = [nn.MaxPool2d(2)] if min(size) >= 8 else []
    deep_pool = [nn.MaxPool2d(2)] if min(size) >= 16 else []
    return nn.Sequential(
        _conv(channels, 32), _conv(32, 64), *pool,
        _conv(64, 128), *deep_pool, _conv(128, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(128, classes),
    )


def resnet18(channels: int, size: tuple[int, int], classes: int) -> nn.Module:
    import torchvision

    net = torchvision.models.resnet18(weights=None, num_classes=classes)
    if min(size) <= SMALL_INPUT:  # CIFAR-style stem: 3x3 stride 1, no max-pool
        net.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    return net


def mobilenet_v3_small(channels: int, size: tuple[int, int], classes: int) -> nn.Module:
    import torchvision

    net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=classes)
    stem = net.features[0][0]
    stride = 1 if min(size) <= SMALL_INPUT else 2
    if channels != 3 or stride != 2:
        net.features[0][0] = nn.Conv2d(channels, stem.out_channels, 3, stride=stride, padding=1, bias=False)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = BN_MOMENTUM
    return net


MODELS = {"mlp": mlp, "cnn": cnn, "resnet18": resnet18, "mobilenet_v3_small": mobilenet_v3_small}


def build(name: str, channels: int, size: tuple[int, int], classes: int, weights: str = "") -> nn.Module:
    """A fresh model for this data; `weights` (a local state-dict file) loads what fits."""
    model = MODELS[name](channels, tuple(size), classes)
    if weights:
        load_weights(model, Path(weights))
    return model


def load_weights(model: nn.Module, path: Path) -> list[str]:
    """Load matching tensors from a state dict (no pickle); return the names that were skipped."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fitting:
        raise ValueError(f"weights file {path} has no tensor matching this model")
    model.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))


def imagenet_weights(name: str, path: Path) -> bool:
    """True for a torchvision ImageNet state dict of `name`'s family: its classifier has 1000 outputs."""
    if name not in ("resnet18", "mobilenet_v3_small"):
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a state dict at all: build() names the file when it tries to load it
        return False
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    head = "fc.weight" if name == "resnet18" else "classifier.3.weight"
    return head in state and tuple(state[head].shape)[:1] == (IMAGENET_CLASSES,)


def classifier(model: nn.Module) -> nn.Module:
    """The last linear layer: what freezing leaves trainable."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def freeze_backbone(model: nn.Module, frozen: bool) -> None:
    """Stop (or restart) gradients to every parameter but the classifier's; an optimizer skips them."""
    head = {id(p) for p in classifier(model).parameters()}
    for p in model.parameters():
        p.requires_grad_(not frozen or id(p) in head)
