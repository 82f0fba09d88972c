"""The preprocessing contract: (image, box) -> 150×150 RGB chip, shared by training and app.

Training caches chips made by :func:`align_chips` and the engine feeds the network chips
made by the same function, so train and serve cannot drift. dlib's 5-point shape
predictor finds the landmarks inside each box and ``dlib.get_face_chips`` warps the face
to the canonical pose dlib's face ResNet was trained on (size 150, padding 0.25).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np

from engine import assets
from engine.types import Faces

CHIP_SIZE = 150
CHIP_PADDING = 0.25


def load_shape_predictor(path: str | Path | None = None) -> "dlib.shape_predictor":
    return dlib.shape_predictor(str(path or assets.dlib_model(assets.SHAPE_PREDICTOR_5)))


def align_chips(
    image_bgr: np.ndarray,
    xyxy: np.ndarray,
    predictor: "dlib.shape_predictor",
    size: int = CHIP_SIZE,
    padding: float = CHIP_PADDING,
) -> tuple[np.ndarray, np.ndarray]:
    """Chips and landmarks for each box.

    Returns ``chips_rgb`` [N, size, size, 3] uint8 and ``landmarks_xy`` [N, 5, 2] float32
    in image pixels.
    """
    n = len(xyxy)
    if n == 0:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, 5, 2), np.float32)
    image_rgb = np.ascontiguousarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
    shapes = dlib.full_object_detections()
    landmarks_xy = np.empty((n, 5, 2), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(xyxy, np.float64)):
        rect = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
        shape = predictor(image_rgb, rect)
        shapes.append(shape)
        landmarks_xy[i] = [(p.x, p.y) for p in shape.parts()]
    chips = dlib.get_face_chips(image_rgb, shapes, size=size, padding=padding)
    return np.stack([np.asarray(c, np.uint8) for c in chips]), landmarks_xy


@dataclass
class Aligner:
    """Pipeline stage: adds landmarks to ``faces`` and returns the chips alongside."""

    predictor: "dlib.shape_predictor"
    size: int = CHIP_SIZE
    padding: float = CHIP_PADDING

    @classmethod
    def create(cls, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> "Aligner":
        return cls(load_shape_predictor(), size, padding)

    def __call__(self, image_bgr: np.ndarray, faces: Faces) -> tuple[Faces, np.ndarray]:
        chips, landmarks_xy = align_chips(image_bgr, faces.xyxy, self.predictor, self.size, self.padding)
        return faces.replace(landmarks_xy=landmarks_xy), chips


def chip_to_frame_affines(landmarks_xy: np.ndarray, size: int, padding: float) -> np.ndarray:
    """[N, 2, 3] affine maps from chip pixels to frame pixels, as dlib places each chip.

    dlib's ``get_face_chip_details`` turns the 5 landmarks into a rotated rectangle; its
    ``get_mapping_to_chip`` maps the rectangle's corners tl, tr, br to chip pixels
    (0, 0), (cols-1, 0), (cols-1, rows-1). We solve the inverse of that mapping.
    """
    n = len(landmarks_xy)
    out = np.empty((n, 2, 3), np.float32)
    for i, pts in enumerate(np.asarray(landmarks_xy, np.float64)):
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        det = dlib.full_object_detection(
            dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
            [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
        d = dlib.get_face_chip_details(det, size=size, padding=padding)
        r = d.rect
        c = np.array([(r.left() + r.right()) / 2.0, (r.top() + r.bottom()) / 2.0])
        cos, sin = np.cos(d.angle), np.sin(d.angle)
        rot = np.array([[cos, -sin], [sin, cos]])
        corners = np.array([[r.left(), r.top()], [r.right(), r.top()], [r.right(), r.bottom()]])
        frame_pts = (corners - c) @ rot.T + c
        chip_pts = np.array([[0, 0, 1], [d.cols - 1, 0, 1], [d.cols - 1, d.rows - 1, 1]], np.float64)
        out[i] = np.linalg.solve(chip_pts, frame_pts).T
    return out
