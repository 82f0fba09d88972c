"""The pipeline worker: file mode paced to the file's speed, every frame in order; errors as signals."""
from __future__ import annotations

import threading
import time

import pytest

from app.worker import PipelineWorker, WorkerThread
from engine.pipeline import EndReason, Pipeline, PipelineConfig


@pytest.fixture(scope="module")
def fast_pipeline(tiny_model_path):
    """Only faces of 80 px and up are looked for: detection runs on a reduced copy and
    inference is cheap, so the file's own clock (not the machine) sets the pace."""
    return Pipeline.create(PipelineConfig(model_path=tiny_model_path, backend="cpu", min_face=80))


def collect(worker: PipelineWorker):
    """Results as (wall time, frame index, media time), gathered in the worker's thread."""
    seen, lock = [], threading.Lock()

    def on_result(shown):
        with lock:
            seen.append((time.monotonic(), shown.result.frame.index, shown.result.frame.timestamp_s))
        worker.frame_shown()

    worker.result.connect(on_result)  # a plain function runs in the emitting (worker) thread
    return seen


def test_file_mode_shows_every_frame_in_order_at_the_files_speed(qtbot, fast_pipeline, short_clip):
    worker = PipelineWorker(fast_pipeline, short_clip)
    seen = collect(worker)
    run = WorkerThread(worker)
    with qtbot.waitSignal(worker.finished, timeout=30_000) as finished:
        run.start()
    assert run.stop()
    (outcome,) = finished.args  # a value, not a message to parse
    assert (outcome.reason, outcome.source_id, outcome.frames) == (EndReason.FINISHED, str(short_clip), 30)
    assert [index for _, index, _ in seen] == list(range(30))
    wall = seen[-1][0] - seen[0][0]
    media = seen[-1][2] - seen[0][2]
    assert media > 0.9 and wall >= 0.9 * media  # not faster than real time


def test_a_bad_source_is_reported_as_a_signal_not_raised(qtbot, fast_pipeline, text_named_mp4):
    worker = PipelineWorker(fast_pipeline, text_named_mp4)
    errors = []
    worker.error.connect(errors.append)
    run = WorkerThread(worker)
    with qtbot.waitSignal(worker.finished, timeout=10_000) as finished:
        run.start()
    assert run.stop()
    assert errors and errors[0].startswith(f"{text_named_mp4}: not a readable video")
    assert [(o.reason, o.detail) for o in finished.args] == [(EndReason.FAILED, errors[0])]


def test_stop_ends_a_looping_source_and_joins_the_thread(qtbot, fast_pipeline, short_clip):
    worker = PipelineWorker(fast_pipeline, short_clip, loop=True)
    seen = collect(worker)
    run = WorkerThread(worker)
    run.start()
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=10_000)
    with qtbot.waitSignal(worker.finished, timeout=10_000) as finished:
        assert run.stop()
    assert [o.reason for o in finished.args] == [EndReason.STOPPED] and not run.is_running()


def test_emitting_frames_keeps_the_interpreter_alive_over_long_runs(qtbot):
    """PySide6 6.12.0 drops a reference to True on every emit of a Python-defined Signal:
    after a few thousand frames (minutes of video) the interpreter aborts with
    'bool_dealloc'. The worker emits one signal per frame, so the Qt binding must not."""
    import sys

    from PySide6.QtCore import QObject, Signal

    class Emitter(QObject):
        result = Signal(object)

    received = []
    emitter = Emitter()
    emitter.result.connect(received.append)
    before = sys.getrefcount(True)
    for i in range(500):
        emitter.result.emit(i)
    assert len(received) == 500
    assert sys.getrefcount(True) - before > -50, "this PySide6 leaks a reference to True per emit"
