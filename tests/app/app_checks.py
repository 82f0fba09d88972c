"""Checks the app tests share: reading a video back, finding a colour in an image."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """(frames decoded, (w, h)) of a video file, read with OpenCV as a player would."""
    cap = cv2.VideoCapture(str(path))
    n, size = 0, (0, 0)
    while True:
        ok, image = cap.read()
        if not ok:
            break
        n += 1
        size = (image.shape[1], image.shape[0])
    cap.release()
    return n, size


def colour_share(image_bgr: np.ndarray, colour_bgr, tolerance: int = 40) -> float:
    """Share of ``image_bgr``'s pixels within ``tolerance`` of ``colour_bgr`` (per channel)."""
    if image_bgr.size == 0:
        return 0.0
    diff = np.abs(image_bgr.astype(np.int16) - np.asarray(colour_bgr, np.int16)).max(axis=2)
    return float((diff <= tolerance).mean())
