"""Do the maps mean anything? Two checks from the literature, run in the tests and for docs/explanations.md.

- Randomization (Adebayo et al., 2018, "Sanity checks for saliency maps"): maps of the trained
  model should not resemble those of the same architecture with random weights. A method that
  mostly redraws the input (an edge detector) fails: its rank correlation stays near 1.
- Deletion (Samek et al., 2017; Petsiuk et al., 2018): removing the most salient pixels should
  lower the predicted class's probability more than removing as many random pixels.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from pipeline.serving.explain import Explainer


def rank_correlations(maps: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Spearman correlation per image pair of (N, H, W) maps; NaN where a map is constant."""
    out = np.full(len(maps), np.nan)
    for i, (a, b) in enumerate(zip(maps, others)):
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            out[i] = spearmanr(a.ravel(), b.ravel()).statistic
    return out


def randomization(trained: Explainer, random: Explainer, batch: np.ndarray) -> float:
    """Mean rank correlation between the two models' maps of the trained model's predicted classes."""
    import torch

    x = trained.inputs(batch)
    with torch.no_grad():
        targets = trained.net(x).argmax(1).tolist()
    correlations = rank_correlations(trained.attribute(x, targets), random.attribute(random.inputs(batch), targets))
    return float(np.nanmean(correlations))


def deletion(explainer: Explainer, batch: np.ndarray, fraction: float = 0.2, draws: int = 3,
             seed: int = 0) -> tuple[float, float]:
    """Mean drop of the predicted class's probability when the most salient `fraction` of the pixels,
    then as many random ones, are set to the dataset mean (0 after normalization): (salient, random)."""
    import torch

    x = explainer.inputs(batch)
    with torch.no_grad():
        before = explainer.net(x).softmax(1)
    targets = before.argmax(1)
    maps = explainer.attribute(x, targets.tolist()).reshape(len(x), -1)
    n, pixels = maps.shape
    k = max(1, int(round(fraction * pixels)))
    rng = np.random.default_rng(seed)
    salient = np.argsort(-maps, axis=1, kind="stable")[:, :k]
    randoms = [np.stack([rng.permutation(pixels)[:k] for _ in range(n)]) for _ in range(draws)]

    def drop(where: np.ndarray) -> float:
        mask = torch.ones(n, pixels, device=x.device)
        mask[torch.arange(n)[:, None], torch.as_tensor(where, device=x.device)] = 0
        with torch.no_grad():
            after = explainer.net(x * mask.view(n, 1, *x.shape[-2:])).softmax(1)
        rows = torch.arange(n, device=x.device)
        return float((before[rows, targets] - after[rows, targets]).mean())

    return drop(salient), float(np.mean([drop(r) for r in randoms]))
