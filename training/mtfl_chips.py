"""Chip cache of MTFL (training/mtfl.py), aligned the way the app aligns a photo.

    python -m training.mtfl_chips cache/mtfl_src/MTFL --out cache/mtfl

Each image is searched as the app searches a still (the HOG detector with the grey border of
``engine.detect.STILL_PAD``; the default ``min_face`` on the 150-px test crops, the detector's
native size on the larger training images, whose faces are 100 px and more). The labelled face is the
detection holding the centre of the given landmarks; where none does (profiles, tight
crops), a box is placed from the landmarks with the median box-to-landmark geometry of the
detected faces of the same run, and dlib's 5-point predictor is fitted in it, as the engine
fits it in a detector's box. ``index.csv`` says which way each chip was found
(``found``: detector | landmarks), so a run can count them.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from engine.align import CHIP_SIZE, Aligner
from engine.detect import DEFAULT_MIN_FACE, STILL_PAD, HogDetector, create_detector
from engine.types import Faces
from training.chips import OK, UNREADABLE, report_counts
from training.mtfl import TEST_LIST, TRAIN_LIST, MtflRow, read_list

LARGE_IMAGE = 250  # px, shorter side
LARGE_MIN_FACE = HogDetector.native_min_face_px


def landmark_frame(landmarks_xy: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and size of the given landmarks: their mean, and the larger of the eye distance
    and the eye-to-mouth distance (stable from frontal to profile)."""
    eyes = (landmarks_xy[0] + landmarks_xy[1]) / 2
    mouth = (landmarks_xy[3] + landmarks_xy[4]) / 2
    size = max(float(np.linalg.norm(landmarks_xy[1] - landmarks_xy[0])), float(np.linalg.norm(mouth - eyes)), 1.0)
    return landmarks_xy.mean(axis=0), size


def pick_face(faces: Faces, landmarks_xy: np.ndarray) -> int | None:
    """The detection holding the landmarks' centre (the smallest such box), or None."""
    centre, _ = landmark_frame(landmarks_xy)
    x0, y0, x1, y1 = faces.xyxy.T
    holds = np.flatnonzero((x0 <= centre[0]) & (centre[0] <= x1) & (y0 <= centre[1]) & (centre[1] <= y1))
    if holds.size == 0:
        return None
    return int(holds[np.argmin((x1 - x0)[holds])])


def box_geometry(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Median (dx, dy, width) of detector boxes relative to landmark centre and size."""
    rel = []
    for xyxy, lm in pairs:
        centre, size = landmark_frame(lm)
        rel.append([((xyxy[0] + xyxy[2]) / 2 - centre[0]) / size, ((xyxy[1] + xyxy[3]) / 2 - centre[1]) / size,
                    (xyxy[2] - xyxy[0]) / size])
    return np.median(np.asarray(rel), axis=0) if rel else np.array([0.0, 0.0, 2.2])


def box_from_landmarks(landmarks_xy: np.ndarray, geometry: np.ndarray) -> np.ndarray:
    centre, size = landmark_frame(landmarks_xy)
    cx, cy, half = centre[0] + geometry[0] * size, centre[1] + geometry[1] * size, geometry[2] * size / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


def build_mtfl_cache(root: Path, out: Path, progress: bool = True) -> dict[str, int]:
    """Chips of every image of training.txt and testing.txt; counts by status and way found."""
    root, out = Path(root), Path(out)
    rows: list[MtflRow] = read_list(root, TRAIN_LIST) + read_list(root, TEST_LIST)
    # The app's still search (default min_face, enlarged) on the 150-px AFLW crops; the LFW and
    # web images (250 and 400 px) hold faces of 100 px and more, searched at their own size.
    small, large = create_detector("hog", min_face=DEFAULT_MIN_FACE), create_detector("hog", min_face=LARGE_MIN_FACE)
    aligner = Aligner.create()
    out.mkdir(parents=True, exist_ok=True)
    chips = np.lib.format.open_memmap(out / "chips.npy", mode="w+", dtype=np.uint8,
                                      shape=(len(rows), CHIP_SIZE, CHIP_SIZE, 3))

    def align(n: int, image: np.ndarray, box: np.ndarray) -> None:
        chips[n] = aligner(image, Faces.from_boxes(box[None], np.ones(1, np.float32)))[1][0]

    # Pass 1: detect and align every face the detector finds (each image read once).
    index: list[tuple[str, int, str, str]] = []
    found_boxes: list[tuple[np.ndarray, np.ndarray]] = []
    for n, row in enumerate(tqdm(rows, desc="chips MTFL", unit="img", disable=not progress)):
        image = cv2.imread(str(root / row.file), cv2.IMREAD_COLOR)
        if image is None:
            index.append((row.file, -1, UNREADABLE, ""))
            continue
        detector = small if min(image.shape[:2]) < LARGE_IMAGE else large
        faces = detector(image, pad=STILL_PAD)
        i = pick_face(faces, row.landmarks_xy) if len(faces) else None
        if i is None:
            index.append((row.file, n, OK, "landmarks"))  # placed in pass 2
            continue
        align(n, image, faces.xyxy[i])
        found_boxes.append((faces.xyxy[i], row.landmarks_xy))
        index.append((row.file, n, OK, "detector"))
    # Pass 2: the rest, in a box placed from their landmarks with the detected faces' geometry.
    geometry = box_geometry(found_boxes)
    for (file, n, status, how), row in zip(index, rows):
        if how == "landmarks":
            align(n, cv2.imread(str(root / row.file), cv2.IMREAD_COLOR), box_from_landmarks(row.landmarks_xy, geometry))
    chips.flush()
    with (out / "index.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "row", "status", "found"])
        w.writerows(index)
    counts = Counter(s for _, _, s, _ in index)
    counts.update(f"found by {how}" for _, _, s, how in index if s == OK)
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.mtfl_chips", description=__doc__.splitlines()[0])
    p.add_argument("mtfl", type=Path, help="the MTFL folder (holding training.txt, testing.txt and the images)")
    p.add_argument("--out", type=Path, required=True, help="cache folder to write")
    args = p.parse_args(argv)
    return report_counts(lambda: build_mtfl_cache(args.mtfl, args.out))


if __name__ == "__main__":
    sys.exit(main())
