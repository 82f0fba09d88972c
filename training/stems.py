"""Cache of frozen early-backbone activations ("stems"), so a CPU trains only the rest.

With ``speed.frozen_stages = k`` the first k backbone stages never change, so their output
for a given chip never changes either. ``speed.cache_stem = true`` computes it ONCE per chip
(and once more for its mirror image when flip augmentation is on), stores it as float16
in ``<chips dir>/stems/``, and trains on ``net.forward_from_stem(h, k)``.

The file name carries a key over everything the activations depend on: the backbone's
name, k, the tasks (their target encoding), the values of the frozen parameters and buffers, the chip cache's identity
(its chips.npy size and mtime and index.csv), the list of samples and the flip setting.
Change any of them and a new cache is built; an old one is never read by mistake.
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
    # The cached targets depend on each task's encoding (regression scaled by its range,
    # expectation in the unit of its bins), so the tasks are part of the key.
    h.update(repr([(t.name, t.kind, t.range, t.bins, t.labels) for t in net.tasks]).encode())
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
    ``training.chip_dataset.ChipDataset``: its ``cache``, ``rows`` and ``targets``), V = 2 with flip
    (the chip and its mirror image), and its targets beside them."""
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
    targets = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in chip_dataset.targets.items()}
    torch.save(targets, path.with_suffix(".targets.pt"))
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
    def open(cls, path: Path, flip: bool) -> "StemDataset":
        return cls(np.load(path, mmap_mode="r"), torch.load(path.with_suffix(".targets.pt")), flip)

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, i: int):
        view = int(torch.randint(2, ())) if self.flip and self.stems.shape[1] == 2 else 0
        h = torch.from_numpy(np.array(self.stems[i, view]))
        return h, {k: v[i] for k, v in self.targets.items()}
