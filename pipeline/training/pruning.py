"""Pruning a trained network: whole channels with Torch-Pruning, single weights with torch.nn.utils.prune.

    spec = pruning.parse("channels:0.5")            # PruneError names what is wrong
    net = pruning.apply(net, spec, example)         # a smaller network (channels) or a masked one (weights)
    pruning.finalize(net)                           # bake the masks in before exporting

Channels: Torch-Pruning's dependency graph removes the same share of output channels (neurons for
linear layers) from every prunable group, ranked by L1 norm; the classifier (last linear layer) keeps
its outputs, one per class. The network really shrinks. Weights: global magnitude (L1) pruning zeroes
the smallest share of all conv and linear weights taken together; shapes stay, so the gain shows only
when the weights are stored sparse or compressed. No MLflow here: serving/prune.py logs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import UserError

if TYPE_CHECKING:  # torch loads with the first pruning, not with the spec: the dashboard queues jobs with parse()
    import torch
    from torch import nn

KINDS = ("channels", "weights")
MAX_RATIO = 0.95  # beyond this a network keeps too little to fine-tune back


class PruneError(UserError):
    """A pruning request that cannot be done: bad spec, or nothing in the model to prune."""


@dataclass(frozen=True)
class Spec:
    kind: str     # channels or weights
    ratio: float  # share of channels removed, or of weights zeroed

    def __str__(self) -> str:
        return f"{self.kind}:{self.ratio:g}"


def parse(text: str) -> Spec:
    """`channels:R` or `weights:R`, R in (0, 0.95]."""
    kind, _, ratio = str(text).strip().partition(":")
    if kind not in KINDS:
        raise PruneError(f"--prune must be channels:R or weights:R, got {text!r}")
    try:
        value = float(ratio)
    except ValueError:
        raise PruneError(f"--prune {kind}: the ratio must be a number in (0, {MAX_RATIO}], got {ratio!r}") from None
    if not 0 < value <= MAX_RATIO:
        raise PruneError(f"--prune {kind}: the ratio must be in (0, {MAX_RATIO}], got {value:g}")
    return Spec(kind, value)


def parameters(net: nn.Module) -> int:
    """Stored parameters (a masked weight counts once)."""
    return sum(p.numel() for p in net.parameters())  # a masked weight's parameter is weight_orig: once


def nonzero(net: nn.Module) -> int:
    """Parameters that are not zero, masks applied."""
    import torch

    count = 0
    for module in net.modules():
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("_orig"):
                p = getattr(module, name.removesuffix("_orig"))  # the masked weight the forward uses
            count += int(torch.count_nonzero(p.detach()))
    return count


def _layers(net: nn.Module) -> list[nn.Module]:
    from torch import nn

    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def apply(net: nn.Module, spec: Spec, example: torch.Tensor) -> nn.Module:
    """Prune `net` in place as `spec` asks and return it (eval mode); PruneError when nothing can be."""
    net.eval()
    if spec.kind == "channels":
        return _channels(net, spec.ratio, example)
    return _weights(net, spec.ratio)


def _channels(net: nn.Module, ratio: float, example: torch.Tensor) -> nn.Module:
    import torch_pruning as tp
    from torch import nn

    from pipeline.training import models

    layers = _layers(net)
    head = models.classifier(net) if any(isinstance(m, nn.Linear) for m in layers) else None
    if not [m for m in layers if m is not head]:
        raise PruneError(f"{type(net).__name__} has no channel to prune: its only conv or linear layer is the "
                         "classifier, which keeps one output per class")
    before = parameters(net)
    pruner = tp.pruner.MetaPruner(net, example, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=[head] if head is not None else [])
    pruner.step()
    if parameters(net) >= before:
        raise PruneError(f"{type(net).__name__} has no channel to prune at {ratio:g}: every layer feeds the "
                         "classifier or the input directly")
    return net


def _weights(net: nn.Module, ratio: float) -> nn.Module:
    from torch.nn.utils import prune

    layers = _layers(net)
    if not layers:
        raise PruneError(f"{type(net).__name__} has no conv or linear weight to prune")
    prune.global_unstructured([(m, "weight") for m in layers], pruning_method=prune.L1Unstructured, amount=ratio)
    return net


def finalize(net: nn.Module) -> nn.Module:
    """Make weight masks permanent (zeros in the weights, no hooks): what export and serving need."""
    from torch.nn.utils import prune

    for module in net.modules():
        if prune.is_pruned(module) and hasattr(module, "weight_orig"):
            prune.remove(module, "weight")
    return net


def weight_sparsity(net: nn.Module) -> float:
    """The share of conv and linear weights that are zero (masks applied): what `weights:R` asks for."""
    layers = _layers(net)
    total = sum(m.weight.numel() for m in layers)
    return sum(int((m.weight == 0).sum()) for m in layers) / total if total else 0.0
