"""Fit ``engine.mtcnn.HOG_LIKE``: where dlib's HOG detector puts its box, given MTCNN's box.

dlib's 5-point shape predictor (the chips' alignment) was trained on HOG's boxes, so the
MTCNN detector hands it HOG-like boxes. On faces both detectors find (IoU >= 0.3), this
fits the centre offset (dx, dy, in MTCNN box sides) and the side ratio k by medians, then
reports how far the landmarks found in the mapped box are from those found in HOG's own
box, as a share of the distance between the eyes (what the chip's alignment depends on).

    python tools/fit_mtcnn_boxes.py --utkface ../shared/data/utkface --list training/splits/full_train80.csv \
        --portraits ../shared/data/faces-pd --count 600
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import mtcnn  # noqa: E402
from engine.align import align_chips, load_shape_predictor  # noqa: E402
from engine.detect import STILL_PAD, create_detector  # noqa: E402
from engine.track import iou_matrix  # noqa: E402


def images(args: argparse.Namespace) -> list[Path]:
    found: list[Path] = []
    if args.portraits:
        found += sorted(args.portraits.glob("*.jpg"))
    if args.utkface and args.list:
        with open(args.list, newline="") as f:
            names = [row[0] for row in csv.reader(f) if row and not row[0].startswith("#")]
        names = [n for n in names if (args.utkface / n).is_file()]
        rng = np.random.default_rng(0)
        found += [args.utkface / n for n in rng.choice(names, min(args.count, len(names)), replace=False)]
    return found


def pairs(paths: list[Path], min_face: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(images, HOG boxes, MTCNN boxes) of the faces both detectors found, one per image."""
    hog = create_detector("hog", min_face=min_face)
    net = mtcnn.MtcnnDetector(min_face=min_face)
    kept, hog_xyxy, mt_xyxy = [], [], []
    for path in paths:
        bgr = cv2.imread(str(path))
        if bgr is None:
            continue
        a = hog(bgr, pad=STILL_PAD).xyxy
        rgb, _, border = mtcnn.prepare(bgr, 1.0, STILL_PAD)
        b, _ = net.cascade(rgb, net.scale_for(bgr.shape[1::-1]))
        if not len(a) or not len(b):
            continue
        iou = iou_matrix(a, b - border)
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        if iou[i, j] >= 0.3:
            kept.append(bgr)
            hog_xyxy.append(a[i])
            mt_xyxy.append(b[j] - border)
    return kept, np.array(hog_xyxy, np.float32), np.array(mt_xyxy, np.float32)


def fit(hog_xyxy: np.ndarray, mt_xyxy: np.ndarray) -> dict[str, float]:
    side = np.max(mt_xyxy[:, 2:4] - mt_xyxy[:, 0:2], axis=1)
    centre_m = (mt_xyxy[:, :2] + mt_xyxy[:, 2:]) / 2
    centre_h = (hog_xyxy[:, :2] + hog_xyxy[:, 2:]) / 2
    d = (centre_h - centre_m) / side[:, None]
    k = (hog_xyxy[:, 2] - hog_xyxy[:, 0]) / side
    return {"dx": round(float(np.median(d[:, 0])), 4), "dy": round(float(np.median(d[:, 1])), 4),
            "k": round(float(np.median(k)), 4)}


def landmark_error(kept: list[np.ndarray], hog_xyxy: np.ndarray, mapped: np.ndarray) -> np.ndarray:
    """Per face: mean distance between the 5 landmarks found in each box / the eye distance."""
    predictor = load_shape_predictor()
    errors = []
    for bgr, a, b in zip(kept, hog_xyxy, mapped):
        _, la = align_chips(bgr, a[None], predictor)
        _, lb = align_chips(bgr, b[None], predictor)
        eyes = np.linalg.norm(la[0, 0:2].mean(0) - la[0, 2:4].mean(0))
        errors.append(float(np.linalg.norm(la[0] - lb[0], axis=1).mean() / max(eyes, 1e-6)))
    return np.array(errors)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utkface", type=Path)
    ap.add_argument("--list", type=Path, help="a split list (first column: file name) to draw UTKFace files from")
    ap.add_argument("--portraits", type=Path)
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--min-face", type=int, default=40)
    args = ap.parse_args(argv)
    paths = images(args)
    if not paths:
        print("no images: give --portraits and/or --utkface with --list", file=sys.stderr)
        return 2
    kept, hog_xyxy, mt_xyxy = pairs(paths, args.min_face)
    print(f"{len(kept)} faces found by both detectors in {len(paths)} images")
    params = fit(hog_xyxy, mt_xyxy)
    print(f"HOG_LIKE = {params}")
    for name, fitted in (("identity", {"dx": 0.0, "dy": 0.0, "k": 1.0}), ("fitted", params)):
        mapped = mtcnn.hog_like(mt_xyxy, fitted)
        iou = np.diag(iou_matrix(hog_xyxy, mapped))
        err = landmark_error(kept, hog_xyxy, mapped)
        print(f"{name}: IoU with HOG's box median {np.median(iou):.3f} (5th pct {np.percentile(iou, 5):.3f}); "
              f"landmarks vs HOG's box: median {100 * np.median(err):.1f} %, "
              f"95th pct {100 * np.percentile(err, 95):.1f} % "
              "of the eye distance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
