"""Datasets as lists of labelled samples: UTKFace (protocols ``coral`` and ``full``) and CelebA,
and :class:`ChipDataset`, a torch Dataset over a chip cache (``training/chips.py``).

UTKFace labels come from the file names ``<age>_<gender>_<race>_<date>.jpg.chip.jpg``. The
known defects of those names (``../shared/data/README.md``) are handled, never fatal:

- repaired (kept): a space before ``.jpg``, a missing dot before ``jpg``, a date that is not
  17 digits (16 and 18 occur; the date is never used);
- skipped: a missing race field (three names), any other name that does not parse, a value
  out of range, a CSV age that disagrees with the name.

Every repair and skip is counted by reason in :class:`Splits` so a run can print them.
Protocol files live in ``training/splits/`` (see its ``SOURCES.md``; ``tools/make_splits.py``
writes them).
"""
from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from engine.modelspec import TaskSpec
from training.chips import IMAGE_SUFFIXES, ChipCache
from training.task_heads import task_head

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
PROTOCOLS = ("coral", "full")
TEST_SPLITS = ("test", "test_dedup")
UTK_GENDERS = ("male", "female")
UTK_RACES = ("white", "black", "asian", "indian", "other")
CORAL_AGES = (21, 60)
FULL_AGES = (0, 116)
CORAL_AGE_OFFSET = 21  # CORAL CSV age = real age - 21
SPLIT_SEED = 0
TRAIN_SHARE = 0.8

# Which shipped file holds which split of which protocol. Under ``full`` the test split is the
# CORAL test plus a quarter of the faces under 21 or over 60 (tools/make_splits.py); every
# test file and every byte-identical copy of one is kept out of train/valid, so its test split
# has no duplicate in training and ``test_dedup`` is the same list as ``test``.
SPLIT_FILES = {
    "coral": {"train": "coral_train80.csv", "valid": "coral_valid20.csv",
              "test": "utk_test.csv", "test_dedup": "coral_test_dedup.csv"},
    "full": {"train": "full_train80.csv", "valid": "full_valid20.csv",
             "test": "full_test.csv", "test_dedup": "full_test.csv"},
}


class DataError(ValueError):
    """A dataset cannot be used as given; the message names the input and the reason."""


class BadNameError(ValueError):
    """A UTKFace file name that carries no usable labels."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name!r}: {reason}")
        self.name = name
        self.reason = reason


def utk_tasks(protocol: str = "coral") -> tuple[TaskSpec, ...]:
    """The UTKFace tasks; the age range is the protocol's (21-60 under coral, 0-116 under full)."""
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown UTKFace protocol '{protocol}' (choose from: {', '.join(PROTOCOLS)})")
    ages = CORAL_AGES if protocol == "coral" else FULL_AGES
    return (
        TaskSpec(name="gender", kind="binary", labels=UTK_GENDERS),
        TaskSpec(name="race", kind="multiclass", labels=UTK_RACES),
        TaskSpec(name="age", kind="regression", unit="years", range=(float(ages[0]), float(ages[1]))),
    )


UTK_TASKS = utk_tasks("coral")


@dataclass(frozen=True)
class Sample:
    file: str  # the file name as it is on disk (also the chip cache key)
    targets: Mapping[str, float]  # UTKFace: gender 0/1, race 0..4, age in years


@dataclass(frozen=True)
class Splits:
    train: tuple[Sample, ...]
    valid: tuple[Sample, ...]
    test: tuple[Sample, ...]
    skipped: Mapping[str, int]  # reason -> count (all three splits together)
    tasks: tuple[TaskSpec, ...] = ()
    repaired: Mapping[str, int] = field(default_factory=dict)  # reason -> count, kept
    image_dir: Path | None = None

    def summary(self) -> str:
        """One line for logs: sizes, then skips and repairs by reason."""
        parts = [f"train {len(self.train)}, valid {len(self.valid)}, test {len(self.test)}"]
        if self.skipped:
            parts.append("skipped " + ", ".join(f"{r}: {n}" for r, n in sorted(self.skipped.items())))
        if self.repaired:
            parts.append("repaired " + ", ".join(f"{r}: {n}" for r, n in sorted(self.repaired.items())))
        return "; ".join(parts)


# ---------------------------------------------------------------- UTKFace names

_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)\.jpg\.chip\.jpg$")
_NO_RACE = re.compile(r"^(\d+)_(\d+)_(\d{8,})\.jpg\.chip\.jpg$")


@dataclass(frozen=True)
class ParsedName:
    age: int
    gender: int
    race: int
    repairs: tuple[str, ...] = ()  # what was wrong with the name and was repaired


def parse_utkface_name_detail(name: str) -> ParsedName:
    """Labels of a UTKFace name and the repairs it needed; BadNameError if it has no labels."""
    fixed, repairs = name, []
    if " .jpg" in fixed:
        fixed = fixed.replace(" .jpg", ".jpg")
        repairs.append("space before .jpg")
    if re.search(r"\djpg\.chip\.jpg$", fixed):
        fixed = fixed[: -len("jpg.chip.jpg")] + ".jpg.chip.jpg"
        repairs.append("missing dot before jpg")
    m = _NAME.match(fixed)
    if m is None:
        if _NO_RACE.match(fixed):
            raise BadNameError(name, "no race field")
        raise BadNameError(name, "not <age>_<gender>_<race>_<date>.jpg.chip.jpg")
    age, gender, race, date = int(m[1]), int(m[2]), int(m[3]), m[4]
    if len(date) != 17:
        repairs.append(f"{len(date)}-digit date")
    if not FULL_AGES[0] <= age <= FULL_AGES[1]:
        raise BadNameError(name, f"age {age} outside {FULL_AGES[0]}-{FULL_AGES[1]}")
    if gender not in (0, 1):
        raise BadNameError(name, f"gender {gender} is not 0 or 1")
    if not 0 <= race < len(UTK_RACES):
        raise BadNameError(name, f"race {race} is not 0-{len(UTK_RACES) - 1}")
    return ParsedName(age, gender, race, tuple(repairs))


def parse_utkface_name(name: str) -> tuple[int, int, int]:
    """(age, gender, race) of a UTKFace file name; raises BadNameError(name, reason)."""
    p = parse_utkface_name_detail(name)
    return p.age, p.gender, p.race


# ---------------------------------------------------------------- split files

def read_split_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a split CSV (CORAL layout ``,file,age`` or just ``file``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file missing (the shipped ones are in training/splits/; "
                        "tools/make_splits.py writes them)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "file" not in rows[0]:
        raise DataError(f"{path}: not a split file (no 'file' column)")
    return rows


def write_split_csv(path: Path, rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> None:
    with Path(path).open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([r[c] for c in columns])


def split_train_valid(items: Sequence, seed: int = SPLIT_SEED, train_share: float = TRAIN_SHARE) -> tuple[list, list]:
    """A fixed shuffle by ``seed``; the first floor(share * n) items train, the rest validate."""
    order = np.random.default_rng(seed).permutation(len(items))
    n_train = int(np.floor(train_share * len(items)))
    return [items[i] for i in order[:n_train]], [items[i] for i in order[n_train:]]


def file_hashes(image_dir: Path, files: Iterable[str]) -> dict[str, str]:
    """SHA-256 of each file's bytes (to find byte-identical images)."""
    return {f: hashlib.sha256((Path(image_dir) / f).read_bytes()).hexdigest() for f in files}


def crossing_duplicates(test_files: Iterable[str], train_files: Iterable[str], image_dir: Path) -> set[str]:
    """The test files whose bytes are identical to some training file's."""
    test_files, train_files = list(test_files), list(train_files)
    hashes = file_hashes(image_dir, set(test_files) | set(train_files))
    train_hashes = {hashes[f] for f in train_files}
    return {f for f in test_files if hashes[f] in train_hashes}


def dedup_test(test: Sequence[Sample], train_files: Iterable[str], image_dir: Path) -> tuple[Sample, ...]:
    """``test`` without the files byte-identical to a training file (the honest test split)."""
    drop = crossing_duplicates([s.file for s in test], train_files, image_dir)
    return tuple(s for s in test if s.file not in drop)


# ---------------------------------------------------------------- UTKFace

def list_images(image_dir: Path) -> set[str]:
    """Names of the image files in ``image_dir``; DataError if it is missing or has none."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: image folder not found")
    names = {p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    if not names:
        raise DataError(f"{image_dir}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
    return names


class _Tally:
    def __init__(self) -> None:
        self.skipped: Counter = Counter()
        self.repaired: Counter = Counter()


def _utk_samples(rows: Sequence[Mapping[str, str]], on_disk: set[str], protocol: str,
                 tally: _Tally) -> tuple[Sample, ...]:
    lo, hi = CORAL_AGES if protocol == "coral" else FULL_AGES
    out = []
    for r in rows:
        name = r["file"]
        if name not in on_disk:
            tally.skipped["file missing from image folder"] += 1
            continue
        try:
            p = parse_utkface_name_detail(name)
        except BadNameError as e:
            tally.skipped[f"bad name: {e.reason}"] += 1
            continue
        if r.get("age") not in (None, "") and int(r["age"]) + CORAL_AGE_OFFSET != p.age:
            tally.skipped["CSV age disagrees with the name"] += 1
            continue
        if not lo <= p.age <= hi:
            tally.skipped[f"age outside {lo}-{hi}"] += 1
            continue
        tally.repaired.update(p.repairs)
        out.append(Sample(name, {"gender": float(p.gender), "race": float(p.race), "age": float(p.age)}))
    return tuple(out)


def load_utkface_part(protocol: str, image_dir: Path, part: str, splits_dir: Path | None = None
                      ) -> tuple[tuple[Sample, ...], dict[str, int], dict[str, int]]:
    """One split ('train', 'valid', 'test', 'test_dedup') of a protocol: (samples, skipped, repaired)."""
    utk_tasks(protocol)
    if part not in ("train", "valid", *TEST_SPLITS):
        raise DataError(f"unknown split '{part}' (choose from: train, valid, {', '.join(TEST_SPLITS)})")
    splits_dir = Path(splits_dir) if splits_dir is not None else SPLITS_DIR
    tally = _Tally()
    samples = _utk_samples(read_split_csv(splits_dir / SPLIT_FILES[protocol][part]), list_images(image_dir),
                           protocol, tally)
    return samples, dict(tally.skipped), dict(tally.repaired)


def load_utkface(protocol: str, image_dir: Path, splits_dir: Path | None = None,
                 test_split: str = "test") -> Splits:
    """UTKFace under a protocol, from the shipped split files and the names in ``image_dir``.

    ``coral``: CORAL train split 80/20 (seed 0) into train/valid, test = CORAL test, ages 21-60.
    ``full``: all ages; CORAL test files and their byte-duplicates kept out of train/valid.
    ``test_split="test_dedup"`` gives the CORAL test without the files byte-identical to a
    training file.
    """
    tasks = utk_tasks(protocol)
    if test_split not in TEST_SPLITS:
        raise DataError(f"unknown test split '{test_split}' (choose from: {', '.join(TEST_SPLITS)})")
    splits_dir = Path(splits_dir) if splits_dir is not None else SPLITS_DIR
    image_dir = Path(image_dir)
    on_disk = list_images(image_dir)
    files = SPLIT_FILES[protocol]
    rows = {part: read_split_csv(splits_dir / files[part]) for part in ("train", "valid", test_split)}
    tally = _Tally()
    train = _utk_samples(rows["train"], on_disk, protocol, tally)
    valid = _utk_samples(rows["valid"], on_disk, protocol, tally)
    test = _utk_samples(rows[test_split], on_disk, protocol, tally)
    if not train:
        raise DataError(f"{image_dir}: none of the {len(rows['train'])} training files of "
                        f"{splits_dir / files['train']} could be used ({dict(tally.skipped)}); "
                        "is this the UTKFace folder?")
    return Splits(train, valid, test, dict(tally.skipped), tasks, dict(tally.repaired), image_dir)


# ---------------------------------------------------------------- CelebA

CELEBA_ATTR_FILE = "list_attr_celeba.txt"
CELEBA_PARTITION_FILE = "list_eval_partition.txt"
CELEBA_IMAGE_DIR = "img_align_celeba"
CELEBA_LABELS = {"Male": ("female", "male"), "Young": ("old", "young")}


def celeba_tasks(attributes: Sequence[str]) -> tuple[TaskSpec, ...]:
    """One binary task per attribute, named in lower case; labels[1] = attribute present."""
    return tuple(TaskSpec(name=a.lower(), kind="binary",
                          labels=CELEBA_LABELS.get(a, (f"not {a.lower()}", a.lower())))
                 for a in attributes)


def _find(root: Path, name: str, subdirs: Sequence[str]) -> Path:
    for d in ("", *subdirs):
        p = root / d / name
        if p.is_file():
            return p
    raise DataError(f"{root}: {name} not found (looked in {', '.join(str(root / d) for d in ('', *subdirs))})")


def _read_celeba_attributes(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise DataError(f"{path}: too short for list_attr_celeba.txt (needs a count line and a names line)")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}: line 1 should be the image count, found {lines[0]!r}") from None
    names = lines[1].split()
    values: dict[str, list[int]] = {}
    for i, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise DataError(f"{path}, line {i}: {len(parts) - 1} values for {len(names)} attributes")
        try:
            row = [int(v) for v in parts[1:]]
        except ValueError:
            raise DataError(f"{path}, line {i}: attribute values must be 1 or -1") from None
        if any(v not in (1, -1) for v in row):
            raise DataError(f"{path}, line {i}: attribute values must be 1 or -1")
        values[parts[0]] = row
    if len(values) != count:
        raise DataError(f"{path}: line 1 says {count} images, the file lists {len(values)}")
    return names, values


def _read_celeba_partition(path: Path) -> dict[str, int]:
    out = {}
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}, line {i}: expected '<image> 0|1|2', found {line!r}")
        out[parts[0]] = int(parts[1])
    return out


def load_celeba(root: Path, attributes: Sequence[str] = ("Male", "Young"),
                image_dir: Path | None = None) -> Splits:
    """CelebA from its official files (in ``root``, or ``root/Anno`` and ``root/Eval``).

    Partition 0/1/2 = train/valid/test. Each attribute becomes a binary task with target 1
    where the file says 1 and 0 where it says -1. Images default to ``root/img_align_celeba``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: CelebA folder not found")
    attr_path = _find(root, CELEBA_ATTR_FILE, ("Anno",))
    part_path = _find(root, CELEBA_PARTITION_FILE, ("Eval",))
    if image_dir is None:
        image_dir = root / CELEBA_IMAGE_DIR if (root / CELEBA_IMAGE_DIR).is_dir() else root
    on_disk = list_images(Path(image_dir))
    names, values = _read_celeba_attributes(attr_path)
    unknown = [a for a in attributes if a not in names]
    if unknown or not attributes:
        raise DataError(f"{attr_path}: unknown attribute(s) {unknown} (the file has: {', '.join(names)})")
    columns = [names.index(a) for a in attributes]
    tasks = celeba_tasks(attributes)
    partition = _read_celeba_partition(part_path)
    parts: tuple[list, list, list] = ([], [], [])
    skipped: Counter = Counter()
    for name, row in values.items():
        if name not in partition:
            skipped["no partition entry"] += 1
            continue
        if name not in on_disk:
            skipped["file missing from image folder"] += 1
            continue
        targets = {t.name: float(row[c] == 1) for t, c in zip(tasks, columns)}
        parts[partition[name]].append(Sample(name, targets))
    if not parts[0]:
        raise DataError(f"{root}: no usable training images ({dict(skipped)})")
    return Splits(tuple(parts[0]), tuple(parts[1]), tuple(parts[2]), dict(skipped), tasks, {}, Path(image_dir))


# ---------------------------------------------------------------- torch dataset

def scale_target(task: TaskSpec, value: float) -> float:
    """The training target: the kind's encoding (training/task_heads.py; regression scaled to 0..1
    by the task's range, others as they are)."""
    return task_head(task).scale_target(task, value)


class ChipDataset(torch.utils.data.Dataset):
    """(chip uint8 [150,150,3] HWC, {task: float target}) for each sample that has a chip.

    Samples without a chip in the cache (no face found, unreadable image, not cached) are
    dropped and counted: ``dropped`` (total) and ``dropped_reasons`` (reason -> count).
    ``flip`` mirrors each chip left-right with probability 0.5 (torch's RNG, so DataLoader
    workers seed it). A task a sample has no label for gets the target NaN, which the losses
    and metrics skip (``training.losses.labelled``); ``labelled`` counts the labels per task. ``rows`` and ``targets`` (task -> float32 [N]) are exposed for callers
    that precompute features over the whole set.
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
            self.targets[t.name] = np.array([scale_target(t, s.targets[t.name]) if t.name in s.targets else np.nan
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
