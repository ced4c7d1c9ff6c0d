"""Out-of-fold predicted probabilities: K models, each scoring the fold it never trained on.

What cleanlab's confident learning needs (runs/audit.py): every image scored by a model that did not
see it. Folds are stratified and fixed by the config's seed; each fold model trains exactly as a run
would (engine.fit), with its held fold as validation and test.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from pipeline.config import RunConfig
from pipeline.training import data as datasets
from pipeline.training import engine


def out_of_fold(config: RunConfig, folder: datasets.Folder, folds: int,
                done: Callable[[int, np.ndarray], None] = lambda k, held: None,
                finished: Mapping[int, np.ndarray] | None = None) -> np.ndarray:
    """(N, classes) float32 probabilities, row i from the model that held image i out; `done(k, rows)` after
    fold k with its held rows. A fold in `finished` (its held rows, from an earlier attempt) is not trained
    again: the folds are fixed by the seed, so its rows are the same images."""
    labels = folder.labels.numpy()
    probabilities = np.zeros((len(labels), len(folder.classes)), dtype=np.float32)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    for k, (train_idx, held_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels), start=1):
        earlier = (finished or {}).get(k)
        if earlier is not None and earlier.shape == (len(held_idx), len(folder.classes)):
            probabilities[held_idx] = earlier
            continue
        train, held = _part(folder, train_idx), _part(folder, held_idx)
        fold = datasets.ImageData(config.dataset, folder.classes, train, held, held, flip=config.flip)
        result = engine.fit(config, fold, engine.NullTracker(), progress=False)
        probabilities[held_idx] = result.test.probabilities
        done(k, result.test.probabilities)
    return probabilities


def _part(folder: datasets.Folder, idx: np.ndarray) -> datasets.Split:
    index = torch.from_numpy(idx)
    images = folder.images[index] if isinstance(folder.images, torch.Tensor) else folder.images.subset(index)
    return datasets.Split(images, folder.labels[index])
