"""Cache of frozen early-backbone activations ("stems"), so a CPU trains only the rest.

With ``speed.frozen_stages = k`` the first k backbone stages never change, so their output
for a given chip never changes either. ``speed.cache_stem = true`` computes it ONCE per chip
(and once more for its mirror image when flip augmentation is on), stores it as float16
in ``<chips dir>/stems/``, and trains on ``net.forward_from_stem(h, k)``.

The file name carries a key over everything the activations depend on: the backbone's
name, k, the values of the frozen parameters and buffers, the chip cache's identity (its
chips.npy size and mtime and index.csv), the list of samples and the flip setting. Change
any of them and a new cache is built; an old one is never read by mistake. The tasks are
not in it: the activations do not depend on the heads, and the targets come from the chip
dataset of the run, so runs on other task sets (the single-task rows) share one cache.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm


def stem_key(net, n_stages: int, chips_dir: Path, sample_files: Sequence[str], flip: bool) -> str:
    """A hex digest over everything the cached activations depend on."""
    h = hashlib.sha1()
    h.update(f"{net.backbone.name}|{n_stages}|{flip}|{net.input_scale}|{net.mean_rgb.flatten().tolist()}".encode())
    frozen = net.backbone if n_stages >= len(net.backbone.stages) else net.backbone.stages[:n_stages]
    for name, t in sorted(frozen.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    chips = Path(chips_dir) / "chips.npy"
    st = chips.stat()
    h.update(f"{st.st_size}|{st.st_mtime_ns}".encode())
    h.update((Path(chips_dir) / "index.csv").read_bytes())
    h.update("\n".join(sample_files).encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def build_stem_cache(net, chip_dataset, n_stages: int, path: Path, flip: bool, batch_size: int = 64,
                     device: str | torch.device = "cpu", progress: bool = True) -> None:
    """Write [N, V, C, H, W] float16 activations of ``chip_dataset``'s chips (a
    ``training.chip_dataset.ChipDataset``: its ``cache`` and ``rows``), V = 2 with flip (the chip
    and its mirror image)."""
    was_training = net.training
    net.eval()
    rows, n, views = chip_dataset.rows, len(chip_dataset), 2 if flip else 1
    if n == 0:
        raise ValueError(f"{path}: no samples to cache")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    out = None
    for start in tqdm(range(0, n, batch_size), desc=f"stem cache {path.name}", unit="batch", disable=not progress):
        chips = torch.from_numpy(np.array(chip_dataset.cache.chips[rows[start:start + batch_size]])).to(device)
        hs = [net.stem(chips, n_stages)]
        if flip:
            hs.append(net.stem(chips.flip(2), n_stages))  # NHWC: dim 2 is the width
        h = torch.stack(hs, dim=1).to(torch.float16).cpu().numpy()
        if out is None:
            out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(n, views, *h.shape[2:]))
        out[start:start + len(h)] = h
    out.flush()
    del out
    partial.replace(path)
    path.with_suffix(".json").write_text(json.dumps({"samples": n, "views": views, "stages": n_stages}))
    net.train(was_training)


@dataclass
class StemDataset(Dataset):
    """(activations float16 [C,H,W], targets) per sample; a random one of the two views when flipping."""

    stems: np.ndarray  # memmap [N, V, C, H, W]
    targets: dict[str, torch.Tensor]  # name -> [N]
    flip: bool

    @classmethod
    def open(cls, path: Path, targets: dict[str, torch.Tensor], flip: bool) -> "StemDataset":
        """The cache at ``path`` with the run's own targets (one row per cached sample)."""
        stems = np.load(path, mmap_mode="r")
        for name, t in targets.items():
            if len(t) != len(stems):
                raise ValueError(f"{path}: {len(stems)} cached samples, but {len(t)} targets of {name}")
        return cls(stems, targets, flip)

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, i: int):
        view = int(torch.randint(2, ())) if self.flip and self.stems.shape[1] == 2 else 0
        h = torch.from_numpy(np.array(self.stems[i, view]))
        return h, {k: v[i] for k, v in self.targets.items()}
