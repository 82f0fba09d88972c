"""Detection off the critical path: a detector thread on the newest frame, tracking on every frame.

HOG on an enlarged frame costs more than a frame's time (at ``min_face`` 40 the 640×480
sample is searched at 1120×840). With :class:`BackgroundDetector` the pipeline hands the
newest frame to a detector thread whenever it is free (dlib releases the GIL, so it runs
on the other core) and goes on with the faces it tracks: every frame refits each face's
landmarks inside its box, moves the box with them, and runs the network on every face.
When a detection comes back, :func:`merge_detections` adds the faces it found that no
track covers (a face entering) and ends the tracks it did not find (a face leaving).

Staleness is bounded: a detection started ``max_lag_frames`` frames ago or more is
waited for, so a face that enters shows within ``max_lag_frames + 1`` frames and one
that leaves drops as fast, whatever the machine's speed (on a fast one nobody waits).
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from engine.track import greedy_match, iou_matrix
from engine.types import Faces

MAX_LAG_FRAMES = 2
SAME_FACE_IOU = 0.3


class BackgroundDetector:
    """A detector object of its own, in a thread of its own; one job at a time."""

    def __init__(self, make_detector: Callable[[], object], max_lag_frames: int = MAX_LAG_FRAMES) -> None:
        self._detector = make_detector()  # dlib detectors are not shared between threads
        self.max_lag_frames = int(max_lag_frames)
        self._cond = threading.Condition()
        self._job: tuple[int, np.ndarray, float] | None = None
        self._running: int | None = None  # the frame index being detected
        self._done: tuple[int, Faces] | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="faceattr-detect", daemon=True)
        self._thread.start()

    def submit(self, index: int, image_bgr: np.ndarray, pad: float = 0.0) -> bool:
        """Start detecting this frame if the thread is free; True when it was taken."""
        with self._cond:
            if self._job is not None or self._running is not None or self._closed:
                return False
            self._job = (index, image_bgr, pad)
            self._cond.notify_all()
            return True

    def take(self, current_index: int) -> tuple[int, Faces] | None:
        """The newest finished detection (frame index, faces), once; waits for one that
        has run ``max_lag_frames`` frames or longer."""
        with self._cond:
            started = self._running if self._running is not None else (self._job[0] if self._job else None)
            if started is not None and current_index - started >= self.max_lag_frames:
                self._cond.wait_for(lambda: self._done is not None or self._error is not None or self._closed)
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            done, self._done = self._done, None
            return done

    def reset(self) -> None:
        """Forget a finished or pending detection (a new scene or source)."""
        with self._cond:
            self._job = None
            self._done = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(5.0)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._job is not None or self._closed)
                if self._closed:
                    return
                (index, image, pad), self._job = self._job, None
                self._running = index
            try:
                faces = self._detector(image, pad=pad)
                result, error = (index, faces), None
            except BaseException as e:  # noqa: BLE001 - handed to the pipeline's thread
                result, error = None, e
            with self._cond:
                self._running = None
                if error is None:
                    self._done = result
                else:
                    self._error = error
                self._cond.notify_all()


def merge_detections(tracked: Faces, detected: Faces) -> Faces:
    """The tracked faces a detection confirms, plus the detected faces no track covers.

    Tracked rows keep their landmarks (the next refit starts from them); new rows have NaN
    landmarks and no track id until the tracker gives them one.
    """
    iou = iou_matrix(tracked.xyxy, detected.xyxy)
    pairs = greedy_match(iou, SAME_FACE_IOU) if len(tracked) and len(detected) else []
    kept = np.array(sorted(t for t, _ in pairs), np.int64)
    covered = {d for _, d in pairs}
    new = np.array([d for d in range(len(detected)) if d not in covered], np.int64)
    old = tracked.take(kept)
    fresh = detected.take(new)
    return Faces(
        xyxy=np.concatenate([old.xyxy, fresh.xyxy]).astype(np.float32),
        score=np.concatenate([old.score, fresh.score]).astype(np.float32),
        landmarks_xy=np.concatenate([old.landmarks_xy, np.full((len(new), 5, 2), np.nan, np.float32)]),
        track_id=np.concatenate([old.track_id, np.full(len(new), -1, np.int64)]),
    )
