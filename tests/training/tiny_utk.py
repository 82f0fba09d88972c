"""A tiny UTKFace-like dataset for the training tests, written by the tests themselves.

Real photos: crops of scikit-image's public-domain astronaut portrait (different framing,
mirrored, brightness), 200x200 like UTKFace's aligned & cropped set, with synthetic labels
in UTKFace names, plus the known kinds of bad data: a photo without a face, a broken JPEG,
a badly named file and a name without race field. Protocol files in CORAL's CSV layout.
"""
from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FACE_CENTRE_XY = (222, 126)  # dlib's HOG box on the astronaut: (179, 83)-(266, 170)
# (side of the square crop, dx, dy, mirror, brightness gain); every one keeps a ~100 px face
VARIANTS = [(150, 0, 0, False, 1.0), (160, 8, -6, True, 0.9), (170, -8, 4, False, 1.1), (180, 4, 8, True, 1.0),
            (155, -5, -5, False, 0.8), (165, 6, 0, True, 1.2), (175, 0, 6, False, 0.95), (150, -6, 3, True, 1.05),
            (160, 3, -3, False, 1.15), (170, -3, -8, True, 0.85)]
# (age, gender, race) of each variant, ages 21..60 so the coral protocol keeps them
LABELS = [(25, 1, 0), (33, 0, 1), (41, 1, 2), (58, 0, 3), (22, 1, 4), (47, 0, 0), (36, 1, 1), (29, 0, 2),
          (52, 1, 3), (44, 0, 4)]
TRAIN_IDX = (0, 1, 2, 3, 4, 5)
VALID_IDX = (6,)
TEST_IDX = (7, 8, 9)


@dataclass(frozen=True)
class TinyUtk:
    images: Path  # the image folder
    splits: Path  # protocol CSVs (coral layout)
    names: tuple[str, ...]  # the good images, indexed like VARIANTS
    no_face: str  # a real photo without a face (in the test split)
    broken: str  # a truncated JPEG (in the test split)
    bad_name: str  # a face photo whose name carries no labels (in the train split)
    no_race: str  # a face photo named without race field (in the train split)
    test_duplicate: str  # a test file byte-identical to a train file


def utk_name(i: int, age: int, gender: int, race: int) -> str:
    return f"{age}_{gender}_{race}_2017011{i:010d}.jpg.chip.jpg"


def face_crop(astronaut_rgb: np.ndarray, side: int, dx: int, dy: int, mirror: bool, gain: float) -> np.ndarray:
    cx, cy = FACE_CENTRE_XY[0] + dx, FACE_CENTRE_XY[1] + dy
    crop = astronaut_rgb[cy - side // 2: cy + side // 2, cx - side // 2: cx + side // 2]
    crop = cv2.resize(crop, (200, 200), interpolation=cv2.INTER_AREA)
    crop = np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return crop[:, ::-1] if mirror else crop


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])


def _write_coral_csv(path: Path, names: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["", "file", "age"])
        for k, name in enumerate(names):
            head = name.split("_")[0]
            w.writerow([k, name, int(head) - 21 if head.isdigit() else 0])


def make_tiny_utk(root: Path) -> TinyUtk:
    from skimage import data

    astronaut = data.astronaut()
    images, splits = root / "images", root / "splits"
    images.mkdir(parents=True)
    splits.mkdir()
    names = []
    for i, (variant, (age, gender, race)) in enumerate(zip(VARIANTS, LABELS)):
        name = utk_name(i, age, gender, race)
        _write_rgb(images / name, face_crop(astronaut, *variant))
        names.append(name)
    no_face = utk_name(90, 30, 0, 0)
    _write_rgb(images / no_face, cv2.resize(data.coffee(), (200, 200)))  # a cup of coffee: no face
    broken = utk_name(91, 31, 1, 1)
    (images / broken).write_bytes((images / names[0]).read_bytes()[:300])  # truncated JPEG
    bad_name = "astronaut.jpg"
    shutil.copyfile(images / names[1], images / bad_name)
    no_race = "39_1_20170116174525125.jpg.chip.jpg"  # the real defect's name
    _write_rgb(images / no_race, face_crop(astronaut, 158, 2, 2, False, 1.0))
    test_duplicate = utk_name(92, 25, 1, 0)  # same bytes as names[0] (a train file), same labels
    shutil.copyfile(images / names[0], images / test_duplicate)

    train = [names[i] for i in TRAIN_IDX] + [bad_name, no_race]
    valid = [names[i] for i in VALID_IDX]
    test = [names[i] for i in TEST_IDX] + [no_face, broken, test_duplicate]
    _write_coral_csv(splits / "coral_train80.csv", train)
    _write_coral_csv(splits / "coral_valid20.csv", valid)
    _write_coral_csv(splits / "utk_test.csv", test)
    _write_coral_csv(splits / "coral_test_dedup.csv", [n for n in test if n != test_duplicate])
    return TinyUtk(images, splits, tuple(names), no_face, broken, bad_name, no_race, test_duplicate)


def make_tiny_checkpoint(path: Path, age_kind: str = "regression", seed: int = 0,
                         chips: np.ndarray | None = None) -> Path:
    """A faceattr-ckpt/1 checkpoint of a MultiTaskNet over the tiny test backbone.

    Random weights (fixed seed) and random BatchNorm statistics, so every layer matters in
    the exported graph; saved in the format training.fit writes. With ``chips``, the
    BatchNorm statistics are those of these chips and the output layers are scaled and
    centred on them, so predictions differ from chip to chip (as a trained net's do).
    """
    import dataclasses

    import torch

    from tests.training import training_fixtures  # train-core's; registers the "tiny-test" backbone
    from training.config import Config, DataConfig, ModelConfig
    from training.utkface import UTK_TASKS
    from training.model import MultiTaskNet

    tasks = list(UTK_TASKS)
    if age_kind == "expectation":
        tasks[2] = dataclasses.replace(tasks[2], kind="expectation", range=None,
                                       bins=tuple(float(a) for a in range(21, 61)))
    cfg = Config(name="tiny", data=DataConfig(dataset="utkface", protocol="coral"),
                 model=ModelConfig(backbone=training_fixtures.NAME, pretrained=False, shared_dims=(12,), head_dim=8,
                                   dropout=0.3, age_kind=age_kind))
    torch.manual_seed(seed)
    net = MultiTaskNet(training_fixtures.TinyBackbone(), tasks, shared_dims=(12,), head_dim=8, dropout=0.3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        if chips is not None:
            _fit_to_chips(net, torch.from_numpy(np.ascontiguousarray(chips)))
    ckpt = {"format": "faceattr-ckpt/1", "config": cfg.to_dict(), "tasks": [dataclasses.asdict(t) for t in tasks],
            "backbone": training_fixtures.NAME, "model_state": net.state_dict(), "epoch": 3, "best": {}, "history": [],
            "git_commit": "0123456789abcdef0123456789abcdef01234567", "date": "2026-11-23T12:00:00+00:00"}
    torch.save(ckpt, path)
    return Path(path)


def _fit_to_chips(net, chips) -> None:
    """BatchNorm statistics from ``chips``; output layers x6, binary and regression centred."""
    import torch

    net.train()
    norms = [m for m in net.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over this one batch
    net(chips)
    for m in norms:
        m.momentum = 0.1
    net.eval()
    for head in net.heads.values():
        head[-1].weight.mul_(6.0)
    out = net(chips)
    for t in net.tasks:
        if t.kind == "binary":
            net.heads[t.name][-1].bias.sub_(out[t.name].median())
        elif t.kind == "regression":
            net.heads[t.name][-1].bias.add_(0.5 - out[t.name].mean())
