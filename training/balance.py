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

from collections import Counter
from typing import Sequence

import numpy as np

from training.metrics import AGE_BANDS
from training.samples import Sample


def age_band(years: float) -> int:
    for i, (lo, hi) in enumerate(AGE_BANDS):
        if years >= lo and (hi is None or years < hi + 1):
            return i
    return 0


def group_of(task: str, label: float) -> int:
    """The balancing group of one label: the age band for age, else the class index."""
    return age_band(label) if task == "age" else int(label)


def sample_weights(samples: Sequence[Sample], tasks: Sequence[str], power: float) -> np.ndarray:
    """One drawing weight per sample (mean 1 over the samples labelled for each balanced task)."""
    weights = np.ones(len(samples), np.float64)
    for task in tasks:
        rows = [i for i, s in enumerate(samples) if task in s.targets]
        if not rows:
            continue
        groups = [group_of(task, samples[i].targets[task]) for i in rows]
        counts = Counter(groups)
        w = np.array([(counts[g] / len(rows)) ** -power for g in groups])
        weights[rows] *= w / w.mean()
    return weights


def group_shares(samples: Sequence[Sample], task: str, weights: np.ndarray) -> dict[int, float]:
    """The expected share of each group of ``task`` in a draw with these weights (for the log)."""
    rows = [i for i, s in enumerate(samples) if task in s.targets]
    total = sum(weights[i] for i in rows) or 1.0
    shares: Counter = Counter()
    for i in rows:
        shares[group_of(task, samples[i].targets[task])] += weights[i] / total
    return dict(sorted(shares.items()))
