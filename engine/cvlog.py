"""OpenCV's own log, silenced while we probe (a missing camera or encoder is not an error yet:
the caller says what went wrong, in one sentence naming the input or output)."""
from __future__ import annotations

import contextlib

import cv2


@contextlib.contextmanager
def quiet_opencv():
    """Silence OpenCV's own log while probing (a missing camera or encoder is not an error yet)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)
