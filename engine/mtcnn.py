"""MTCNN face detection through ONNX Runtime: an order of magnitude cheaper than HOG on HD frames.

HOG's cost grows with the pixels it scans at its 80×80 window, so a 1280×720 frame with
faces from 60 px is searched at 1.17× its size (~130 ms here). MTCNN's first network
(P-Net) looks at 12×12 windows, so the same frame is searched at 12 / 60 of its size and
the later networks (R-Net, O-Net) only see the few candidates that survive. The weights
are the original MTCNN's as shipped in the PyPI package ``facenet-pytorch`` (MIT), turned
into ONNX by ``tools/export_mtcnn.py`` (``assets/detectors/mtcnn_*.onnx``).

Downstream everything stays as it was with HOG: dlib's 5-point shape predictor finds the
landmarks inside each box and the chip is aligned from them (``engine/align.py``). That
predictor was trained on HOG's boxes, which are tighter and lower than MTCNN's (MTCNN's
box reaches the forehead and chin), so each box is mapped to a HOG-like box by
:data:`HOG_LIKE`, measured with ``tools/fit_mtcnn_boxes.py`` on faces both detectors found.
``min_face`` keeps its meaning (the width of that HOG-like box, in frame pixels).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from engine import assets
from engine.detect import DEFAULT_MIN_FACE, nms_indices, prepare, register_detector
from engine.types import Faces

PYRAMID_FACTOR = 0.709  # each pyramid level is this fraction of the previous one (MTCNN's own)
PNET_WINDOW, PNET_STRIDE = 12, 2
# HOG-like box from an MTCNN box of side s (its longer side) centred at (cx, cy): centre
# (cx + dx*s, cy + dy*s), side k*s. Fitted by tools/fit_mtcnn_boxes.py on the 623 faces both
# detectors found in 600 UTKFace training photos and the 40 portraits: IoU with HOG's own box
# median 0.84, and the landmarks found in it lie a median 0.5 % of the eye distance (95th
# percentile 1.7 %) from those found in HOG's box.
HOG_LIKE = {"dx": 0.0179, "dy": 0.0621, "k": 0.8156}


def nms_keep(xyxy: np.ndarray, scores: np.ndarray, iou_max: float, by_min: bool = False) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first. ``by_min`` divides the
    overlap by the smaller box (MTCNN's last stage: drops a box inside a bigger one)."""
    if not by_min:
        return nms_indices(xyxy, scores, iou_max)
    order = np.argsort(-scores, kind="stable")
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(xyxy[i, 2], xyxy[rest, 2]) - np.maximum(xyxy[i, 0], xyxy[rest, 0]), 0, None)
        h = np.clip(np.minimum(xyxy[i, 3], xyxy[rest, 3]) - np.maximum(xyxy[i, 1], xyxy[rest, 1]), 0, None)
        inter = w * h
        order = rest[inter / np.maximum(np.minimum(area[i], area[rest]), 1e-9) <= iou_max]
    return np.asarray(keep, np.int64)


def _regress(xyxy: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    wh = np.tile(xyxy[:, 2:4] - xyxy[:, 0:2], 2)
    return xyxy + offsets * wh


def _square(xyxy: np.ndarray) -> np.ndarray:
    centre = (xyxy[:, 0:2] + xyxy[:, 2:4]) / 2
    half = np.max(xyxy[:, 2:4] - xyxy[:, 0:2], axis=1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def _normalise(rgb: np.ndarray) -> np.ndarray:
    """uint8 HWC or NHWC -> float32 NCHW in [-1, 1), as MTCNN was trained."""
    x = (rgb.astype(np.float32) - 127.5) * (1 / 128)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def crops(rgb: np.ndarray, xyxy: np.ndarray, size: int) -> np.ndarray:
    """Each box cut from the image (outside it: zeros) and resized to size×size, uint8 [N,s,s,3]."""
    h, w = rgb.shape[:2]
    out = np.zeros((len(xyxy), size, size, 3), np.uint8)
    for n, (x1, y1, x2, y2) in enumerate(np.round(xyxy).astype(int)):
        bw, bh = max(x2 - x1, 1), max(y2 - y1, 1)
        patch = np.zeros((bh, bw, 3), np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = rgb[sy1:sy2, sx1:sx2]
        out[n] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_LINEAR)
    return out


def hog_like(xyxy: np.ndarray, fit: dict[str, float] = HOG_LIKE) -> np.ndarray:
    """MTCNN boxes -> square boxes placed as dlib's HOG detector places them."""
    side = np.max(xyxy[:, 2:4] - xyxy[:, 0:2], axis=1)
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2 + fit["dx"] * side
    cy = (xyxy[:, 1] + xyxy[:, 3]) / 2 + fit["dy"] * side
    half = fit["k"] * side / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1).astype(np.float32)


def from_hog_like(xyxy: np.ndarray, fit: dict[str, float] = HOG_LIKE) -> np.ndarray:
    """HOG-like boxes -> the square MTCNN boxes they came from (the inverse of ``hog_like``)."""
    side = np.max(xyxy[:, 2:4] - xyxy[:, 0:2], axis=1) / fit["k"]
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2 - fit["dx"] * side
    cy = (xyxy[:, 1] + xyxy[:, 3]) / 2 - fit["dy"] * side
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1).astype(np.float32)


def _session(name: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # the detector runs beside the network; one core each
    opts.inter_op_num_threads = 1
    path = assets.bundle_root() / "assets" / "detectors" / f"mtcnn_{name}.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MTCNN network missing (python tools/export_mtcnn.py)")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@register_detector("mtcnn", "MTCNN (fastest)")
@dataclass
class MtcnnDetector:
    """The MTCNN cascade; boxes mapped to HOG's placement (``hog_like``)."""

    min_face: int = DEFAULT_MIN_FACE
    upsample: int = 0  # each step halves the smallest face searched for, as dlib's upsampling does
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    # the HOG-like box width of a face whose MTCNN box fills P-Net's 12 px window (~9.8 px)
    native_min_face_px = PNET_WINDOW * HOG_LIKE["k"]
    _nets: tuple = field(default=(), repr=False)

    def __post_init__(self) -> None:
        self._nets = tuple(_session(n) for n in ("pnet", "rnet", "onet"))

    def scale_for(self, size_wh: tuple[int, int]) -> float:
        return self.native_min_face_px * (2 ** self.upsample) / float(self.min_face)

    def __call__(self, image_bgr: np.ndarray, pad: float = 0.0, scale: float | None = None) -> Faces:
        h, w = image_bgr.shape[:2]
        first = self.scale_for((w, h)) if scale is None else float(scale)
        rgb, _, border = prepare(image_bgr, 1.0, pad)
        xyxy, scores = self.cascade(rgb, first)
        return Faces.from_boxes(hog_like(xyxy) - np.float32(border), scores)

    def confirm(self, image_bgr: np.ndarray, xyxy: np.ndarray) -> Faces:
        """The faces still at ``xyxy`` (HOG-like boxes of known faces, frame px), re-placed:
        O-Net alone on each box, as MTCNN's last stage judges a candidate: ~5 ms for five
        faces at 1280x720 where searching the regions around them costs ~18 ms
        (benchmarks/RESULTS.md); it finds no new face (the full scans do)."""
        if not len(xyxy):
            return Faces.from_boxes(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        boxes = from_hog_like(np.asarray(xyxy, np.float32).reshape(-1, 4))
        chips = crops(image_bgr, boxes, 48)[..., ::-1]
        prob, offsets = self._nets[2].run(None, {"image": _normalise(chips)})[:2]
        ok = prob.reshape(-1) >= self.thresholds[2]
        boxes = _regress(boxes[ok], offsets[ok])
        keep = nms_keep(boxes, prob.reshape(-1)[ok], 0.7, by_min=True)
        return Faces.from_boxes(hog_like(boxes[keep]), prob.reshape(-1)[ok][keep].astype(np.float32))

    def cascade(self, rgb: np.ndarray, first_scale: float) -> tuple[np.ndarray, np.ndarray]:
        """MTCNN boxes (image px) and O-Net's face probabilities, searching from ``first_scale`` down."""
        boxes, scores = self._pnet(rgb, first_scale), np.zeros(0, np.float32)
        for stage, size in ((1, 24), (2, 48)):
            if not len(boxes):
                return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
            outs = self._nets[stage].run(None, {"image": _normalise(crops(rgb, boxes, size))})
            prob, offsets = outs[0].reshape(-1), outs[1]
            ok = prob >= self.thresholds[stage]
            boxes = _regress(boxes[ok], offsets[ok])
            keep = nms_keep(boxes, prob[ok], 0.7, by_min=stage == 2)
            boxes, scores = boxes[keep], prob[ok][keep]
            if stage == 1:
                boxes = _square(boxes)
        return boxes.astype(np.float32), scores.astype(np.float32)

    def _pnet(self, rgb: np.ndarray, first_scale: float) -> np.ndarray:
        h, w = rgb.shape[:2]
        found = []
        s, level = first_scale, rgb
        while min(h, w) * s >= PNET_WINDOW:
            # each level from the one before: INTER_AREA from the full frame at every level cost
            # more than the networks (43 of 90 ms on a 1280x720 frame)
            size = (max(1, round(w * s)), max(1, round(h * s)))
            shrink = size[0] < level.shape[1]
            level = cv2.resize(level, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            prob, offsets = self._nets[0].run(None, {"image": _normalise(level)[None]})
            ys, xs = np.nonzero(prob[0, 0] >= self.thresholds[0])
            if len(ys):
                xy = np.stack([xs, ys], axis=1).astype(np.float32) * PNET_STRIDE
                xyxy = np.concatenate([xy, xy + PNET_WINDOW], axis=1) / s
                score = prob[0, 0, ys, xs]
                off = offsets[0][:, ys, xs].T
                keep = nms_keep(xyxy, score, 0.5)
                found.append((xyxy[keep], score[keep], off[keep]))
            s *= PYRAMID_FACTOR
        if not found:
            return np.zeros((0, 4), np.float32)
        xyxy, score, off = (np.concatenate(p) for p in zip(*found))
        keep = nms_keep(xyxy, score, 0.7)
        return _square(_regress(xyxy[keep], off[keep]))
