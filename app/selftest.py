"""``faceattr --self-test``: the whole pipeline, headless, on the bundled sample video.

It is what CI runs on the PyInstaller binary, so it checks what a broken bundle breaks:
dlib's model files, the ONNX model and its description, ONNX Runtime, video decoding,
rendering, and Qt's offscreen platform plugin (a rendered frame is painted by the real
video widget). It prints one line and exits 0 on success, 1 with the reason otherwise.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TextIO

import numpy as np

from app.errors import PROG, error_sentence
from engine.annotate import render_and_write
from engine.assets import default_model_path, sample_video_path
from engine.pipeline import EndReason, Pipeline, PipelineConfig
from engine.tasks import task_kind
from engine.render import Renderer
from engine.sources import open_source
from engine.types import FrameResult

DEFAULT_FRAMES = 60
MIN_FACE_FRAMES = 0.5  # faces must be found in at least this share of the frames


class SelfTestFailure(Exception):
    pass


@dataclass(frozen=True)
class SelfTestResult:
    frames: int
    face_frames: int
    faces: int
    fps: float
    provider: str
    model: str
    source: str

    def line(self) -> str:
        per = self.faces / self.face_frames if self.face_frames else 0.0
        return (f"{PROG} self-test: OK: {self.frames} frames of {self.source}, faces in {self.face_frames} "
                f"({per:.1f} per frame), all labelled; {self.fps:.1f} fps on {self.provider}; "
                f"model {self.model}")


def check_labels(result: FrameResult, spec) -> None:
    """Every face carries every task, with a usable value (landmarks: finite points)."""
    faces = result.faces
    for task in spec.tasks:
        pred = faces.tasks.get(task.name)
        if pred is None or len(pred.value) != len(faces):
            raise SelfTestFailure(f"frame {result.frame.index}: task '{task.name}' is missing for its faces")
        values = pred.points_xy if task_kind(task.kind).has_points else pred.value
        if values is None or not np.all(np.isfinite(values)):
            raise SelfTestFailure(f"frame {result.frame.index}: task '{task.name}' has no finite value")


def _checked(results: Iterable[FrameResult], spec) -> Iterator[FrameResult]:
    """``results``, each checked (:func:`check_labels`) before it is rendered."""
    for result in results:
        check_labels(result, spec)
        yield result


def check_qt(image_bgr: np.ndarray) -> None:
    """Paint ``image_bgr`` with the app's video widget on Qt's offscreen platform and
    check the widget shows it (this fails when a bundle lacks Qt's platform plugins)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import cv2
    from PySide6.QtWidgets import QApplication

    from app.video_view import VideoView, qimage_to_bgr

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else PROG])
    view = VideoView()
    view.resize(480, 360)
    view.set_frame(image_bgr)
    grabbed = qimage_to_bgr(view.grab().toImage())
    r = view.image_rect()
    shown = grabbed[r.y():r.y() + r.height(), r.x():r.x() + r.width()].astype(np.float32)
    expected = cv2.resize(image_bgr, (r.width(), r.height()), interpolation=cv2.INTER_AREA).astype(np.float32)
    view.deleteLater()
    app.processEvents()
    if shown.size == 0 or float(np.abs(shown - expected).mean()) > 12.0:
        raise SelfTestFailure("Qt did not paint the rendered frame (offscreen platform plugin missing?)")


def run_self_test(model_path: Path | None = None, backend: str = "auto", frames: int = DEFAULT_FRAMES,
                  source: Path | None = None, qt: bool = True) -> SelfTestResult:
    source = Path(source) if source else sample_video_path()
    if not source.is_file():
        raise SelfTestFailure(f"{source}: the sample video is missing from this installation")
    pipeline = Pipeline.create(PipelineConfig(model_path=model_path or default_model_path(), backend=backend))
    n = face_frames = faces = 0
    rendered = None

    def seen(result: FrameResult, image_bgr: np.ndarray | None) -> None:
        nonlocal n, face_frames, faces, rendered
        n += 1
        if len(result.faces):
            face_frames += 1
            faces += len(result.faces)
            rendered = image_bgr

    t0 = time.perf_counter()
    run = pipeline.run(open_source(source), live=False)
    with contextlib.closing(run) as results:
        first = itertools.islice(results, max(1, frames))
        render_and_write(_checked(first, pipeline.spec), [], Renderer(), seen, show=True)
    seconds = time.perf_counter() - t0
    if run.outcome is not None and run.outcome.reason is EndReason.TRUNCATED:
        raise SelfTestFailure(run.outcome.detail)
    if n == 0:
        raise SelfTestFailure(f"{source}: no frames decoded")
    if n < frames and n < 10:
        raise SelfTestFailure(f"{source}: only {n} frames decoded")
    if face_frames < MIN_FACE_FRAMES * n:
        raise SelfTestFailure(f"{source}: faces found in only {face_frames} of {n} frames "
                              f"(expected at least {MIN_FACE_FRAMES:.0%})")
    if qt and rendered is not None:
        check_qt(rendered)
    return SelfTestResult(n, face_frames, faces, n / seconds if seconds > 0 else 0.0,
                          pipeline.provider, pipeline.spec.name, source.name)


def self_test_main(model_path: Path | None, backend: str, frames: int, source: Path | None = None,
                   out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        result = run_self_test(model_path, backend, frames, source)
    except Exception as e:  # noqa: BLE001 - the reason in one line
        reason = str(e) if isinstance(e, SelfTestFailure) else error_sentence(e)
        print(f"{PROG} self-test: FAILED: {reason}", file=out)
        return 1
    print(result.line(), file=out)
    return 0
