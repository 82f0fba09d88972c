"""CelebA from its official files: attributes as binary tasks, the official partition as splits."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

from engine.modelspec import TaskSpec
from training.samples import DataError, Sample, Splits, list_images

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
