"""Face detection with dlib: HOG (default, fast) or the CNN (mmod) detector.

Detection may run on a downscaled copy of the frame (``max_width``): boxes are mapped
back to frame pixels. HOG at upsample 0 finds faces of about 80 px and larger in the
image it is given, so downscaling trades small-face recall for speed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import dlib
import numpy as np

from engine import assets
from engine.types import Faces

DETECTORS = ("hog", "cnn")


def _downscale(image_bgr: np.ndarray, max_width: int | None) -> tuple[np.ndarray, float]:
    """The image to detect on and the factor that maps its pixels back to the frame's."""
    w = image_bgr.shape[1]
    if not max_width or w <= max_width:
        return image_bgr, 1.0
    factor = w / max_width
    h = int(round(image_bgr.shape[0] / factor))
    return cv2.resize(image_bgr, (max_width, h), interpolation=cv2.INTER_AREA), factor


def _rects_to_xyxy(rects, factor: float) -> np.ndarray:
    xyxy = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32)
    return xyxy.reshape(-1, 4) * np.float32(factor)


@dataclass
class HogDetector:
    """dlib's frontal HOG + linear SVM detector."""

    upsample: int = 0
    max_width: int | None = 640
    min_score: float = 0.0
    _detector: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._detector = dlib.get_frontal_face_detector()

    def __call__(self, image_bgr: np.ndarray) -> Faces:
        small, factor = _downscale(image_bgr, self.max_width)
        rgb = np.ascontiguousarray(small[:, :, ::-1])
        rects, scores, _ = self._detector.run(rgb, self.upsample, self.min_score)
        return Faces.from_boxes(_rects_to_xyxy(rects, factor), np.asarray(scores, np.float32))


@dataclass
class CnnDetector:
    """dlib's max-margin object detection CNN: more robust to pose, much slower on CPU."""

    upsample: int = 0
    max_width: int | None = 640
    _detector: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._detector = dlib.cnn_face_detection_model_v1(str(assets.dlib_model(assets.MMOD_DETECTOR)))

    def __call__(self, image_bgr: np.ndarray) -> Faces:
        small, factor = _downscale(image_bgr, self.max_width)
        rgb = np.ascontiguousarray(small[:, :, ::-1])
        dets = self._detector(rgb, self.upsample)
        return Faces.from_boxes(_rects_to_xyxy([d.rect for d in dets], factor),
                                np.array([d.confidence for d in dets], np.float32))


def create_detector(name: str = "hog", upsample: int = 0, max_width: int | None = 640):
    """A detector by name ('hog' or 'cnn'); raises ValueError naming the choices."""
    if name == "hog":
        return HogDetector(upsample=upsample, max_width=max_width)
    if name == "cnn":
        return CnnDetector(upsample=upsample, max_width=max_width)
    raise ValueError(f"unknown detector '{name}' (choose from: {', '.join(DETECTORS)})")
