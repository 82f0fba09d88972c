"""The overlay: each face's box, track id and one short text per task.

Sizes follow the frame height, so labels read the same on a 320×240 thumbnail and a
1080p frame; labels sit on a filled background in the track's colour (black or white
text, whichever contrasts) and are kept inside the frame. A label is one line
("#3 female 97% | 34 y | white 88%") when it is not much wider than the face, else one
line per task. The renderer returns a new image and never draws on its input.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

from engine.model import format_value
from engine.modelspec import ModelSpec
from engine.types import Faces

FONT = cv2.FONT_HERSHEY_SIMPLEX
UNTRACKED_BGR = (160, 160, 160)


def track_color_bgr(track_id: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per track id (golden-ratio hue steps)."""
    if track_id < 0:
        return UNTRACKED_BGR
    hue = (track_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def _text_bgr(background_bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    b, g, r = background_bgr
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


@dataclass(frozen=True)
class Label:
    """Where one face's label goes: its lines and background rectangle (x0, y0, x1, y1)."""

    lines: tuple[str, ...]
    rect: tuple[int, int, int, int]
    font_scale: float
    thickness: int
    line_height: int
    text_height: int  # cap height above the baseline
    color_bgr: tuple[int, int, int]


@dataclass(frozen=True)
class Renderer:
    """Pipeline stage for display and video: ``renderer(image_bgr, faces, spec) -> new image``."""

    text_height_frac: float = 0.028  # cap height of label text as a fraction of frame height
    min_text_px: int = 9
    show_landmarks: bool = False  # the 5 alignment points (landmark tasks are always drawn)

    def sizes(self, frame_h: int) -> tuple[float, int, int, int]:
        """(font scale, text thickness, box thickness, padding) for a frame ``frame_h`` tall."""
        text_px = max(self.min_text_px, round(frame_h * self.text_height_frac))
        thickness = max(1, round(text_px / 12))
        scale = cv2.getFontScaleFromHeight(FONT, text_px, thickness)
        return scale, thickness, max(1, round(frame_h / 300)), max(2, round(text_px * 0.35))

    def label_lines(self, faces: Faces, spec: ModelSpec, i: int) -> list[str]:
        """Texts for face ``i``: '#id' then one text per task the faces carry."""
        head = f"#{int(faces.track_id[i])}" if faces.track_id[i] >= 0 else ""
        parts = [format_value(t, faces.tasks[t.name], i) for t in spec.tasks
                 if t.name in faces.tasks and t.kind != "landmarks"]
        return ([head] if head else []) + parts

    def layout(self, size_wh: tuple[int, int], faces: Faces, spec: ModelSpec) -> list[Label]:
        """Each face's label placed above its box, else below, right, left, preferring a place
        no earlier label covers, and inside the box when nothing else fits; always inside the frame (the font
        shrinks if a label is wider than the frame)."""
        w, h = size_wh
        scale, thickness, box_t, pad = self.sizes(h)
        labels = []
        for i in range(len(faces)):
            parts = self.label_lines(faces, spec, i)
            if not parts:
                continue
            x0, y0, x1, y1 = (float(v) for v in faces.xyxy[i])
            head, tasks = (parts[0], parts[1:]) if parts[0].startswith("#") else ("", parts)
            one_line = (head + " " + " | ".join(tasks)).strip()
            lines = [one_line]
            if _text_w(one_line, scale, thickness) > max(1.6 * (x1 - x0), 0.3 * w):
                lines = parts
            s, t = scale, thickness
            while s > 0.2 and max(_text_w(line, s, t) for line in lines) + 2 * pad > w:
                s *= 0.85
            (_, text_h), base = cv2.getTextSize("Ag", FONT, s, t)
            line_h = text_h + base + pad
            lw = max(_text_w(line, s, t) for line in lines) + 2 * pad
            lh = line_h * len(lines) + pad
            lx = int(min(max(0.0, x0 - box_t / 2), max(0, w - lw)))
            inside = (lx, int(min(max(0.0, y0), max(0, h - lh))))
            side_y = int(min(max(0.0, y0), max(0, h - lh)))
            places = [(lx, int(y0 - lh)), (lx, int(y1)), (int(x1 + box_t), side_y), (int(x0 - box_t - lw), side_y)]
            fitting = [(x, y) for x, y in places if 0 <= x and x + lw <= w and 0 <= y and y + lh <= h]
            taken = [label.rect for label in labels]
            lx, ly = next((p for p in fitting if not any(_overlap((*p, p[0] + lw, p[1] + lh), r) for r in taken)),
                          (fitting or [inside])[0])  # the first place no earlier label covers
            labels.append(Label(tuple(lines), (lx, ly, min(w, lx + lw), min(h, ly + lh)), s, t, line_h,
                                text_h, track_color_bgr(int(faces.track_id[i]))))
        return labels

    def __call__(self, image_bgr: np.ndarray, faces: Faces, spec: ModelSpec) -> np.ndarray:
        out = image_bgr.copy()
        h, w = out.shape[:2]
        _, _, box_t, pad = self.sizes(h)
        for i in range(len(faces)):
            color = track_color_bgr(int(faces.track_id[i]))
            x0, y0, x1, y1 = (int(round(float(v))) for v in faces.xyxy[i])
            cv2.rectangle(out, (x0, y0), (x1, y1), color, box_t, cv2.LINE_AA)
            r = max(1, box_t)
            points = [faces.landmarks_xy[i]] if self.show_landmarks else []
            points += [p.points_xy[i] for n, p in faces.tasks.items()
                       if p.points_xy is not None and _is_landmarks(spec, n)]
            for pts in points:
                for x, y in np.asarray(pts, np.float64):
                    if np.isfinite(x) and np.isfinite(y):
                        cv2.circle(out, (int(round(x)), int(round(y))), r, color, -1, cv2.LINE_AA)
        for label in self.layout((w, h), faces, spec):
            lx0, ly0, lx1, ly1 = label.rect
            cv2.rectangle(out, (lx0, ly0), (lx1 - 1, ly1 - 1), label.color_bgr, -1)
            ink = _text_bgr(label.color_bgr)
            for k, line in enumerate(label.lines):
                baseline_y = ly0 + pad + k * label.line_height + label.text_height
                cv2.putText(out, line, (lx0 + pad, baseline_y), FONT, label.font_scale, ink,
                            label.thickness, cv2.LINE_AA)
        return out


def _is_landmarks(spec: ModelSpec, name: str) -> bool:
    try:
        return spec.task(name).kind == "landmarks"
    except KeyError:
        return False


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _text_w(text: str, scale: float, thickness: int) -> int:
    return cv2.getTextSize(text, FONT, scale, thickness)[0][0]
