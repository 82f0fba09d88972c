"""Face detection: dlib's HOG (default) or CNN (mmod) detector, or MTCNN (``engine/mtcnn.py``).

The size of the image a detector runs on follows from the frame and the smallest face
the user wants found (``min_face``, px in the frame), not from a fixed width: each
detector finds faces down to its own window size (``native_min_face_px``, measured on
the public-domain portraits), so the frame is scaled by ``native_min_face_px /
min_face`` (up for small faces, down for large ones) and the boxes are mapped back.

Tight crops (a photo whose face touches the border, as in most face datasets) lack the
context the detector's window needs around a face: ``pad`` adds a grey border of that
fraction of the image's longer side before detecting (stills use it; on tight crops of
the portraits it took HOG from 31/40 to 40/40 faces found, ``tests/engine/test_detect.py``).

A caller that knows which faces it looks for (the region scans around tracked faces,
``engine/region_scan.py``) passes its own ``scale`` instead.

Detectors are registered by name (``@register_detector``) and made with
:func:`create_detector`; :data:`DETECTORS` lists the names for menus and ``--help``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import cv2
import dlib
import numpy as np

from engine import assets
from engine.types import Faces

DEFAULT_MIN_FACE = 40  # px: the smallest face (detector box width) found by default
STILL_PAD = 0.2  # border added around stills, as a fraction of the longer side
_PAD_GREY = (127, 127, 127)
FILLS = 0.4  # a face at least this part of a photo's shorter side "fills" it
MAX_UPSCALE = 2.5  # never enlarge a frame more than this (cost grows with its square)


class Detector(Protocol):
    name: str
    native_min_face_px: int

    def __call__(self, image_bgr: np.ndarray, pad: float = 0.0, scale: float | None = None) -> Faces: ...


_REGISTRY: dict[str, tuple[str, Callable[..., Detector]]] = {}


def register_detector(name: str, title: str):
    """Class decorator: make a detector available to :func:`create_detector` as ``name``."""
    def wrap(cls):
        _REGISTRY[name] = (title, cls)
        cls.name = name
        return cls
    return wrap


def detect_scale(size_wh: tuple[int, int], min_face: int, native_min_face_px: int) -> float:
    """Factor to resize a frame by so that faces of ``min_face`` px become detectable."""
    if min_face <= 0:
        raise ValueError(f"min_face must be a positive number of pixels, got {min_face}")
    return min(MAX_UPSCALE, native_min_face_px / float(min_face))


def prepare(image_bgr: np.ndarray, scale: float, pad: float) -> tuple[np.ndarray, float, int]:
    """(image to detect on, its scale, border in frame px) for a frame, a scale and a pad."""
    border = int(round(pad * max(image_bgr.shape[:2]))) if pad > 0 else 0
    if border:
        image_bgr = cv2.copyMakeBorder(image_bgr, border, border, border, border,
                                       cv2.BORDER_CONSTANT, value=_PAD_GREY)
    if abs(scale - 1.0) > 1e-3:
        h, w = image_bgr.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image_bgr = cv2.resize(image_bgr, size, interpolation=interp)
    return np.ascontiguousarray(image_bgr[:, :, ::-1]), scale, border


def to_frame_xyxy(rects, scale: float, border: int) -> np.ndarray:
    """dlib rectangles on the prepared image -> boxes in frame pixels."""
    xyxy = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32).reshape(-1, 4)
    return xyxy / np.float32(scale) - np.float32(border)


def nms_indices(xyxy: np.ndarray, scores: np.ndarray, iou_max: float = 0.4) -> np.ndarray:
    """Indices of the boxes kept greedily by score (best first), each dropping the boxes that
    overlap it more than ``iou_max`` (OpenCV's NMS: MTCNN's P-Net hands it hundreds)."""
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    if not len(xyxy):
        return np.zeros(0, np.int64)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:4] - xyxy[:, :2]], axis=1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    ranks = scores - scores.min() + 1.0  # same order, all above OpenCV's (strict) score threshold 0
    return np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), ranks.tolist(), 0.0, iou_max), np.int64).reshape(-1)


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_max: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """The boxes and scores :func:`nms_indices` keeps, best first."""
    keep = nms_indices(xyxy, scores, iou_max)
    return np.asarray(xyxy).reshape(-1, 4)[keep], np.asarray(scores)[keep]


@dataclass
class _DlibDetector:
    min_face: int = DEFAULT_MIN_FACE
    upsample: int = 0
    native_min_face_px = 70  # overridden per detector

    def scale_for(self, size_wh: tuple[int, int]) -> float:
        return detect_scale(size_wh, self.min_face, self.native_min_face_px)


def frontal_face_detector():
    """dlib's frontal HOG detector: the shipped binary copy (~3 ms to load, identical boxes and
    scores), or dlib's built-in one (0.7-1.0 s) where that copy is missing or unreadable."""
    path = assets.hog_detector_path()
    if path.is_file():
        try:
            return dlib.fhog_object_detector(str(path))
        except RuntimeError:  # a damaged copy costs only the slower start
            pass
    return dlib.get_frontal_face_detector()


@register_detector("hog", "HOG (dlib)")
@dataclass
class HogDetector(_DlibDetector):
    """dlib's frontal HOG + linear SVM detector (window 80×80; finds faces from ~70 px)."""

    min_score: float = 0.0
    # An enlarged frame shows HOG textures it reads as faces (the astronaut's mission patch,
    # score 0.06, at min_face 40); on the portraits enlarged from 40-80 px faces every true
    # face scored 0.28 or more (200 of 200). So enlarged frames keep detections from:
    min_score_enlarged: float = 0.2
    # Measured on the 40 portraits scaled so dlib's box is W px wide (upsample 0):
    # 45 px 2/40, 50 px 17/40, 60 px 39/40, 70 px and up 40/40.
    native_min_face_px = 70
    _detector: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._detector = frontal_face_detector()

    def __call__(self, image_bgr: np.ndarray, pad: float = 0.0, scale: float | None = None) -> Faces:
        h, w = image_bgr.shape[:2]
        scale = self.scale_for((w, h)) if scale is None else float(scale)
        boxes, scores = self._run(image_bgr, scale, pad)
        if pad > 0 and scale > 1:
            # A still is also searched at its own size for a face that fills it: such a face
            # scores low once enlarged (one of the 40 tight crops, 0.08, under
            # min_score_enlarged). Only faces of at least FILLS of the photo's shorter side
            # are taken from this pass (smaller ones are the enlarged pass's: here the
            # astronaut's mission patch scores 0.21).
            more_boxes, more_scores = self._run(image_bgr, 1.0, pad)
            big = (more_boxes[:, 2] - more_boxes[:, 0]) >= FILLS * min(h, w)
            boxes, scores = nms(np.concatenate([boxes, more_boxes[big]]),
                                np.concatenate([scores, more_scores[big]]))
        return Faces.from_boxes(boxes, scores)

    def _run(self, image_bgr: np.ndarray, scale: float, pad: float) -> tuple[np.ndarray, np.ndarray]:
        rgb, scale, border = prepare(image_bgr, scale, pad)
        min_score = max(self.min_score, self.min_score_enlarged) if scale > 1 else self.min_score
        rects, scores, _ = self._detector.run(rgb, self.upsample, min_score)
        return to_frame_xyxy(rects, scale, border), np.asarray(scores, np.float32).reshape(-1)


@register_detector("cnn", "CNN (robust, slow on CPU)")
@dataclass
class CnnDetector(_DlibDetector):
    """dlib's max-margin object detection CNN: more robust to pose, much slower on CPU."""

    native_min_face_px = 70
    _detector: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._detector = dlib.cnn_face_detection_model_v1(str(assets.dlib_model(assets.MMOD_DETECTOR)))

    def __call__(self, image_bgr: np.ndarray, pad: float = 0.0, scale: float | None = None) -> Faces:
        h, w = image_bgr.shape[:2]
        rgb, scale, border = prepare(image_bgr, self.scale_for((w, h)) if scale is None else float(scale), pad)
        dets = self._detector(rgb, self.upsample)
        return Faces.from_boxes(to_frame_xyxy([d.rect for d in dets], scale, border),
                                np.array([d.confidence for d in dets], np.float32))


from engine import mtcnn  # noqa: E402,F401  (registers "mtcnn"; it builds on the helpers above)

DETECTORS: tuple[str, ...] = tuple(_REGISTRY)
DETECTOR_TITLES: dict[str, str] = {name: title for name, (title, _) in _REGISTRY.items()}


def can_confirm(detector: object) -> bool:
    """Whether a detector checks known boxes itself (``confirm(image_bgr, xyxy) -> Faces``, as
    MTCNN's O-Net does): region scans can then use it instead of searching around each face."""
    return callable(getattr(detector, "confirm", None))


def create_detector(name: str = "hog", upsample: int = 0, min_face: int = DEFAULT_MIN_FACE) -> Detector:
    """A detector by name; raises ValueError naming the choices (or the bad min_face)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown detector '{name}' (choose from: {', '.join(_REGISTRY)})")
    if not isinstance(min_face, (int, np.integer)) or min_face < 8:
        raise ValueError(f"min_face must be a whole number of pixels, at least 8, got {min_face}")
    return _REGISTRY[name][1](min_face=int(min_face), upsample=upsample)
