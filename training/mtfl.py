"""MTFL (Zhang et al., ECCV 2014): 12,995 faces in the wild with gender, smile, glasses, 5-bin
head pose and 5 landmarks. Research use only; its images are never committed.

Fetched from the public repository ``nieag/deepl18_project`` at commit b5a14242, folder
``MTFL/`` (``../shared/data/README.md``). Each row of ``training.txt`` / ``testing.txt``::

    lfw_5590\\Aaron_Eckhart_0001.jpg x1..x5 y1..y5 gender smile glasses pose

(landmarks: left eye, right eye, nose, left and right mouth corner; gender 1 male 2 female;
smile and glasses 1 yes 2 no; pose 1 left profile .. 3 frontal .. 5 right profile).

Splits: ``training.txt`` is cut 90/10 (seed 0) into train/valid by the shipped list
``training/splits/mtfl_valid10.csv``; ``testing.txt`` (the 2,995 AFLW images) is the test split
and is used for testing only. Sample keys are the image paths with ``/`` separators
(``lfw_5590/Aaron_Eckhart_0001.jpg``), which are also the chip cache's keys
(``python -m training.mtfl_chips``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.modelspec import TaskSpec
from training.samples import SPLITS_DIR, DataError, Sample, Splits, read_split_csv, split_train_valid, write_split_csv

TRAIN_LIST, TEST_LIST = "training.txt", "testing.txt"
VALID_SPLIT_FILE = "mtfl_valid10.csv"
VALID_SHARE = 0.1
POSES = ("left profile", "left", "frontal", "right", "right profile")
# Under a horizontal flip a left pose becomes a right one: the label each pose takes when the
# chip is mirrored (training's flip augmentation mirrors the target with it).
MIRRORED_LABELS = {"pose": (4, 3, 2, 1, 0)}
MTFL_TASKS = (
    TaskSpec(name="gender", kind="binary", labels=("male", "female")),
    TaskSpec(name="smile", kind="binary", labels=("not smiling", "smiling")),
    TaskSpec(name="glasses", kind="binary", labels=("no glasses", "glasses")),
    TaskSpec(name="pose", kind="multiclass", labels=POSES),
)


@dataclass(frozen=True)
class MtflRow:
    file: str  # image path relative to the MTFL folder, '/'-separated
    landmarks_xy: np.ndarray  # [5, 2] float32: left eye, right eye, nose, left and right mouth corner
    targets: dict[str, float]  # gender 0 male / 1 female; smile, glasses 1 = yes; pose 0..4


def parse_row(line: str) -> MtflRow:
    """One annotation line; ValueError (with the reason) if it does not hold the 15 fields."""
    fields = line.split()
    if len(fields) != 15:
        raise ValueError(f"{len(fields)} fields, expected 15 (path, 10 coordinates, 4 labels)")
    coords = np.asarray([float(v) for v in fields[1:11]], np.float32)
    gender, smile, glasses, pose = (int(v) for v in fields[11:])
    for name, v, hi in (("gender", gender, 2), ("smile", smile, 2), ("glasses", glasses, 2), ("pose", pose, 5)):
        if not 1 <= v <= hi:
            raise ValueError(f"{name} {v} is not 1-{hi}")
    targets = {"gender": float(gender - 1), "smile": float(smile == 1), "glasses": float(glasses == 1),
               "pose": float(pose - 1)}
    return MtflRow(fields[0].replace("\\", "/"), np.stack([coords[:5], coords[5:]], axis=1), targets)


def read_list(root: Path, name: str, skipped: Counter | None = None) -> list[MtflRow]:
    """The rows of ``training.txt`` or ``testing.txt``; bad lines and missing images are counted
    in ``skipped`` by reason (never fatal), a missing list file is a DataError."""
    path = Path(root) / name
    if not path.is_file():
        raise DataError(f"{path}: MTFL annotation file missing (is {root} the MTFL folder of "
                        "nieag/deepl18_project at b5a14242?)")
    skipped = Counter() if skipped is None else skipped
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = parse_row(line)
        except ValueError as e:
            skipped[f"bad line: {e}"] += 1
            continue
        if not (Path(root) / row.file).is_file():
            skipped["image missing"] += 1
            continue
        rows.append(row)
    return rows


def write_valid_split(root: Path, splits_dir: Path = SPLITS_DIR) -> Path:
    """Write the shipped validation list: 10 % of training.txt, a fixed shuffle (seed 0)."""
    rows = read_list(root, TRAIN_LIST)
    _, valid = split_train_valid([r.file for r in rows], train_share=1 - VALID_SHARE)
    path = Path(splits_dir) / VALID_SPLIT_FILE
    write_split_csv(path, [{"file": f} for f in sorted(valid)], ["file"])
    return path


def load_mtfl(root: Path, splits_dir: Path | None = None) -> Splits:
    """MTFL as train / valid (from training.txt and the shipped valid list) and test (testing.txt)."""
    root = Path(root)
    skipped: Counter = Counter()
    rows = read_list(root, TRAIN_LIST, skipped)
    test = read_list(root, TEST_LIST, skipped)
    if not rows:
        raise DataError(f"{root}: no usable rows in {TRAIN_LIST} ({dict(skipped)})")
    valid_files = {r["file"] for r in read_split_csv(Path(splits_dir or SPLITS_DIR) / VALID_SPLIT_FILE)}
    train = tuple(Sample(r.file, r.targets) for r in rows if r.file not in valid_files)
    valid = tuple(Sample(r.file, r.targets) for r in rows if r.file in valid_files)
    return Splits(train, valid, tuple(Sample(r.file, r.targets) for r in test), dict(skipped), MTFL_TASKS, {}, root)
