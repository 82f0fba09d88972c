"""The torch Dataset over a chip cache (``training/chips.py``): chips and their training targets."""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import torch

from engine.modelspec import TaskSpec
from training.chips import ChipCache
from training.samples import DataError, Sample
from training.task_heads import task_head


class ChipDataset(torch.utils.data.Dataset):
    """(chip uint8 [150,150,3] HWC, {task: float target}) for each sample that has a chip.

    Samples without a chip in the cache (no face found, unreadable image, not cached) are
    dropped and counted: ``dropped`` (total) and ``dropped_reasons`` (reason -> count).
    ``flip`` mirrors each chip left-right with probability 0.5 (torch's RNG, so DataLoader
    workers seed it). Targets are encoded by each task's kind (``training/task_heads.py``
    ``scale_target``: regression on the 0..1 scale of its range, the others as labelled). A task
    a sample has no label for gets the target NaN, which the losses and metrics skip
    (``training.losses.labelled``); ``labelled`` counts the labels per task. ``rows`` and
    ``targets`` (task -> float32 [N]) are exposed for callers that precompute features over the
    whole set.
    """

    def __init__(self, cache: ChipCache, samples: Sequence[Sample], tasks: Sequence[TaskSpec], flip: bool = False):
        self.cache, self.tasks, self.flip = cache, tuple(tasks), flip
        reasons: Counter = Counter()
        kept, rows = [], []
        for s in samples:
            row = cache.row_of.get(s.file)
            if row is None:
                reasons[cache.status_of.get(s.file, "not in cache")] += 1
                continue
            kept.append(s)
            rows.append(row)
        self.samples = tuple(kept)
        self.rows = np.asarray(rows, np.int64)
        self.dropped_reasons = dict(reasons)
        self.dropped = sum(reasons.values())
        if samples and not kept:
            raise DataError(f"{cache.folder}: none of the {len(samples)} samples has a chip in this cache "
                            f"({', '.join(f'{r}: {n}' for r, n in sorted(reasons.items()))})")
        self.targets: dict[str, np.ndarray] = {}
        for t in self.tasks:  # a sample without a label for a task gets NaN there (partial labels)
            encode = task_head(t).scale_target  # the kind's target encoding (regression: 0..1 of its range)
            self.targets[t.name] = np.array([encode(t, s.targets[t.name]) if t.name in s.targets else np.nan
                                             for s in kept], np.float32)
        self.labelled = {name: int(np.isfinite(v).sum()) for name, v in self.targets.items()}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        chip = self.cache.chips[self.rows[i]]
        if self.flip and torch.rand(()).item() < 0.5:
            chip = chip[:, ::-1]
        targets = {name: torch.tensor(v[i]) for name, v in self.targets.items()}
        return torch.from_numpy(np.array(chip, np.uint8)), targets  # a writable copy of the memmap row
