"""Capture and inference off the UI thread.

:class:`PipelineWorker` is a QObject moved to a QThread. Its ``run`` opens the source,
iterates the engine's ``Pipeline.run(source)`` generator through the engine's one
render-and-write loop (:func:`engine.annotate.render_and_write`: each result rendered
once, handed to the recording, :class:`app.recording.Recorder`) and emits it (the UI
thread only turns the rendered image into a QImage). The engine stays Qt-free: this
module is the only bridge.

- Camera -> live mode: the pipeline keeps only the newest frame (latency never builds up).
- File -> file mode: the pipeline hands over every frame in order. Here the worker paces
  *display* to the file's frame rate by sleeping until each frame's media time. Because
  file mode has back-pressure, that sleep also slows the pipeline's reader: when
  inference is faster than the file, the video plays at real speed; when it is slower,
  no sleep happens and the video plays in slow motion, every frame still shown and none
  dropped (dropping to keep up is what live mode is for). After a pause, or after falling
  behind, the pacing clock restarts from the current frame instead of rushing to catch up.

:class:`BackgroundCall` runs one slow function (loading a model, which for TensorRT can
take minutes) in a thread and reports its value or its error sentence.

No hang, no abort: every blocking call in a worker thread has a timeout (opening a
camera or pipe: the opener's; a source that goes silent: the pipeline's stall timeout),
and a stop never waits for an open (it runs in a helper thread). Every started QThread
is kept referenced here until it has ended (:func:`wait_for_threads`): Qt aborts the
process when a running QThread is destroyed, e.g. with a window that was closed while
its worker was still finishing.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from app.errors import error_sentence
from app.recording import Recorder
from engine.annotate import render_and_write
from engine.pipeline import EndReason, Pipeline, RunOutcome
from engine.render import Renderer
from engine.sources import ImageSource, Source, SourceError, open_source
from engine.types import Faces, FrameResult

_POLL_S = 0.05  # how often a waiting worker looks at its stop flag
# The longest a source may take to open. Openers time out on their own (cameras and pipes
# after OPEN_TIMEOUT_S); this is the worker's guard should one not (a file open can wait
# on a lock OpenCV holds while another open hangs).
OPEN_GUARD_S = 20.0
MAX_FRAMES_IN_FLIGHT = 2  # rendered frames queued for the UI; beyond that the display skips
BEHIND_RESET_S = 0.25  # pacing: this far behind the file's clock, restart the clock


@dataclass(frozen=True)
class SourceInfo:
    source_id: str
    is_live: bool
    fps: float
    size_wh: tuple[int, int]
    frame_count: int | None
    stills: bool = False  # an image or a folder of images (each its own scene)


@dataclass(frozen=True, eq=False)
class ShownFrame:
    """A result and its rendered image, as the UI receives them."""

    result: FrameResult
    image_bgr: np.ndarray
    display_skipped: int  # frames the UI was too busy to show since the previous one


class PipelineWorker(QObject):
    """Plays one source through one pipeline. Create, move to a QThread, call ``run``."""

    opened = Signal(object)  # SourceInfo
    result = Signal(object)  # ShownFrame
    error = Signal(str)  # one sentence; the run ends after it
    recording = Signal(str, str)  # ('started' | 'saved' | 'failed', path or sentence)
    finished = Signal(object)  # RunOutcome: how the run ended (a value, never a message to parse)

    def __init__(self, pipeline: Pipeline, source_spec, loop: bool = False, pace: bool = True,
                 renderer: Renderer | None = None,
                 opener: Callable[..., Source] = open_source, open_guard_s: float = OPEN_GUARD_S,
                 start_frame: int = 0, start_paused: bool = False, speed: float = 1.0) -> None:
        """``start_frame``: where a file or folder starts (a seek); ``start_paused``: show the
        first frame, then pause (a seek or step while paused); ``speed``: the pace of a file
        relative to its own frame rate. ``renderer`` may be replaced at any time (the View
        menu): each frame is drawn with the one in effect."""
        super().__init__()
        self.pipeline = pipeline
        self.source_spec = source_spec
        self.loop = loop
        self.pace = pace
        self.renderer = renderer or Renderer()
        self.start_frame = start_frame
        self.speed = speed
        self._pause_after_emit = start_paused
        self._opener = opener
        self._open_guard_s = open_guard_s
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._lock = threading.RLock()  # pause, step and the frames in flight
        self._in_flight = 0
        self._skipped = 0
        self._recorder = Recorder(self.recording.emit)
        self.source_info: SourceInfo | None = None

    # -- called from the UI thread ----------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._resume.set()

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self._pause_after_emit = False
            (self._resume.clear if paused else self._resume.set)()

    def step(self) -> None:
        """Show the next frame, then pause again."""
        with self._lock:
            self._pause_after_emit = True
            self._resume.set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def frame_shown(self) -> None:
        """The UI has taken one emitted frame (lets the next ones through)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def start_recording(self, path: Path) -> None:
        """Record the annotated stream to ``path`` from the next frame on."""
        self._recorder.start(path)

    def stop_recording(self) -> None:
        self._recorder.stop()

    @property
    def recording_codec(self) -> str:
        """The recording's FourCC ('avc1' is H.264, 'mp4v' MPEG-4 Part 2), '' when none."""
        return self._recorder.codec

    @property
    def recording_path(self) -> Path | None:
        return self._recorder.path

    # -- the worker thread ------------------------------------------------------------

    @Slot()
    def run(self) -> None:
        outcome = RunOutcome(EndReason.STOPPED, str(self.source_spec), 0)
        try:
            outcome = self._play()
        except Exception as e:  # noqa: BLE001 - any failure becomes one sentence, the UI lives on
            why = error_sentence(e)
            outcome = RunOutcome(EndReason.FAILED, str(self.source_spec), 0, why)
            self.error.emit(why)
        finally:
            self._recorder.stop()
            self.finished.emit(outcome)

    def _open(self) -> Source | None:
        """The opened source, or None when stopped first.

        The opener runs in a helper thread so that a stop (another source chosen, the
        window closed) never waits for it: opening a camera or pipe can take up to the
        opener's own timeout. An open still not done after ``open_guard_s`` is given up
        (an error). A source that opens after either is closed by the helper.
        """
        done, lock, box = threading.Event(), threading.Lock(), {}

        def work() -> None:
            try:
                extra = {"start_frame": self.start_frame} if self.start_frame else {}
                outcome = ("source", self._opener(self.source_spec, loop=self.loop, **extra))
            except BaseException as e:  # noqa: BLE001 - handed to the worker
                outcome = ("error", e)
            with lock:
                box["outcome"] = outcome
                abandoned = box.get("abandoned", False)
            done.set()
            if abandoned and outcome[0] == "source":
                outcome[1].close()

        threading.Thread(target=work, name="faceattr-worker-open", daemon=True).start()
        deadline = time.monotonic() + self._open_guard_s
        while not done.wait(_POLL_S):
            stopped, late = self._stop.is_set(), time.monotonic() > deadline
            if stopped or late:
                with lock:
                    if "outcome" not in box:
                        box["abandoned"] = True
                        if stopped:
                            return None
                        spec = self.source_spec
                        label = f"camera {spec}" if isinstance(spec, int) else str(spec)
                        raise SourceError(f"{label}: did not open within {self._open_guard_s:g} s")
                break
        what, value = box["outcome"]
        if what == "error":
            raise value
        if self._stop.is_set():
            value.close()
            return None
        return value

    def _play(self) -> RunOutcome:
        source = self._open()
        if source is None:
            return RunOutcome(EndReason.STOPPED, str(self.source_spec), 0)
        try:
            info = SourceInfo(source.source_id, source.is_live, source.fps, tuple(source.size_wh),
                              source.frame_count, isinstance(source, ImageSource))
            self.source_info = info
            self.opened.emit(info)
            self._recorder.fps = info.fps
            run = self.pipeline.run(source, stop=self._stop)
            with contextlib.closing(run) as results:
                played = self._paced(results, self.pace and not source.is_live)
                render_and_write(played, [self._recorder], self._render, self._show, show=True)
        finally:
            source.close()  # the pipeline closes it too; closing twice is harmless
        if self._stop.is_set() or run.outcome is None:
            return RunOutcome(EndReason.STOPPED, info.source_id, 0)
        return run.outcome

    def _paced(self, results: Iterable[FrameResult], pace: bool) -> Iterator[FrameResult]:
        """``results`` as the user plays them: held while paused, ended by a stop, and (files)
        released at the file's speed."""
        clock: tuple[float, float] | None = None  # (wall time, media time) of the pacing origin
        for result in results:
            if self.paused:
                self._resume.wait()
                clock = None
            if self._stop.is_set():
                return
            if pace:
                clock = self._wait_for_media_time(clock, result.frame.timestamp_s)
            yield result  # rendered, recorded and shown before the generator goes on
            if self.paused:  # hold here, before the next result is asked for: the last
                self._resume.wait()  # frame of a file stays paused instead of ending the run
                clock = None

    def _render(self, image_bgr: np.ndarray, faces: Faces) -> np.ndarray:
        return self.renderer(image_bgr, faces)  # the renderer in effect now (the View menu swaps it)

    def _show(self, result: FrameResult, image_bgr: np.ndarray) -> None:
        with self._lock:  # a step or a paused seek: paused before the frame is seen
            hold = self._pause_after_emit
            if hold:
                self._pause_after_emit = False
                self._resume.clear()
        self._emit(result, image_bgr, force=hold)

    def _wait_for_media_time(self, clock, media_s: float):
        now = time.monotonic()
        if clock is None:
            return now, media_s
        delay = clock[0] + (media_s - clock[1]) / max(0.01, self.speed) - now
        if delay > 0:
            self._stop.wait(delay)
            return clock
        return (now, media_s) if delay < -BEHIND_RESET_S else clock

    def _emit(self, result: FrameResult, image_bgr: np.ndarray, force: bool = False) -> None:
        """Hand the frame to the UI unless it is busy; ``force``: the frame a pause stops on."""
        with self._lock:
            if self._in_flight >= MAX_FRAMES_IN_FLIGHT and not force:
                self._skipped += 1
                return
            self._in_flight += 1
            skipped, self._skipped = self._skipped, 0
        self.result.emit(ShownFrame(result, image_bgr, skipped))


class WorkerThread:
    """A PipelineWorker on its own QThread; :meth:`stop` joins it."""

    def __init__(self, worker: PipelineWorker) -> None:
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName("faceattr-pipeline")
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.run)
        # direct: the UI thread may be blocked in stop() -> wait(), so a queued quit would never run
        worker.finished.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)

    def start(self) -> None:
        self.thread.start()
        _keep_until_ended(self)

    def is_running(self) -> bool:
        return self.thread.isRunning()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Ask the worker to stop and wait for its thread; True when it has ended."""
        self.worker.stop()
        return self.thread.wait(int(timeout_s * 1000))


class BackgroundCall(QObject):
    """Runs ``fn()`` on a QThread; emits ``done(value)`` or ``failed(sentence)``."""

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__()
        self._fn = fn
        self.thread = QThread()
        self.moveToThread(self.thread)
        self.thread.started.connect(self._run)

    def start(self) -> None:
        self.thread.start()
        _keep_until_ended(self)

    @Slot()
    def _run(self) -> None:
        try:
            value = self._fn()
        except Exception as e:  # noqa: BLE001 - reported as one sentence
            self.failed.emit(error_sentence(e))
        else:
            self.done.emit(value)
        finally:
            self.thread.quit()

    def wait(self, timeout_s: float = 60.0) -> bool:
        return self.thread.wait(int(timeout_s * 1000))


# -- threads outlive their owners ---------------------------------------------------------

_started: list = []  # WorkerThread / BackgroundCall objects whose QThread may still run


def _keep_until_ended(owner) -> None:
    """Hold ``owner`` (and so its QThread and worker) until its thread has ended."""
    _started[:] = [o for o in _started if o.thread.isRunning()]
    _started.append(owner)


def running_threads() -> int:
    """How many started threads have not ended yet."""
    return sum(1 for o in _started if o.thread.isRunning())


def wait_for_threads(timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for every started thread to end; True when none runs."""
    deadline = time.monotonic() + timeout_s
    for owner in list(_started):
        owner.thread.wait(max(0, int((deadline - time.monotonic()) * 1000)))
    _started[:] = [o for o in _started if o.thread.isRunning()]
    return not _started
