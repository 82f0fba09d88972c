"""A split held in memory as one tensor, served in batches by indexing (no DataLoader, no
per-sample Python): chips as uint8 [N,150,150,3] (10.4k CORAL training chips = 0.7 GB), or
cached stem activations as float16 [N,V,C,H,W] (V = 2 views, the chip and its mirror, when
the stem cache was built with flips).

Shuffling draws a permutation (or, with ``weights``, N samples with replacement) from a
generator seeded with (seed, epoch), the same on every DDP rank; each rank takes every
world-th index of it, cut to the same length on all ranks so their steps stay in lockstep.
Validation shards ``range(rank, N, world)`` so that every sample is seen once over all ranks. The random stem view is drawn from torch's global
RNG (checkpointed by the loop).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

Batch = tuple[torch.Tensor, dict[str, torch.Tensor]]


@dataclass
class MemorySplit:
    inputs: torch.Tensor  # uint8 [N,H,W,3] chips, or float16 [N,V,...] stems
    targets: dict[str, torch.Tensor]  # task -> float32 [N]
    stem_views: int = 0  # 0: inputs are chips; else the number of stem views per sample
    random_view: bool = False  # stems: a random view per sample (train with flip), else view 0
    weights: torch.Tensor | None = None  # float64 [N]: train draws N samples with replacement by these (training.balance)

    @classmethod
    def from_chips(cls, ds) -> "MemorySplit":
        """A ``training.chip_dataset.ChipDataset`` read whole into memory (rows sorted for a sequential read)."""
        order = np.argsort(ds.rows, kind="stable")
        chips = np.empty((len(ds.rows), *ds.cache.chips.shape[1:]), np.uint8)
        chips[order] = ds.cache.chips[ds.rows[order]]
        return cls(torch.from_numpy(chips), {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in ds.targets.items()})

    @classmethod
    def from_stems(cls, sd, random_view: bool) -> "MemorySplit":
        """A ``training.stems.StemDataset`` read whole into memory."""
        stems = torch.from_numpy(np.array(sd.stems))
        return cls(stems, {k: v.float() for k, v in sd.targets.items()}, stem_views=stems.shape[1],
                   random_view=random_view and stems.shape[1] > 1)

    @classmethod
    def concat(cls, splits: list["MemorySplit"]) -> "MemorySplit":
        """Chip splits of several datasets as one (targets must cover the same tasks)."""
        if len(splits) == 1:
            return splits[0]
        if any(s.stem_views for s in splits):
            raise ValueError("only chip splits can be joined")
        weights = None if all(s.weights is None for s in splits) else torch.cat(
            [torch.ones(len(s), dtype=torch.float64) if s.weights is None else s.weights for s in splits])
        return cls(torch.cat([s.inputs for s in splits]),
                   {k: torch.cat([s.targets[k] for s in splits]) for k in splits[0].targets}, weights=weights)

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, idx: torch.Tensor) -> Batch:
        targets = {k: v[idx] for k, v in self.targets.items()}
        if not self.stem_views:
            return self.inputs[idx], targets
        view = torch.randint(self.stem_views, (len(idx),)) if self.random_view else torch.zeros(len(idx), dtype=torch.long)
        return self.inputs[idx, view].float(), targets

    def train_batches(self, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        if self.weights is None:
            perm = torch.randperm(len(self), generator=g)
        else:
            perm = torch.multinomial(self.weights, len(self), replacement=True, generator=g)
        per_rank = len(self) // world if world > 1 else len(self)
        mine = perm[rank::world][:per_rank]
        for start in range(0, per_rank, batch_size):
            idx = mine[start:start + batch_size]
            if len(idx) == 1 and per_rank > 1:
                break  # BatchNorm cannot train on one sample
            yield self.take(idx)

    def eval_batches(self, batch_size: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        mine = torch.arange(rank, len(self), world)
        for start in range(0, len(mine), batch_size):
            yield self.take(mine[start:start + batch_size])

    def train_steps(self, batch_size: int, world: int = 1) -> int:
        per_rank = len(self) // world if world > 1 else len(self)
        return per_rank // batch_size + int(per_rank % batch_size > 1)
