"""Labelled samples and their splits, and the split files every dataset shares.

A dataset loader (``training/utkface.py``, ``training/celeba.py``, ``training/mtfl.py``) turns
its own files into :class:`Splits` of :class:`Sample` (a file name and its targets); what they
share lives here: the error they raise, the shipped split files in ``training/splits/`` (see
its ``SOURCES.md``; ``tools/make_splits.py`` writes them), the fixed train/valid shuffle, and
the byte-duplicate test that keeps copies of test images out of training.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from engine.modelspec import TaskSpec
from engine.sources import IMAGE_SUFFIXES

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
SPLIT_SEED = 0
TRAIN_SHARE = 0.8


class DataError(ValueError):
    """A dataset cannot be used as given; the message names the input and the reason."""


@dataclass(frozen=True)
class Sample:
    file: str  # the file name as it is on disk (also the chip cache key)
    targets: Mapping[str, float]  # task -> label, for the tasks its dataset labels (UTKFace: gender, race, age)


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


def list_images(image_dir: Path) -> set[str]:
    """Names of the image files in ``image_dir``; DataError if it is missing or has none."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: image folder not found")
    names = {p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    if not names:
        raise DataError(f"{image_dir}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
    return names


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
