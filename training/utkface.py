"""UTKFace: labels from the file names, the protocols ``coral`` and ``full`` and their splits.

UTKFace labels come from the file names ``<age>_<gender>_<race>_<date>.jpg.chip.jpg``. The
known defects of those names (``../shared/data/README.md``) are handled, never fatal:

- repaired (kept): a space before ``.jpg``, a missing dot before ``jpg``, a date that is not
  17 digits (16 and 18 occur; the date is never used);
- skipped: a missing race field (three names), any other name that does not parse, a value
  out of range, a CSV age that disagrees with the name.

Every repair and skip is counted by reason in :class:`~training.samples.Splits` so a run can
print them. Protocol files live in ``training/splits/`` (see its ``SOURCES.md``;
``tools/make_splits.py`` writes them).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from engine.modelspec import TaskSpec
from training.samples import SPLITS_DIR, DataError, Sample, Splits, list_images, read_split_csv

PROTOCOLS = ("coral", "full")
TEST_SPLITS = ("test", "test_dedup")
UTK_GENDERS = ("male", "female")
UTK_RACES = ("white", "black", "asian", "indian", "other")
CORAL_AGES = (21, 60)
FULL_AGES = (0, 116)
CORAL_AGE_OFFSET = 21  # CORAL CSV age = real age - 21

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


# ---------------------------------------------------------------- names

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


# ---------------------------------------------------------------- protocols

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
