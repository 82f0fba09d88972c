"""Detection ahead: a file's next frames are detected on threads of their own (pipelined runs).

On the sequential path a frame waits for its own full-frame detection (HOG costs about as
much as everything else a frame needs). A file is read ahead anyway (the capture queue),
so :class:`DetectAhead` sits between the capture thread's queue and
:meth:`engine.pipeline.Pipeline.process`: ``threads`` detector threads, each with its own
detector (dlib's are not shared between threads; dlib releases the GIL), take frames in
order and detect them while the pipeline's thread aligns, runs the network on, tracks
and smooths the frames before them (ONNX Runtime releases the GIL too). Frames come out
in order, each with the detection made for it: at most ``depth`` frames are in the stage.

Exact, not approximate: a full-frame detection is a function of the frame's image and
its pad only (the same detector settings, the same weights: :func:`clone_detector`), so
every frame gets the very faces the sequential path would find: no lag, no staleness,
the same records. Which frames need a full scan depends on the pipeline's state
(``detect_every``, scenes, whether any face is tracked), so for ``detect_every`` > 1 the
stage plans ahead (:class:`Plan`: the first frame, stills, shot cuts by a
:class:`ShotCutDetector` of its own, every k-th frame, every frame while nothing is
tracked) and the pipeline reports what it did (:meth:`DetectAhead.note`); a frame the
plan missed is detected by the pipeline itself, a planned one it does not need is
ignored. With ``detect_every`` = 1 every frame is detected and the plan is never wrong.

An error in a detector thread is handed over in the frame's place and raised by the
pipeline's thread; :meth:`DetectAhead.close` closes the capture queue and joins the
threads.
"""
from __future__ import annotations

import copy
import pickle
import threading
import time
from typing import Callable, Sequence

from engine.capture import END, POLL_S
from engine.detect import STILL_PAD
from engine.scenes import ShotCutDetector
from engine.types import Faces, Frame

DETECT_THREADS = 2  # detector threads (on 2 cores the pipeline's thread gives detection its idle time)
JOIN_S = 5.0  # longest wait for a detector thread finishing a detection when the run ends


def clone_detector(detector, make: Callable[[], object]):
    """A detector with ``detector``'s settings and weights for another thread.

    dlib's HOG detector takes seconds to build from scratch (``create_detector``) but
    milliseconds to copy through pickle; detectors that cannot be copied are made anew."""
    inner = getattr(detector, "_detector", None)
    if inner is not None:
        try:
            twin = copy.copy(detector)
            twin._detector = pickle.loads(pickle.dumps(inner))
            return twin
        except (TypeError, RuntimeError, pickle.PicklingError, AttributeError):
            pass
    return make()


def still_pad(frame: Frame) -> float:
    """The pad of a frame's full-frame detection (the sequential path's, engine.pipeline)."""
    return STILL_PAD if frame.still else 0.0


class Plan:
    """Which frames the pipeline will scan in full, guessed in frame order (see the module).

    ``wants(frame)`` is asked once per frame, in order, ahead of the pipeline; ``note``
    re-plans the frames after one from what the pipeline did with it (its count of frames
    since a scan, and whether it tracks any face: with none it scans every frame)."""

    def __init__(self, detect_every: int, shot_cuts: bool) -> None:
        self.every = max(1, int(detect_every))
        self.cuts = ShotCutDetector() if shot_cuts and self.every > 1 else None
        self._first = True
        self._since = 0  # frames since the last scan, after the last planned frame
        self._forced: dict[int, bool] = {}  # planned, not yet noted frames: a scan is certain
        self._empty = False  # the pipeline tracks no face

    def wants(self, frame: Frame) -> bool:
        if self.every <= 1:
            return True
        cut = self.cuts is not None and not frame.still and self.cuts(frame.image_bgr)
        forced = self._first or frame.still or cut  # a new scene: the pipeline scans it
        self._first = False
        self._forced[frame.index] = forced
        return self._step(forced)

    def note(self, index: int, since_detect: int, tracking: bool) -> None:
        if self.every <= 1:
            return
        self._empty = not tracking
        self._since = since_detect
        for f in [f for f in self._forced if f <= index]:
            del self._forced[f]
        for forced in self._forced.values():  # the frames planned since, again from here
            self._step(forced)

    def _step(self, forced: bool) -> bool:
        want = forced or self._empty or self._since >= self.every - 1
        self._since = 0 if want else self._since + 1
        return want


class DetectAhead:
    """Frames from ``box`` (a :class:`engine.capture.FrameQueue`), each with its detection.

    ``get(timeout)`` returns ``(frame, t_captured, dropped, detection)`` in frame order,
    ``detection`` being ``(faces, ms)`` or None (not planned), or the box's END / error,
    or None when nothing is ready yet; the interface of the capture boxes, so the
    pipeline's loop reads either."""

    def __init__(self, box, detectors: Sequence[object], plan: Plan, depth: int | None = None) -> None:
        self._box = box
        self._plan = plan
        self.depth = depth or len(detectors) + 2
        self._cond = threading.Condition()
        self._done: dict[int, object] = {}  # sequence number -> item, until it is given out
        self._taken = 0  # items read from the box
        self._given = 0  # items handed to the pipeline
        self._reading = False  # one thread reads the box at a time (order)
        self._ended = False  # END or an error was read (or raised): read no more
        self._closed = False
        self._threads = [threading.Thread(target=self._work, args=(d,), name=f"faceattr-detect-ahead-{i}",
                                          daemon=True) for i, d in enumerate(detectors)]
        for t in self._threads:
            t.start()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        """A frame is being detected: the source is not silent, the stage is working."""
        with self._cond:
            return len(self._done) < self._taken - self._given

    def get(self, timeout: float):
        with self._cond:
            self._cond.wait_for(lambda: self._given in self._done or self._closed, timeout)
            if self._given not in self._done:
                return None
            item = self._done.pop(self._given)
            self._given += 1
            self._cond.notify_all()  # room for one more frame
            return item

    def note(self, index: int, since_detect: int, tracking: bool) -> None:
        """What the pipeline did with frame ``index`` (corrects the plan; see :class:`Plan`)."""
        with self._cond:
            self._plan.note(index, since_detect, tracking)

    def close(self) -> None:
        """Stop reading, close the capture queue (its thread ends) and join the detector threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._box.close()
        deadline = time.monotonic() + JOIN_S
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _work(self, detector) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._ended or (
                    not self._reading and self._taken - self._given < self.depth))
                if self._closed or self._ended:
                    return
                self._reading = True
            item = self._box.get(POLL_S)  # outside the lock: it waits for the capture thread
            with self._cond:
                self._reading = False
                self._cond.notify_all()
                if item is None:
                    continue
                seq = self._taken
                self._taken += 1
                if item is END or isinstance(item, BaseException):
                    self._done[seq] = item
                    self._ended = True
                    continue
                frame, t_captured, dropped = item
                try:
                    want = self._plan.wants(frame)
                except BaseException as e:  # noqa: BLE001 - raised in the frame's place
                    self._done[seq], self._ended = e, True
                    continue
            try:
                detection = self._detect(detector, frame) if want else None
                done = (frame, t_captured, dropped, detection)
            except BaseException as e:  # noqa: BLE001 - raised by the pipeline's thread, in order
                done = e
            with self._cond:
                self._done[seq] = done
                if isinstance(done, BaseException):
                    self._ended = True
                self._cond.notify_all()

    @staticmethod
    def _detect(detector, frame: Frame) -> tuple[Faces, float]:
        t = time.perf_counter()
        faces = detector(frame.image_bgr, pad=still_pad(frame))
        return faces, (time.perf_counter() - t) * 1000.0
