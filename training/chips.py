"""Cache aligned chips of a folder of face images, once, with the engine's own alignment.

The cache is a folder holding ``chips.npy`` (uint8 [N, 150, 150, 3] RGB, memory-mapped
when read) and ``index.csv`` (file, row, status). Every image gets a row in the index;
images with no face, unreadable files and the like are recorded with their status and
get no chip, so a summary can count them and a rerun skips nothing silently.

    python -m training.chips ../shared/data/utkface --out cache/utkface
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from engine.align import CHIP_SIZE, Aligner
from engine.detect import HogDetector
from engine.sources import IMAGE_SUFFIXES  # noqa: F401  (re-exported for training.quantize)
from engine.types import Faces

OK, NO_FACE, UNREADABLE = "ok", "no_face", "unreadable"


@dataclass(frozen=True)
class ChipCache:
    """A read-only view of a chip cache: ``chips[row_of[file]]``."""

    folder: Path
    chips: np.ndarray  # memmap uint8 [N, 150, 150, 3]
    row_of: dict[str, int]  # file name -> row, for files that have a chip
    status_of: dict[str, str]  # file name -> status, for every file seen

    @classmethod
    def open(cls, folder: str | Path) -> "ChipCache":
        folder = Path(folder)
        index = folder / "index.csv"
        if not index.is_file():
            raise FileNotFoundError(f"{folder}: no chip cache here (index.csv missing); "
                                    "build it with `python -m training.chips IMAGES --out FOLDER`")
        row_of, status_of = {}, {}
        with index.open(newline="") as f:
            for rec in csv.DictReader(f):
                status_of[rec["file"]] = rec["status"]
                if rec["status"] == OK:
                    row_of[rec["file"]] = int(rec["row"])
        chips = np.load(folder / "chips.npy", mmap_mode="r")
        return cls(folder, chips, row_of, status_of)

    def summary(self) -> dict[str, int]:
        return dict(Counter(self.status_of.values()))


def align_largest_face(image_bgr: np.ndarray, detectors, aligner: Aligner) -> tuple[Faces, np.ndarray] | None:
    """The largest face (with its landmarks) and its chip, trying each detector in turn;
    None if none finds a face."""
    for detector in detectors:
        faces = detector(image_bgr)
        if len(faces):
            faces, chips = aligner(image_bgr, faces.largest())
            return faces, chips[0]
    return None


def cache_detectors() -> list[HogDetector]:
    """Upsample 0 first (fast); a face too small for it gets a second try at upsample 1. Both run
    on the image at its own size (min_face = the detector's native window: scale 1)."""
    native = HogDetector.native_min_face_px
    return [HogDetector(upsample=0, min_face=native), HogDetector(upsample=1, min_face=native)]


def build_cache(image_dir: Path, out: Path, files: list[str] | None = None, progress: bool = True) -> dict[str, int]:
    """Detect, align and store the chip of every image; returns counts by status."""
    image_dir, out = Path(image_dir), Path(out)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: not a folder of images")
    if files is None:
        files = sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{image_dir}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    out.mkdir(parents=True, exist_ok=True)
    detectors, aligner = cache_detectors(), Aligner.create()
    chips = np.lib.format.open_memmap(out / "chips.npy.partial", mode="w+", dtype=np.uint8,
                                      shape=(len(files), CHIP_SIZE, CHIP_SIZE, 3))
    rows: list[tuple[str, int, str]] = []
    n_ok = 0
    for name in tqdm(files, desc=f"chips {image_dir.name}", unit="img", disable=not progress):
        image = cv2.imread(str(image_dir / name), cv2.IMREAD_COLOR)
        if image is None:
            rows.append((name, -1, UNREADABLE))
            continue
        found = align_largest_face(image, detectors, aligner)
        if found is None:
            rows.append((name, -1, NO_FACE))
            continue
        chips[n_ok] = found[1]
        rows.append((name, n_ok, OK))
        n_ok += 1
    chips.flush()
    del chips
    # Keep only the filled rows.
    full = np.load(out / "chips.npy.partial", mmap_mode="r")
    np.save(out / "chips.npy", np.ascontiguousarray(full[:n_ok]))
    del full
    (out / "chips.npy.partial").unlink()
    with (out / "index.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "row", "status"])
        w.writerows(rows)
    return dict(Counter(status for _, _, status in rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.chips", description=__doc__.splitlines()[0])
    p.add_argument("images", type=Path, help="folder of face images")
    p.add_argument("--out", type=Path, required=True, help="cache folder to write")
    p.add_argument("--files", type=Path, help="optional text file: one image name per line")
    args = p.parse_args(argv)
    files = args.files.read_text().split() if args.files else None
    return report_counts(lambda: build_cache(args.images, args.out, files))


def report_counts(build) -> int:
    """Run a cache build for a command line: its counts on one line (exit 0), or its error (exit 2)."""
    try:
        counts = build()
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("chips: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
