"""The window's recording: a sink of the engine's render-and-write loop
(:func:`engine.annotate.render_and_write`) that the user starts and stops while a source plays.

A recording starts on the frame after :meth:`Recorder.start`, sized like the rendered
frame, and is finished by :meth:`Recorder.stop` (or when the run ends). How it goes is
reported through ``report(state, text)``: ('started', path), ('saved', path) or
('failed', sentence); a failure ends the recording, never the playback.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import numpy as np

from app.errors import error_sentence
from engine.types import FrameResult
from engine.write import VideoWriter


class Recorder:
    """Records the rendered frames to an mp4 when asked; safe to drive from another thread."""

    visual = True  # wants the rendered frame

    def __init__(self, report: Callable[[str, str], None], fps: float = 30.0) -> None:
        self.report = report
        self.fps = fps  # the source's frame rate (set once the source is open)
        self._lock = threading.RLock()  # re-entrant: a slot connected to ``report`` may query it
        self._writer: VideoWriter | None = None
        self._record_to: Path | None = None

    def start(self, path: Path) -> None:
        """Record the annotated stream to ``path`` from the next frame on."""
        with self._lock:
            self._record_to = Path(path)

    def stop(self) -> None:
        """Finish the recording (and forget one asked for and not yet started)."""
        with self._lock:
            self._record_to = None
            self._finish()

    def _finish(self) -> None:
        """Close the file being recorded, if any (caller holds the lock)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except Exception as e:  # noqa: BLE001 - reported, playback goes on
            self.report("failed", error_sentence(e, str(writer.path)))
            return
        self.report("saved", str(writer.path))

    @property
    def codec(self) -> str:
        """The recording's FourCC ('avc1' is H.264, 'mp4v' MPEG-4 Part 2), '' when none."""
        with self._lock:
            return self._writer.fourcc if self._writer else ""

    @property
    def path(self) -> Path | None:
        with self._lock:
            return self._writer.path if self._writer else self._record_to

    def write(self, result: FrameResult, image_bgr: np.ndarray | None = None) -> None:
        image_bgr = result.frame.image_bgr if image_bgr is None else image_bgr
        with self._lock:
            if self._record_to is not None and self._writer is None:
                path, self._record_to = self._record_to, None
                h, w = image_bgr.shape[:2]
                try:
                    self._writer = VideoWriter(path, self.fps, (w, h))
                except Exception as e:  # noqa: BLE001 - reported, playback goes on
                    self.report("failed", error_sentence(e, str(path)))
                    return
                self.report("started", str(path))
            if self._writer is not None:
                try:
                    self._writer.write(result, image_bgr)
                except Exception as e:  # noqa: BLE001
                    self.report("failed", error_sentence(e, str(self._writer.path)))
                    self._finish()
