"""The overlay: each face's box, track id and one compact label, placed so that it never
covers a face.

Sizes follow the frame height, so labels read the same on a 320×240 thumbnail and a 4K
frame; a label sits on a filled background in the track's colour (black or white text,
whichever contrasts). Placement (:meth:`Renderer.layout`) is the one source of truth:
the renderer draws exactly the rectangles it returns, so tests check the real layout.

For each face, in reading order (top to bottom), the label tries: above, below, right
and left of its box (one line, then wrapped, then smaller text), and takes the first
place that lies inside the frame and touches no face box (its own included) and no label
already placed. When no adjacent place is free (a tight group photo) it goes to the
nearest free place and a leader line joins it to its box. Only when the frame has no
free place at all does a label overlap, and then the least.

The renderer returns a new image and never draws on its input. What it shows is chosen
by its fields (the window's View menu): tasks hidden, a minimum confidence below which a
value shows as "?", boxes, landmarks and track ids on or off, faces blurred (privacy).
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

from engine.types import Faces, TaskPrediction

FONT = cv2.FONT_HERSHEY_SIMPLEX
UNTRACKED_BGR = (160, 160, 160)
SEPARATOR = " · "
SHRINK = (1.0, 0.8, 0.65)  # text scales tried, relative to the frame's, before a leader line
Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def track_color_bgr(track_id: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per track id (golden-ratio hue steps)."""
    if track_id < 0:
        return UNTRACKED_BGR
    hue = (track_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def text_color_bgr(background_bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads on ``background_bgr`` (labels, the face panel's id cells)."""
    b, g, r = background_bgr
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def value_text(pred: TaskPrediction, i: int, min_confidence: float = 0.0) -> str:
    """One task's text for face ``i``: "female 97%", "34±6 y" (a regression with a spread
    output: the model's confidence is 1 / (1 + spread)), or "?" below ``min_confidence``."""
    conf = float(pred.confidence[i])
    if min_confidence > 0 and np.isfinite(conf) and conf < min_confidence:
        return "?"
    return pred.text(i)  # the kind's text ("34±6 y" with a spread: engine.tasks)


@dataclass(frozen=True)
class Label:
    """One face's label: its lines, background rectangle (x0, y0, x1, y1), text metrics,
    and the leader line (label point, box point) when it sits away from its box."""

    lines: tuple[str, ...]
    rect: Rect
    font_scale: float
    thickness: int
    line_height: int
    text_height: int  # cap height above the baseline
    color_bgr: tuple[int, int, int]
    face_index: int = -1
    leader: tuple[tuple[int, int], tuple[int, int]] | None = None
    pad: int = 2  # inner margin around the text


@dataclass(frozen=True)
class Renderer:
    """Pipeline stage for display and video: ``renderer(image_bgr, faces) -> new image``.

    What a face is labelled with comes from the faces themselves: each prediction carries
    its task (``Faces.tasks``, in the model's task order)."""

    text_height_frac: float = 0.028  # cap height of label text as a fraction of frame height
    min_text_px: int = 9
    show_landmarks: bool = False  # the 5 alignment points
    show_boxes: bool = True
    show_track_ids: bool = True
    hidden_tasks: frozenset[str] = frozenset()  # task names not shown (landmark tasks too)
    min_confidence: float = 0.0  # below it a value shows as "?"
    blur_faces: bool = False
    highlight_track: int | None = None  # drawn thicker (the face selected in the window)

    def sizes(self, frame_h: int) -> tuple[float, int, int, int]:
        """(font scale, text thickness, box thickness, padding) for a frame ``frame_h`` tall."""
        text_px = max(self.min_text_px, round(frame_h * self.text_height_frac))
        thickness = max(1, round(text_px / 12))
        scale = cv2.getFontScaleFromHeight(FONT, text_px, thickness)
        return scale, thickness, max(1, round(frame_h / 300)), max(2, round(text_px * 0.35))

    def label_lines(self, faces: Faces, i: int) -> list[str]:
        """Texts for face ``i``: '#id' (when shown) then one text per shown task (point tasks
        are drawn as points, not written)."""
        head = f"#{int(faces.track_id[i])}" if self.show_track_ids and faces.track_id[i] >= 0 else ""
        parts = [value_text(pred, i, self.min_confidence) for name, pred in faces.tasks.items()
                 if not pred.has_points and name not in self.hidden_tasks]
        return ([head] if head else []) + parts

    def layout(self, size_wh: tuple[int, int], faces: Faces) -> list[Label]:
        """Every labelled face's label, in face order (see the module's docstring)."""
        w, h = size_wh
        _, _, box_t, _ = self.sizes(h)
        boxes = [_grow(_int_rect(faces.xyxy[i]), box_t) for i in range(len(faces))]
        order = sorted(range(len(faces)), key=lambda i: (float(faces.xyxy[i][1]), float(faces.xyxy[i][0])))
        placed: list[Label] = []
        for i in order:
            parts = self.label_lines(faces, i)
            if parts:
                placed.append(self._place(i, parts, boxes, [lb.rect for lb in placed], (w, h),
                                          track_color_bgr(int(faces.track_id[i]))))
        return sorted(placed, key=lambda lb: lb.face_index)

    def _variants(self, parts: list[str], w: int, h: int) -> list[tuple]:
        """(lines, scale, thickness, line height, text height, pad, width, height), most
        legible first: one line, then two, then one per part; each at SHRINK's scales."""
        head, tasks = (parts[0], parts[1:]) if parts[0].startswith("#") else ("", parts)
        one = (head + " " + SEPARATOR.join(tasks)).strip() if tasks else head
        half = (len(tasks) + 1) // 2
        two = [(head + " " + SEPARATOR.join(tasks[:half])).strip(), SEPARATOR.join(tasks[half:])]
        forms = [[one]] + ([two] if len(tasks) >= 2 else []) + ([parts] if len(parts) > 2 else [])
        out = []
        for factor in SHRINK:
            text_px = max(round(self.min_text_px * 0.8), round(max(self.min_text_px, h * self.text_height_frac) * factor))
            t = max(1, round(text_px / 12))
            s = cv2.getFontScaleFromHeight(FONT, text_px, t)
            pad = max(2, round(text_px * 0.35))
            for lines in forms:
                while s > 0.2 and max(_text_w(x, s, t) for x in lines) + 2 * pad > w:
                    s *= 0.85  # never wider than the frame
                (_, text_h), base = cv2.getTextSize("Ag", FONT, s, t)
                line_h = text_h + base + pad
                lw = max(_text_w(x, s, t) for x in lines) + 2 * pad
                out.append((tuple(lines), s, t, line_h, text_h, pad, lw, line_h * len(lines) + pad))
        return out

    def _place(self, i: int, parts: list[str], boxes: list[Rect], taken: list[Rect],
               size_wh: tuple[int, int], color: tuple[int, int, int]) -> Label:
        w, h = size_wh
        obstacles = boxes + taken
        x0, y0, x1, y1 = boxes[i]
        variants = self._variants(parts, w, h)

        def label(v, x, y, leader=None) -> Label:
            lines, s, t, line_h, text_h, _, lw, lh = v
            return Label(lines, (x, y, x + lw, y + lh), s, t, line_h, text_h, color, i, leader, v[5])

        for v in variants:
            lw, lh = v[6], v[7]
            cx, cy = (x0 + x1 - lw) // 2, (y0 + y1 - lh) // 2
            xs = (_clamp(x0, 0, w - lw), _clamp(cx, 0, w - lw), _clamp(x1 - lw, 0, w - lw))
            ys = (_clamp(y0, 0, h - lh), _clamp(cy, 0, h - lh))
            for x, y in ([(x, y0 - lh) for x in xs] + [(x, y1) for x in xs]
                         + [(x1, y) for y in ys] + [(x0 - lw, y) for y in ys]):
                rect = (x, y, x + lw, y + lh)
                if _inside(rect, w, h) and not any(_overlap(rect, r) for r in obstacles):
                    return label(v, x, y)
        # no place beside the box: the nearest free place, with a leader line
        for v in (variants[0], variants[-1]):
            spot = _nearest_free(v[6], v[7], (x0, y0, x1, y1), obstacles, w, h)
            if spot is not None:
                rect = (*spot, spot[0] + v[6], spot[1] + v[7])
                return label(v, *spot, _leader(rect, boxes[i]))
        v = variants[-1]  # nowhere free: the place overlapping least
        spot = _least_overlap(v[6], v[7], (x0, y0, x1, y1), obstacles, w, h)
        return label(v, *spot, _leader((*spot, spot[0] + v[6], spot[1] + v[7]), boxes[i]))

    def __call__(self, image_bgr: np.ndarray, faces: Faces, spec=None) -> np.ndarray:
        """``image_bgr`` with ``faces`` drawn on a copy. ``spec`` is not used (the faces carry
        their tasks); it is accepted while benchmarks/ still pass the model's spec."""
        out = image_bgr.copy()
        h, w = out.shape[:2]
        box_t = self.sizes(h)[2]
        if self.blur_faces:
            for i in range(len(faces)):
                _blur(out, _int_rect(faces.xyxy[i]))
        for i in range(len(faces)):
            color = track_color_bgr(int(faces.track_id[i]))
            x0, y0, x1, y1 = _int_rect(faces.xyxy[i])
            highlighted = self.highlight_track is not None and int(faces.track_id[i]) == self.highlight_track
            if self.show_boxes or highlighted:
                if highlighted:
                    cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 255), box_t * 5, cv2.LINE_AA)
                cv2.rectangle(out, (x0, y0), (x1, y1), color, box_t * (3 if highlighted else 1), cv2.LINE_AA)
            points = [faces.landmarks_xy[i]] if self.show_landmarks else []
            points += [p.points_xy[i] for n, p in faces.tasks.items()
                       if p.has_points and n not in self.hidden_tasks]
            for pts in points:
                for x, y in np.asarray(pts, np.float64):
                    if np.isfinite(x) and np.isfinite(y):
                        cv2.circle(out, (int(round(x)), int(round(y))), max(1, box_t), color, -1, cv2.LINE_AA)
        for label in self.layout((w, h), faces):
            lx0, ly0, lx1, ly1 = label.rect
            if label.leader is not None:
                cv2.line(out, label.leader[0], label.leader[1], label.color_bgr, max(1, box_t), cv2.LINE_AA)
            cv2.rectangle(out, (lx0, ly0), (lx1 - 1, ly1 - 1), label.color_bgr, -1)
            ink = text_color_bgr(label.color_bgr)
            for k, line in enumerate(label.lines):
                baseline_y = ly0 + label.pad + k * label.line_height + label.text_height
                cv2.putText(out, line, (lx0 + label.pad, baseline_y), FONT, label.font_scale, ink,
                            label.thickness, cv2.LINE_AA)
        return out


def _int_rect(xyxy) -> Rect:
    x0, y0, x1, y1 = (int(round(float(v))) for v in xyxy)
    return x0, y0, x1, y1


def _grow(r: Rect, d: int) -> Rect:
    """A box as drawn: its line is ``d`` thick, centred on the edge."""
    return r[0] - d, r[1] - d, r[2] + d + 1, r[3] + d + 1


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(v, max(lo, hi)))


def _inside(r: Rect, w: int, h: int) -> bool:
    return 0 <= r[0] and r[2] <= w and 0 <= r[1] and r[3] <= h


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _grid(lw: int, lh: int, box: Rect, w: int, h: int):
    """Candidate top-left corners over the frame (every half label height) and their
    squared distance from the label's centre to the box's top centre."""
    step = max(2, lh // 2)
    xs = np.arange(0, max(1, w - lw + 1), step)
    ys = np.arange(0, max(1, h - lh + 1), step)
    gx, gy = np.meshgrid(xs, ys)
    tx, ty = (box[0] + box[2]) / 2, box[1]
    dist = (gx + lw / 2 - tx) ** 2 + (gy + lh / 2 - ty) ** 2
    return gx, gy, dist


def _nearest_free(lw: int, lh: int, box: Rect, obstacles: list[Rect], w: int, h: int):
    if lw > w or lh > h:
        return None
    gx, gy, dist = _grid(lw, lh, box, w, h)
    free = np.ones(gx.shape, bool)
    for b in obstacles:
        free &= ~((gx < b[2]) & (b[0] < gx + lw) & (gy < b[3]) & (b[1] < gy + lh))
    if not free.any():
        return None
    k = np.unravel_index(np.argmin(np.where(free, dist, np.inf)), dist.shape)
    return int(gx[k]), int(gy[k])


def _least_overlap(lw: int, lh: int, box: Rect, obstacles: list[Rect], w: int, h: int) -> tuple[int, int]:
    gx, gy, dist = _grid(min(lw, w), min(lh, h), box, w, h)
    area = np.zeros(gx.shape, np.float64)
    for b in obstacles:
        ox = np.clip(np.minimum(gx + lw, b[2]) - np.maximum(gx, b[0]), 0, None)
        oy = np.clip(np.minimum(gy + lh, b[3]) - np.maximum(gy, b[1]), 0, None)
        area += ox * oy
    k = np.unravel_index(np.argmin(area * 1e6 + dist), dist.shape)
    return int(gx[k]), int(gy[k])


def _leader(rect: Rect, box: Rect) -> tuple[tuple[int, int], tuple[int, int]]:
    """From the label's edge to the nearest point of the box's edge."""
    bx = int(np.clip((rect[0] + rect[2]) / 2, box[0], box[2]))
    by = int(np.clip((rect[1] + rect[3]) / 2, box[1], box[3]))
    lx = int(np.clip(bx, rect[0], rect[2] - 1))
    ly = int(np.clip(by, rect[1], rect[3] - 1))
    return (lx, ly), (bx, by)


def _blur(image: np.ndarray, rect: Rect) -> None:
    """Pixelate the face in place (coarse blocks cannot be sharpened back)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(0, rect[0]), max(0, rect[1]), min(w, rect[2]), min(h, rect[3])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    roi = image[y0:y1, x0:x1]
    small = cv2.resize(roi, (max(1, (x1 - x0) // 12), max(1, (y1 - y0) // 12)), interpolation=cv2.INTER_AREA)
    image[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)


def _text_w(text: str, scale: float, thickness: int) -> int:
    return cv2.getTextSize(text, FONT, scale, thickness)[0][0]
