"""Test media composed from the 40 public-domain portraits, each with its ground truth.

- :func:`slideshow`: portraits one after another at the same place, joined by hard cuts
  and cross-fades; the truth of each frame is who is shown and how much (blend weight).
- :func:`crowd_frame`: an HD frame (1280×720, 1920×1080) with faces of given sizes at
  known places on a textured background.
- :func:`tight_crops`: each portrait cut to its face (the face fills the image), as in
  face datasets and cropped profile photos.

Face sizes are the width of dlib's box, the detector's own convention. Every builder
needs ``../shared/data/faces-pd`` (several different people); tests skip without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import dlib
import numpy as np

from tests.engine.scenes import FACES_PD, write_video


def have_portraits() -> bool:
    return FACES_PD.is_dir() and len(list(FACES_PD.glob("*.jpg"))) >= 40


@lru_cache(maxsize=1)
def portraits() -> tuple[tuple[str, np.ndarray, np.ndarray], ...]:
    """(name, image_bgr, face xyxy as dlib's HOG finds it at upsample 1), name order."""
    detector = dlib.get_frontal_face_detector()
    out = []
    for path in sorted(FACES_PD.glob("*.jpg")):
        image = cv2.imread(str(path))
        rects = detector(np.ascontiguousarray(image[:, :, ::-1]), 1)
        r = max(rects, key=lambda r: r.width())
        out.append((path.name, image, np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32)))
    return tuple(out)


# -- slideshow --------------------------------------------------------------------------

@dataclass(frozen=True)
class SlideFrame:
    shown: tuple[tuple[int, float, tuple[float, ...]], ...]  # (portrait, blend weight, face xyxy)
    cut: bool  # a hard cut happened just before this frame

    def person_at(self, box_xyxy, at_least: float = 0.75) -> int | None:
        """Whose face ``box_xyxy`` is, if that person has at least ``at_least`` of the blend."""
        from engine.track import iou_matrix

        iou = iou_matrix(np.asarray([box_xyxy]), np.asarray([s[2] for s in self.shown]))[0]
        k = int(np.argmax(iou))
        return self.shown[k][0] if iou[k] >= 0.3 and self.shown[k][1] >= at_least else None


def slideshow(people: list[int], hold: int = 12, fade: int = 10, size_wh=(640, 480),
              transitions: tuple[str, ...] = ("cut", "fade")) -> tuple[list[np.ndarray], list[SlideFrame]]:
    """Frames showing ``people`` (portrait indices) in turn, each ``hold`` frames, the
    transitions cycling through ``transitions`` ('cut' or 'fade' over ``fade`` frames)."""
    w, h = size_wh
    pics = portraits()
    background = np.full((h, w, 3), (70, 90, 80), np.uint8)

    def place(k: int) -> tuple[np.ndarray, tuple[float, ...]]:
        img = background.copy()
        _, pic, face = pics[people[k]]
        ph, pw = pic.shape[:2]
        x, y = (w - pw) // 2, (h - ph) // 2
        img[y:y + ph, x:x + pw] = pic
        return img, tuple(float(v) for v in face + np.array([x, y, x, y], np.float32))

    frames, truth = [], []
    cut_next = False
    for k in range(len(people)):
        image, face = place(k)
        for j in range(hold):
            frames.append(image)
            truth.append(SlideFrame(((people[k], 1.0, face),), cut=cut_next and j == 0))
        kind = transitions[k % len(transitions)]
        cut_next = kind == "cut"
        if k + 1 < len(people) and kind == "fade":
            (a, face_a), (b, face_b) = place(k), place(k + 1)
            a, b = a.astype(np.float32), b.astype(np.float32)
            for j in range(1, fade + 1):
                t = j / (fade + 1)
                frames.append(np.clip((1 - t) * a + t * b + 0.5, 0, 255).astype(np.uint8))
                truth.append(SlideFrame(((people[k], 1 - t, face_a), (people[k + 1], t, face_b)), cut=False))
    return frames, truth


# -- HD frames with small faces ---------------------------------------------------------

def textured_background(size_wh: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth, lightly textured background (a plain one would flatter the detector)."""
    w, h = size_wh
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    return cv2.resize(cv2.GaussianBlur(noise, (5, 5), 0), (w, h), interpolation=cv2.INTER_CUBIC)


def crowd_frame(size_wh: tuple[int, int], face_px: list[int], seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """(frame, face boxes [N, 4]): portraits scaled so dlib's face box is ``face_px[i]`` wide,
    laid out on a grid with room between them."""
    w, h = size_wh
    frame = textured_background(size_wh, seed)
    pics = portraits()
    n = len(face_px)
    cols = int(np.ceil(np.sqrt(n * w / h)))
    rows = int(np.ceil(n / cols))
    cell_w, cell_h = w // cols, h // rows
    boxes = []
    for i, px in enumerate(face_px):
        _, pic, face = pics[(seed * 7 + i) % len(pics)]
        s = px / float(face[2] - face[0])
        small = cv2.resize(pic, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        ph, pw = small.shape[:2]
        if pw > cell_w or ph > cell_h:
            raise ValueError(f"a {px} px face does not fit a {cell_w}×{cell_h} cell")
        r, c = divmod(i, cols)
        x = c * cell_w + (cell_w - pw) // 2
        y = r * cell_h + (cell_h - ph) // 2
        frame[y:y + ph, x:x + pw] = small
        boxes.append(face * s + np.array([x, y, x, y], np.float32))
    return frame, np.asarray(boxes, np.float32).reshape(-1, 4)


# -- tight crops --------------------------------------------------------------------------

def tight_crops(shrink: float = 0.1, size: int = 150) -> list[tuple[str, np.ndarray]]:
    """Each portrait cut to dlib's face box shrunk by ``shrink`` on every side (the face
    touches all four borders), resized to ``size``×``size``, as face datasets crop."""
    out = []
    for name, image, (x0, y0, x1, y1) in portraits():
        dx, dy = shrink * (x1 - x0), shrink * (y1 - y0)
        crop = image[int(y0 + dy):int(y1 - dy), int(x0 + dx):int(x1 - dx)]
        out.append((name, cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)))
    return out


def write_frames(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    return write_video(path, frames, fps)
