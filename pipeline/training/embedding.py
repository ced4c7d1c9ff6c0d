"""The test split's penultimate features brought down to 2-D for the Evaluation tab's map.

PCA (scikit-learn) is the default: well under a second for 10,000 images. UMAP (umap-learn) draws
clusters apart more clearly but costs far more on a CPU, most of it numba's first compilation
(bench/embedding_map.py measures both), so it is not run after every training.
"""
from __future__ import annotations

import numpy as np

METHODS = ("pca", "umap")
DEFAULT = "pca"


def reduce(features: np.ndarray, method: str = DEFAULT, seed: int = 0) -> np.ndarray:
    """(N, D) features -> (N, 2) float32 coordinates."""
    x = np.asarray(features, dtype=np.float32)
    if len(x) < 3 or x.shape[1] < 2:  # nothing to project: a point per image on a line
        return np.column_stack([np.arange(len(x)), np.zeros(len(x))]).astype(np.float32)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise ValueError("the umap method needs umap-learn, which make install leaves out (numba and llvmlite "
                             "for a map PCA draws in a second): pip install umap-learn==0.5.12") from None

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x).astype(np.float32)
    if method != "pca":
        raise ValueError(f"embedding method must be one of {', '.join(METHODS)}, got {method!r}")
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(x).astype(np.float32)
