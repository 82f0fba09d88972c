"""Find and align the one face of each dataset image, once, for every system alike.

Detection follows ``training.chips`` (the chip cache the model was trained on): dlib HOG
on the full image at upsample 0, then upsample 1 if nothing was found; the largest face;
then ``engine.align`` for FaceAttr's chip and the 5 landmarks. The box goes to every
peer, so all systems see the same face, and images where no face is found are left out
for all of them (and counted).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.align import Aligner
from training.chips import align_largest_face, cache_detectors


@dataclass(frozen=True)
class FoundFaces:
    """Rows for the images where a face was found, in input order."""

    files: list[str]  # image names with a face
    box_xyxy: np.ndarray  # [N, 4] float32
    landmarks_xy: np.ndarray  # [N, 5, 2]
    chips_rgb: np.ndarray  # [N, 150, 150, 3] uint8, FaceAttr's chips
    no_face: list[str]
    unreadable: list[str]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"files": np.array(self.files, dtype=str), "box_xyxy": self.box_xyxy,
                "landmarks_xy": self.landmarks_xy, "chips_rgb": self.chips_rgb,
                "no_face": np.array(self.no_face, dtype=str), "unreadable": np.array(self.unreadable, dtype=str)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "FoundFaces":
        return cls([str(f) for f in a["files"]], a["box_xyxy"], a["landmarks_xy"], a["chips_rgb"],
                   [str(f) for f in a["no_face"]], [str(f) for f in a["unreadable"]])


def find_faces(image_dir: Path, files: list[str], aligner: Aligner, progress=None) -> FoundFaces:
    detectors = cache_detectors()  # the chip cache's own cascade: same faces as training saw
    kept, boxes, marks, chips, no_face, unreadable = [], [], [], [], [], []
    for k, name in enumerate(files):
        image = cv2.imread(str(Path(image_dir) / name), cv2.IMREAD_COLOR)
        if image is None:
            unreadable.append(name)
            continue
        found = align_largest_face(image, detectors, aligner)
        if found is None:
            no_face.append(name)
            continue
        aligned, chip = found
        kept.append(name)
        boxes.append(aligned.xyxy[0])
        marks.append(aligned.landmarks_xy[0])
        chips.append(chip)
        if progress is not None and (k + 1) % 500 == 0:
            progress(k + 1, len(files))
    size = aligner.size
    return FoundFaces(
        kept, np.array(boxes, np.float32).reshape(-1, 4), np.array(marks, np.float32).reshape(-1, 5, 2),
        np.stack(chips) if chips else np.zeros((0, size, size, 3), np.uint8), no_face, unreadable)


def check_against_cache(found: FoundFaces, cache_dir: Path) -> dict:
    """Do our chips equal the training chip cache's (same preprocessing, train = serve)?"""
    from training.chips import ChipCache

    try:
        cache = ChipCache.open(cache_dir)
    except FileNotFoundError as e:
        return {"checked": 0, "note": str(e)}
    diffs = []
    for name, chip in zip(found.files, found.chips_rgb):
        row = cache.row_of.get(name)
        if row is not None:
            diffs.append(int(np.abs(cache.chips[row].astype(np.int16) - chip.astype(np.int16)).max()))
    cached_no_face = sum(1 for n in found.no_face if cache.status_of.get(n) == "no_face")
    d = np.asarray(diffs)
    return {"cache": str(cache_dir), "checked": len(diffs),
            "identical": int((d == 0).sum()) if len(d) else 0,
            "max_abs_diff": int(d.max()) if len(d) else None,
            "no_face_here_and_in_cache": cached_no_face, "no_face_here": len(found.no_face)}
