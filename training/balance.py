"""Class-balanced drawing of training samples (``[data] balance``, ``balance_power``).

Rare groups hold most of the error of the all-ages model: people over 60 (1 in 12 of the
UTKFace training faces) and profile head poses (MTFL's left and right profiles). With
``balance = ["age", "pose"]`` each epoch draws its N samples with replacement, a sample's
chance being ``(share of its group) ** -power`` for each balanced task it is labelled for,
so that ``power = 1`` draws every group equally often and ``power = 0`` is the plain
shuffle. A group is the class of a classification task, or the age band of
``training.metrics.AGE_BANDS`` for age. The weights are normalised within each task's
labelled samples, so a joined dataset keeps each part's share of the draws (an MTFL sample
has no age; a UTKFace sample has no pose).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from training.metrics import AGE_BANDS, band_mask
from training.samples import Sample


def age_bands(ages: np.ndarray) -> np.ndarray:
    """The index in ``AGE_BANDS`` of each age (``training.metrics.band_mask``'s edges)."""
    ages = np.asarray(ages, np.float64)
    bands = np.zeros(len(ages), np.int64)
    for i, (lo, hi) in enumerate(AGE_BANDS):
        bands[band_mask(ages, lo, hi)] = i
    return bands


def labelled_groups(samples: Sequence[Sample], task: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows labelled for ``task`` and the balancing group of each: the age band for age,
    else the class index."""
    rows = np.array([i for i, s in enumerate(samples) if task in s.targets], np.int64)
    labels = np.array([samples[i].targets[task] for i in rows], np.float64)
    return rows, (age_bands(labels) if task == "age" else labels.astype(np.int64))


def sample_weights(samples: Sequence[Sample], tasks: Sequence[str], power: float) -> np.ndarray:
    """One drawing weight per sample (mean 1 over the samples labelled for each balanced task)."""
    weights = np.ones(len(samples), np.float64)
    for task in tasks:
        rows, groups = labelled_groups(samples, task)
        if not len(rows):
            continue
        _, index, counts = np.unique(groups, return_inverse=True, return_counts=True)
        w = (counts[index] / len(rows)) ** -power
        weights[rows] *= w / w.mean()
    return weights


def group_shares(samples: Sequence[Sample], task: str, weights: np.ndarray) -> dict[int, float]:
    """The expected share of each group of ``task`` in a draw with these weights (for the log)."""
    rows, groups = labelled_groups(samples, task)
    w = weights[rows]
    total = w.sum() or 1.0
    return {int(g): float(w[groups == g].sum() / total) for g in np.unique(groups)}
