"""One frame through every stage, and a stream of frames through a capture thread.

:meth:`Pipeline.process` runs detect -> align -> model -> track -> smooth on one frame and
times each stage. Detection is a full-frame scan on every ``detect_every``-th frame (or,
with ``background_detect``, in a thread of its own whenever it is free); in between, the
tracked faces' landmarks are refitted in their boxes, and with ``region_scans`` the
detector also runs in regions around them (``engine/region_scan.py``: timed as
'regions', on the frames it runs) to confirm, re-place or drop them.
:meth:`Pipeline.run` feeds it from a :class:`Source`:

- live (cameras, or a file played in real time): a capture thread keeps only the newest
  frame in a one-slot mailbox; frames that arrive while inference is busy replace the
  waiting one and are counted in ``FrameResult.dropped_frames``, so latency never builds up;
- file mode: every frame in order through a bounded queue (the reader waits when
  inference falls behind: back-pressure, bounded memory);
- pipelined file mode (``run(..., pipelined=True)``, what ``engine.annotate`` uses):
  detector threads detect the next frames while this one is aligned, run through the
  network, tracked and smoothed (``engine/detect_ahead.py``); every frame still gets its
  own full detection, so the results are those of file mode, frame for frame.

Inference runs in the thread that iterates ``run``; no stage knows about threads. With
``overlap_network`` a frame's first half (:meth:`Pipeline._locate`: scene, detection,
landmarks, chips, tracking) runs on a thread of its own while the frame before goes through
the second half (:meth:`Pipeline._label`: network, smoothing) in the iterating thread, which
delivers it at once; results stay frame for frame.

Scenes: a face's track and its smoothed labels never cross from one scene to the next.
A new scene starts at a source's first frame, at every still (each photo of a folder is
its own scene) and at a shot cut (``engine.scenes.ShotCutDetector``); within a scene the
tracker also refuses box matches whose appearance signature says the face is someone
else (``engine.scenes.chip_signatures``).

A source that stops delivering frames (a camera hung in its driver, a pipe whose writer
went quiet) ends the run with a :class:`SourceError` after ``stall_timeout_s``.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.align import Aligner
from engine.background_detect import BackgroundDetector, merge_detections
from engine.capture import END, POLL_S, FrameQueue, Mailbox, capture
from engine.detect import DEFAULT_MIN_FACE, can_confirm, create_detector
from engine.detect_ahead import DETECT_THREADS, DetectAhead, Plan, clone_detector, still_pad
from engine.model import FaceAttrModel
from engine.modelspec import ModelSpec
from engine.region_scan import DROP_AFTER_MISSES, REGION_FACE_RATIO, REGION_MARGIN, RegionScanner
from engine.runs import EndReason, PipelineRun, RunOutcome  # re-exported: callers import them from here
from engine.scenes import ShotCutDetector, chip_signatures
from engine.smooth import TaskSmoother
from engine.sources import Source, SourceError
from engine.track import IouTracker
from engine.types import Faces, Frame, FrameResult

FILE_QUEUE_FRAMES = 8
# The per-stage timing keys of FrameResult.timings_ms, in pipeline order (a frame carries the
# ones that ran on it; "total" covers them all).
STAGES = ("scene", "detect", "regions", "align", "model", "track", "smooth")
CAPTURE_JOIN_S = 5.0  # longest wait for a capture thread stuck in a read (a hung camera)


@dataclass(frozen=True)
class PipelineConfig:
    model_path: Path
    backend: str = "auto"  # auto | tensorrt | cuda | cpu
    # engine.detect.DETECTORS. MTCNN: on the CORAL, UTKFace and MTFL test photos it found more
    # faces than HOG (3286 / 5089 / 2960 against 3229 / 4982 / 2770) with the same accuracy on
    # the faces both found, at about a quarter of HOG's cost on HD frames (benchmarks/RESULTS.md)
    detector: str = "mtcnn"
    upsample: int = 0
    min_face: int = DEFAULT_MIN_FACE  # px: the smallest face to find (sets the detection scale)
    detect_every: int = 1  # full-frame detection on every k-th frame; region scans (or tracking) in between
    smoothing: float = 0.6  # weight of the past in each track's running average (0 = none)
    stall_timeout_s: float = 5.0  # a source that delivers no frame this long has stopped
    shot_cuts: bool = True  # start a new scene at hard cuts (frame-difference test)
    precision: str = "auto"  # auto | int8 | fp32 (FaceAttrModel.load: auto = the .int8.onnx sibling on CPU)
    # ONNX Runtime intra-op threads (None: its default, all cores). With detector threads busy
    # (pipelined file runs, background_detect) 1 keeps the network off the detectors' core.
    model_threads: int | None = None
    background_detect: bool = False  # detect in a thread of its own; track every frame (see below)
    # Between full scans, detect in regions around the tracked faces (engine/region_scan.py):
    region_scans: bool = True
    region_margin: float = REGION_MARGIN  # a region: the face's box grown by this part of its size per side
    region_face_ratio: float = REGION_FACE_RATIO  # find faces down to this part of the tracked one (0: min_face)
    region_drop_after: int = DROP_AFTER_MISSES  # frames a tracked face may go unfound before it is dropped
    # Between full scans, check the tracked boxes with the detector's own confirm() instead of
    # searching regions (MTCNN's O-Net: ~5 ms for five faces instead of ~18). None: when it can.
    region_confirm: bool | None = None
    detect_threads: int = DETECT_THREADS  # pipelined file runs: detector threads, each with its own detector
    # Runs (Pipeline.run): frame N+1 is located (scene, detection, landmarks, chips, tracking) on a
    # thread of its own while frame N goes through the network and smoothing. Same results, frame
    # for frame; ONNX Runtime and OpenCV release the GIL, so the two halves share both cores.
    overlap_network: bool = False


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class Pipeline:
    """The stages for one model; reuse it across sources (call :meth:`reset` in between)."""

    def __init__(self, config: PipelineConfig, model: FaceAttrModel, detector, aligner: Aligner) -> None:
        self.config = config
        self.model = model
        self.detector = detector
        self.aligner = aligner
        self.tracker = IouTracker()
        self.smoother = TaskSmoother(config.smoothing, model.spec)
        self.cuts = ShotCutDetector()
        self._since_detect = 0
        self._first = True  # the next frame starts a scene
        self.background: BackgroundDetector | None = None  # engine/background_detect.py, when configured
        self.regions: RegionScanner | None = (
            RegionScanner(detector, config.min_face, config.region_margin, config.region_face_ratio,
                          config.region_drop_after,
                          can_confirm(detector) if config.region_confirm is None else config.region_confirm)
            if config.region_scans else None)
        # pipelined runs' detectors: copies of ``detector`` (or made by make_detector), kept across runs
        self.make_detector = lambda: create_detector(config.detector, config.upsample, config.min_face)
        self._ahead_detectors: list = []

    @classmethod
    def create(cls, config: PipelineConfig) -> "Pipeline":
        """Load the model and detector; raises ModelLoadError / BackendUnavailableError / ValueError."""
        model = FaceAttrModel.load(config.model_path, backend=config.backend, intra_op_threads=config.model_threads,
                                   precision=config.precision)
        detector = create_detector(config.detector, config.upsample, config.min_face)
        aligner = Aligner.create(model.spec.alignment.chip_size, model.spec.alignment.padding)
        pipeline = cls(config, model, detector, aligner)
        if config.background_detect:
            pipeline.background = BackgroundDetector(
                lambda: create_detector(config.detector, config.upsample, config.min_face))
        return pipeline

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    @property
    def provider(self) -> str:
        return self.model.provider

    @property
    def notes(self) -> tuple[str, ...]:
        return self.model.notes

    def reset(self) -> None:
        """Forget tracks, ids and smoothed values (a new source starts from scratch)."""
        self.tracker.reset()
        self.smoother.reset()
        self.cuts.reset()
        self._since_detect = 0
        self._first = True
        if self.background is not None:
            self.background.reset()
        if self.regions is not None:
            self.regions.forget_misses()

    def close(self) -> None:
        """Stop the background detector's thread, if there is one."""
        if self.background is not None:
            self.background.close()

    def _new_scene(self) -> None:
        """End every track (ids keep counting): nothing carries over to the next scene (the
        smoothed labels are forgotten by :meth:`_label`, on the network's side)."""
        self.tracker.cut()
        self._since_detect = 0
        if self.regions is not None:
            self.regions.forget_misses()

    # -- one frame ---------------------------------------------------------------------

    def process(self, frame: Frame, detection: tuple[Faces, float] | None = None) -> FrameResult:
        """``detection``: this frame's full-frame detection (faces, ms), made ahead by a
        detector thread (``engine/detect_ahead.py``); used when the frame is scanned in full."""
        return self._label(self._locate(frame, detection))

    def _locate(self, frame: Frame, detection: tuple[Faces, float] | None = None) -> "_Located":
        """The first half of a frame: scene, detection or region checks, landmarks and chips,
        tracking. Everything that the next frame's first half depends on is done here."""
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        t = time.perf_counter()
        cut = self.config.shot_cuts and not frame.still and self.cuts(frame.image_bgr)
        new_scene = self._first or frame.still or cut
        self._first = False
        if new_scene:
            self._new_scene()
        timings["scene"] = _ms(t)
        previous = self.tracker.predict()
        t = time.perf_counter()
        image, regions = frame.image_bgr, self.regions
        if self.background is not None and not new_scene and not frame.still:
            # the detector thread takes this frame if it is free; we go on with the tracks
            self.background.submit(frame.index, image)
            done = self.background.take(frame.index)
            detect = done is not None
            if detect:  # the thread may be free now (a wait for a late scan): start on this frame
                self.background.submit(frame.index, image)
            timings["detect"] = _ms(t)
            if regions is not None:  # region scans judge the tracks; a full scan adds faces
                t = time.perf_counter()
                faces = regions(image, previous)
                if done is not None:
                    faces = regions.add_found(image, faces, done[1])
                timings["regions"] = _ms(t)
            else:
                faces = merge_detections(previous, done[1]) if detect else previous
            followed = faces
        else:
            if new_scene and self.background is not None:
                self.background.reset()
            detect = (new_scene or self.config.detect_every <= 1 or len(previous) == 0
                      or self._since_detect >= self.config.detect_every - 1)
            if detect:
                if detection is None:
                    faces = self.detector(image, pad=still_pad(frame))
                    timings["detect"] = _ms(t)
                else:  # detected ahead, on another thread: its own cost
                    faces, timings["detect"] = detection
                followed = None
                if regions is not None:
                    regions.forget_misses()
            elif regions is not None:
                timings["detect"] = _ms(t)
                t = time.perf_counter()
                faces = followed = regions(image, previous)
                timings["regions"] = _ms(t)
            else:
                faces = followed = previous
                timings["detect"] = _ms(t)
        self._since_detect = 0 if detect else self._since_detect + 1

        t = time.perf_counter()
        faces, chips = self.aligner(frame.image_bgr, faces)
        if followed is not None:  # rows with the last frame's landmarks: move them with the face
            faces = _follow_landmarks(followed, faces)
        timings["align"] = _ms(t)

        # the tracker judges by boxes and chip signatures, never by the network's labels, so it
        # runs before the network: the next frame's first half can start while this one is labelled
        t = time.perf_counter()
        faces = self.tracker(faces, _judgeable(chip_signatures(chips), faces, frame.size_wh))
        if "regions" in timings:  # a face its region scan missed and that no longer looks itself is gone
            keep = regions.settle(faces.track_id)
            if not keep.all():
                self.tracker.end(faces.track_id[~keep])
                faces, chips = faces.take(keep), chips[keep]
        timings["track"] = _ms(t)
        return _Located(frame, faces, chips, timings, _ms(t_start), detect, new_scene)

    def _label(self, located: "_Located") -> FrameResult:
        """The second half: the network on every face of the frame as one batch, then the
        smoothing of each track's labels. Touches only the model and the smoother, never what
        :meth:`_locate` does, so the two may run at once on two frames (``overlap_network``)."""
        t_start = time.perf_counter()
        timings = dict(located.timings_ms)
        if located.new_scene:
            self.smoother.reset()
        faces = self.model(located.faces, located.chips)
        timings["model"] = _ms(t_start)
        t = time.perf_counter()
        faces = self.smoother(faces)
        timings["smooth"] = _ms(t)
        timings["total"] = located.total_ms + _ms(t_start)
        return FrameResult(frame=located.frame, faces=faces, timings_ms=timings, detected=located.detected,
                           new_scene=located.new_scene)

    # -- a stream ----------------------------------------------------------------------

    def run(self, source: Source, live: bool | None = None,
            stop: threading.Event | None = None, pipelined: bool = False) -> "PipelineRun":
        """Results for ``source``'s frames, as an iterator; closes ``source`` when done.

        ``live`` defaults to ``source.is_live``. A file run live is paced at its own frame
        rate (as if a camera were filming it). Stops when the source ends, when ``stop`` is
        set, or when the run is closed; in every case the capture thread is joined and the
        source closed before iteration ends (a read hung for longer than CAPTURE_JOIN_S is
        left to its thread, which closes the source when the read returns). Tracks start
        afresh (:meth:`reset`); one run at a time. Each result's ``timings_ms`` carries
        'latency': ms from the frame leaving the source to its result being ready.
        Read errors, and a source silent for ``stall_timeout_s``, are raised as
        :class:`SourceError`. How the run ended is the returned run's ``outcome``.

        ``pipelined`` (file mode only; not with ``background_detect``): frames are detected
        ahead on ``config.detect_threads`` threads of their own (``engine/detect_ahead.py``);
        the results are the same, frame for frame. A detector thread's error is raised in
        the frame's place; ending the run joins those threads too.
        """
        run = PipelineRun(source.source_id)
        run._frames = self._frames(source, live, stop or threading.Event(), run, pipelined)
        return run

    def _detectors_ahead(self) -> list:
        n = max(1, int(self.config.detect_threads))
        self._ahead_detectors += [clone_detector(self.detector, self.make_detector)
                                  for _ in range(n - len(self._ahead_detectors))]
        return self._ahead_detectors[:n]

    def _frames(self, source: Source, live: bool | None, stop: threading.Event,
                run: "PipelineRun", pipelined: bool = False) -> Iterator[FrameResult]:
        live = source.is_live if live is None else live
        box: Mailbox | FrameQueue = Mailbox() if live else FrameQueue(FILE_QUEUE_FRAMES)
        pace = live and not source.is_live
        self.reset()
        ahead = None
        if pipelined and not live and self.background is None:
            try:
                ahead = DetectAhead(box, self._detectors_ahead(), Plan(self.config.detect_every, self.config.shot_cuts))
            except BaseException:
                source.close()
                raise
        feed = ahead or box
        thread = threading.Thread(target=capture, args=(source, box, pace), name="faceattr-capture",
                                  daemon=True)
        thread.start()
        stall_s = self.config.stall_timeout_s
        join_s = CAPTURE_JOIN_S
        frames = 0
        reason, detail = EndReason.STOPPED, None
        # overlap_network: each frame is located on this thread while the frame before is labelled
        # in the caller's, so a result is delivered as soon as its labels are, not a frame later
        locator = (ThreadPoolExecutor(1, thread_name_prefix="faceattr-locate")
                   if self.config.overlap_network else None)
        current = None  # (_Located, t_captured, dropped): located, to be labelled next

        def locate(frame: Frame, *detection) -> _Located:
            located = self._locate(frame, *detection)
            if ahead is not None:  # what this frame did: the plan of the frames ahead follows it
                ahead.note(frame.index, self._since_detect, len(self.tracker.predict()) > 0)
            return located

        def finish(located: _Located, t_captured: float, dropped: int) -> FrameResult:
            nonlocal frames
            result = self._label(located)
            frames += 1
            timings = {**result.timings_ms, "latency": _ms(t_captured)}
            return dataclasses.replace(result, timings_ms=timings, dropped_frames=dropped)

        def finish_current() -> Iterator[FrameResult]:
            """Label and deliver the frame located last, if one is waiting."""
            nonlocal current
            if current is not None:
                located, current = current, None
                yield finish(*located)

        try:
            waiting_since = time.monotonic()
            while not stop.is_set():
                # with a frame located, do not wait for the next one: label and deliver it first
                item = feed.get(0.0 if current is not None else POLL_S)
                if item is None and current is not None:
                    yield from finish_current()
                    waiting_since = time.monotonic()
                    continue
                if item is None:
                    if ahead is not None and ahead.busy:  # a frame is being detected: not a stall
                        waiting_since = time.monotonic()
                    waited = time.monotonic() - waiting_since
                    if stall_s and waited > stall_s:
                        join_s = 0.2  # the capture thread is stuck in a read: do not wait for it
                        raise SourceError(f"{source.source_id}: stopped delivering frames "
                                          f"(none for {waited:.0f} s)")
                    continue
                if item is END:
                    yield from finish_current()
                    reason = EndReason.FINISHED
                    break
                if isinstance(item, BaseException):
                    raise item
                frame, t_captured, dropped, *detection = item
                if locator is None:
                    yield finish(locate(frame, *detection), t_captured, dropped)
                else:  # this frame on the locate thread; meanwhile the one before through the network
                    future = locator.submit(locate, frame, *detection)
                    yield from finish_current()
                    current = (future.result(), t_captured, dropped)
                waiting_since = time.monotonic()
        except Exception as e:  # a read error, a silent source, or a stage's (a detector thread's) error
            reason, detail = EndReason.FAILED, str(e) if isinstance(e, SourceError) else f"{type(e).__name__}: {e}"
            raise
        finally:
            if locator is not None:  # a frame still being located is dropped with the run
                locator.shutdown(wait=True)
            feed.close()  # the detect-ahead stage closes the box and joins its threads
            thread.join(join_s)
            if not thread.is_alive():  # else a read hangs: the thread closes the source when it returns
                source.close()
            if reason is EndReason.FINISHED and source.end_reason:
                reason, detail = EndReason.TRUNCATED, source.end_reason
            run.outcome = RunOutcome(reason, source.source_id, frames, detail, tuple(source.warnings),
                                     tuple(getattr(source, "unreadable", ())))


@dataclass(frozen=True)
class _Located:
    """A frame between :meth:`Pipeline._locate` and :meth:`Pipeline._label`."""

    frame: Frame
    faces: Faces  # boxes, landmarks and track ids; no labels yet
    chips: np.ndarray  # [N, size, size, 3] uint8 RGB, one per face row
    timings_ms: dict[str, float]
    total_ms: float
    detected: bool
    new_scene: bool


def _judgeable(signatures: np.ndarray, faces: Faces, size_wh: tuple[int, int]) -> np.ndarray:
    """Signatures of faces wholly inside the frame; zero rows for faces cut by its border.

    A face entering or leaving the frame changes its chip every frame (more or less of it is
    black), which the appearance test would read as a change of person (on the sample video
    every refusal was such a face)."""
    w, h = size_wh
    x0, y0, x1, y1 = faces.xyxy.T if len(faces) else (np.zeros(0),) * 4
    inside = (x0 >= 0) & (y0 >= 0) & (x1 <= w) & (y1 <= h)
    return np.where(inside[:, None], signatures, 0.0).astype(np.float32)


def _centres(landmarks_xy: np.ndarray) -> np.ndarray:
    """[N, 2] mean of each face's landmarks; NaN for a face without any (a new detection)."""
    finite = np.isfinite(landmarks_xy).all(axis=2)
    count = finite.sum(axis=1)[:, None]
    total = np.where(finite[..., None], landmarks_xy, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _follow_landmarks(previous: Faces, faces: Faces) -> Faces:
    """Move tracked boxes with their faces: shift each box by how far its landmarks moved.

    On frames that skip detection the boxes are last frame's; the landmark predictor,
    run inside them, finds where the face is now.
    """
    if len(faces) == 0:
        return faces
    old = _centres(previous.landmarks_xy)
    new = _centres(faces.landmarks_xy)
    shift = np.where(np.isfinite(old) & np.isfinite(new), new - old, 0.0).astype(np.float32)
    return faces.replace(xyxy=faces.xyxy + np.concatenate([shift, shift], axis=1))
