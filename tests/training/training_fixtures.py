"""Shared by the training tests: a tiny real backbone and a tiny UTKFace-style dataset.

``TinyBackbone`` (random init, ~1.5 k parameters, 150x150 RGB in) is registered as
"tiny-test" once per process on import, so fit runs (also in spawned DDP workers) can name
it in their config. It follows training.backbones' Backbone contract: two stages
(150 -> 30 -> 10 pixels) and a head (global mean + Linear).

``make_tiny_utkface(root)`` writes variants of scikit-image's public-domain astronaut photo
under synthetic UTKFace names, their split CSVs, and their chip cache made by the real
``training.chips.build_cache`` (dlib detection and alignment).
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from training.backbones import Backbone, available_backbones, register_backbone

NAME = "tiny-test"


class TinyBackbone(Backbone):
    name = NAME
    out_features = 16
    input_size = 150
    color = "RGB"
    mean_rgb = (122.782, 117.001, 104.298)
    scale = 1 / 256

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, 8, 5, stride=5), nn.BatchNorm2d(8), nn.ReLU()),
            nn.Sequential(nn.Conv2d(8, 16, 3, stride=3), nn.BatchNorm2d(16), nn.ReLU()),
        ])
        self.fc = nn.Linear(16, self.out_features)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h.mean(dim=(2, 3)))


def tiny_test(pretrained: bool = False) -> TinyBackbone:
    return TinyBackbone()


if NAME not in available_backbones():
    register_backbone(NAME)(tiny_test)


def make_tiny_utkface(root: Path, n_train: int = 12, n_valid: int = 6) -> dict[str, Path]:
    """images/, splits/ (coral_train80.csv, coral_valid20.csv, utk_test.csv) and chips/ under root."""
    from skimage import data

    from training.chips import build_cache

    root = Path(root)
    images, splits = root / "images", root / "splits"
    images.mkdir(parents=True)
    splits.mkdir()
    face_bgr = np.ascontiguousarray(data.astronaut()[:300, 80:380, ::-1])  # her face, with margin
    rng = np.random.default_rng(0)
    names = []
    for i in range(n_train + n_valid + 2):
        age, gender, race = 21 + (7 * i) % 40, i % 2, i % 5
        img = cv2.convertScaleAbs(face_bgr, alpha=0.8 + 0.4 * rng.random(), beta=float(rng.integers(-20, 20)))
        if i % 3 == 1:
            img = np.ascontiguousarray(img[:, ::-1])
        name = f"{age}_{gender}_{race}_20170116{i:09d}.jpg.chip.jpg"
        cv2.imwrite(str(images / name), img)
        names.append(name)
    parts = {"coral_train80.csv": names[:n_train], "coral_valid20.csv": names[n_train:n_train + n_valid],
             "utk_test.csv": names[n_train + n_valid:]}
    for file, part in parts.items():
        with (splits / file).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file"])
            w.writerows([n] for n in part)
    counts = build_cache(images, root / "chips", progress=False)
    assert counts == {"ok": len(names)}, counts  # dlib finds her face in every variant
    return {"images": images, "splits": splits, "chips": root / "chips"}


def write_config(path: Path, splits: Path, extra: str = "") -> Path:
    """A fit config for the tiny backbone and dataset; ``extra`` lines ``section.key = value`` set or replace keys."""
    sections = {
        "data": {"dataset": '"utkface"', "protocol": '"coral"', "splits_dir": f'"{splits}"', "flip": "true"},
        "model": {"backbone": '"tiny-test"', "pretrained": "false", "shared_dims": "[8]", "head_dim": "6",
                  "dropout": "0.1"},
        "optim": {"lr": "0.003", "batch_size": "4", "epochs": "3", "plateau_patience": "1"},
        "weighting": {"kind": '"loss_weight_layer"', "lr": "0.01"},
        "freeze": {"early_freeze": "true", "patience": "1", "early_stop_patience": "0"},
        "speed": {"device": '"cpu"'},
    }
    for line in extra.strip().splitlines():
        dotted, value = (part.strip() for part in line.split("=", 1))
        section, key = dotted.split(".", 1)
        sections.setdefault(section, {})[key] = value
    path.write_text("".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
                            for name, keys in sections.items()))
    return path
