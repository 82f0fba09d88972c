"""No hang, no abort: a source that goes silent or never opens is an error the window
shows; stopping and closing never wait on it; SIGTERM closes the window properly.

The stuck sources are real: a named pipe nobody writes to (open(2) blocks, as a hung
camera or stream does), and a :class:`~engine.sources.Source` that delivers a few real
frames of the sample, then blocks in its read until the test ends.
"""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest
from PySide6.QtCore import QSettings

from app.settings import load_settings, open_qsettings
from app.worker import PipelineWorker, WorkerThread, wait_for_threads
from engine.pipeline import EndReason, Pipeline, PipelineConfig
from engine.sources import Source, open_source
from engine.types import Frame
from tests.app.conftest import wait_frames

REPO_ROOT = Path(__file__).resolve().parents[2]
STUCK_ID = "camera 0 'Stuck'"


class StallingSource(Source):
    """A few real frames, then a read that never returns (until ``release`` is set)."""

    def __init__(self, frames: list, release: threading.Event) -> None:
        super().__init__()
        self.frames, self.release = frames, release
        self.source_id = STUCK_ID
        self.size_wh = frames[0].shape[1::-1]

    def __iter__(self):
        for i, image in enumerate(self.frames):
            yield Frame(image, i, i / self.fps, self.source_id)
        self.release.wait()  # the driver hangs


@pytest.fixture(scope="module")
def sample_frames(sample_path) -> list:
    cap = cv2.VideoCapture(str(sample_path))
    frames = [cap.read()[1] for _ in range(3)]
    cap.release()
    assert all(f is not None for f in frames)
    return frames


@pytest.fixture
def stuck_opener(sample_frames, monkeypatch):
    """An opener like ``open_source`` whose cameras stall after 3 frames; the pipeline
    waits 0.5 s (not 5) for a stuck capture thread, so these tests stay fast."""
    monkeypatch.setattr("engine.pipeline.CAPTURE_JOIN_S", 0.5)
    release = threading.Event()

    def opener(spec, loop=False, **kw):
        if isinstance(spec, str) and spec.startswith("camera:"):
            return StallingSource(sample_frames, release)
        return open_source(spec, loop=loop, **kw)

    yield opener
    release.set()


@pytest.fixture(scope="module")
def stall_pipeline(tiny_model_path):
    return Pipeline.create(PipelineConfig(model_path=tiny_model_path, backend="cpu", min_face=80,
                                          stall_timeout_s=0.5))


def run_worker(qtbot, worker: PipelineWorker, timeout_ms: int = 15_000) -> tuple[list, list, list]:
    """(results, errors, finished reasons) of a whole run."""
    results, errors = [], []
    worker.result.connect(lambda shown: (results.append(shown), worker.frame_shown()))
    worker.error.connect(errors.append)
    run = WorkerThread(worker)
    with qtbot.waitSignal(worker.finished, timeout=timeout_ms) as finished:
        run.start()
    assert run.stop()
    return results, errors, finished.args


# -- the worker ---------------------------------------------------------------------------

def test_a_source_that_stops_delivering_frames_ends_the_run_with_one_sentence(qtbot, stall_pipeline,
                                                                             stuck_opener):
    results, errors, reason = run_worker(qtbot, PipelineWorker(stall_pipeline, "camera:Stuck", opener=stuck_opener))
    assert len(results) == 3
    assert len(errors) == 1 and errors[0].startswith(f"{STUCK_ID}: stopped delivering frames (none for ")
    assert [(o.reason, o.detail) for o in reason] == [(EndReason.FAILED, errors[0])]


def test_an_open_that_hangs_is_given_up_after_the_open_timeout(qtbot, stall_pipeline, silent_pipe):
    opener = functools.partial(open_source, timeout_s=0.3)
    t0 = time.monotonic()
    results, errors, _ = run_worker(qtbot, PipelineWorker(stall_pipeline, silent_pipe, opener=opener))
    assert time.monotonic() - t0 < 3
    assert results == []
    assert errors == [f"{silent_pipe}: delivered no data within 0.3 s (a pipe nobody writes to?)"]


def test_an_opener_without_a_timeout_of_its_own_is_given_up_by_the_worker(qtbot, stall_pipeline, short_clip):
    release = threading.Event()

    def hanging_opener(spec, loop=False):
        release.wait()  # e.g. waiting on a lock another hung open holds
        return open_source(spec, loop=loop)

    try:
        results, errors, _ = run_worker(qtbot, PipelineWorker(stall_pipeline, short_clip, opener=hanging_opener,
                                                              open_guard_s=0.3))
    finally:
        release.set()
    assert results == [] and errors == [f"{short_clip}: did not open within 0.3 s"]


def test_stopping_never_waits_for_an_open_that_hangs(qtbot, stall_pipeline, silent_pipe):
    worker = PipelineWorker(stall_pipeline, silent_pipe)  # the real opener: gives up after 5 s
    run = WorkerThread(worker)
    run.start()
    qtbot.wait(300)
    assert run.is_running()
    with qtbot.waitSignal(worker.finished, timeout=5_000) as finished:
        t0 = time.monotonic()
        assert run.stop(timeout_s=5)
        stopped_in = time.monotonic() - t0
    assert stopped_in < 1.0 and [o.reason for o in finished.args] == [EndReason.STOPPED]


# -- the window ---------------------------------------------------------------------------

def test_the_window_shows_a_source_that_stopped_delivering_frames_and_stays_usable(make_window, qtbot,
                                                                                  stuck_opener):
    window = make_window(source="sample", opener=stuck_opener, stall_timeout_s=0.5)
    wait_frames(qtbot, window, 1)
    window.play_source("camera:Stuck")
    qtbot.waitUntil(lambda: window.message_label.is_error(), timeout=15_000)
    assert window.message().startswith(f"{STUCK_ID}: stopped delivering frames (none for ")
    assert window.error_box is not None and window.error_box.isVisible()
    assert window.last_shown.result.frame.source_id == STUCK_ID  # its frames were shown
    qtbot.waitUntil(lambda: not window.is_running(), timeout=5_000)
    window.picker.activated.emit(window.picker.findData("sample"))
    wait_frames(qtbot, window, 2)
    assert window.last_shown.result.frame.source_id.endswith("sample.mp4")


def test_the_window_shows_an_open_that_hangs_as_an_error_and_keeps_the_remembered_source(
        make_window, qtbot, silent_pipe):
    window = make_window(source="sample", opener=functools.partial(open_source, timeout_s=0.5))
    wait_frames(qtbot, window, 1)
    window.open_file(silent_pipe)
    qtbot.waitUntil(lambda: window.message_label.is_error(), timeout=10_000)
    assert window.message() == f"{silent_pipe}: delivered no data within 0.5 s (a pipe nobody writes to?)"
    assert load_settings(open_qsettings()).source == "sample"
    assert window.play_action.isEnabled() and not window.is_running()  # ready for the next source


def test_after_an_open_that_hangs_the_sample_still_plays(make_window, qtbot, silent_pipe):
    window = make_window(source="sample", opener=functools.partial(open_source, timeout_s=0.5))
    wait_frames(qtbot, window, 1)
    window.open_file(silent_pipe)
    qtbot.waitUntil(lambda: window.message_label.is_error(), timeout=10_000)
    window.play_source("sample")
    start = window.frames_shown
    qtbot.waitUntil(lambda: window.frames_shown >= start + 2, timeout=5_000)


def test_closing_the_window_while_its_source_hangs_ends_every_thread(make_window, qtbot, stuck_opener):
    window = make_window(source="sample", opener=stuck_opener, stall_timeout_s=60)
    wait_frames(qtbot, window, 1)
    window.play_source("camera:Stuck")
    qtbot.waitUntil(lambda: window.last_shown.result.frame.source_id == STUCK_ID, timeout=15_000)
    qtbot.wait(300)  # now blocked in the read
    assert window.is_running()
    t0 = time.monotonic()
    window.close()
    assert time.monotonic() - t0 < 5 and not window.is_running()
    assert wait_for_threads(5)


# -- the process --------------------------------------------------------------------------

def start_app(args: list[str], ini: Path) -> subprocess.Popen:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "FACEATTR_SETTINGS": str(ini),
           "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ini.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_ini(ini: Path, text: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not (ini.is_file() and text in ini.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{text!r} never saved"
        time.sleep(0.1)


def stored(ini: Path) -> QSettings:
    return QSettings(str(ini), QSettings.Format.IniFormat)


def test_sigterm_closes_the_window_properly_and_exits_143(tmp_path, tiny_model_path):
    ini = tmp_path / "settings.ini"
    proc = start_app(["--model", str(tiny_model_path), "--backend", "cpu", "--source", "sample"], ini)
    wait_for_ini(ini, "source=sample", proc)  # saved once the sample has opened: it plays
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "QThread" not in err
    assert stored(ini).value("geometry") is not None  # saved by the window's close


def test_closing_while_the_source_hangs_in_open_never_aborts(tmp_path, tiny_model_path, silent_pipe):
    """The remembered source is a pipe nobody writes to: the worker is stuck opening it
    when the window closes. Qt would abort ('QThread: Destroyed while thread is still
    running') if the thread were dropped before it ended."""
    ini = tmp_path / "settings.ini"
    store = stored(ini)
    store.setValue("source", str(silent_pipe))
    store.sync()
    proc = start_app(["--model", str(tiny_model_path), "--backend", "cpu"], ini)
    wait_for_ini(ini, "min_face=", proc)  # the model has loaded; the pipe is being opened
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "QThread" not in err
    assert stored(ini).value("source") == str(silent_pipe)  # it never opened: still the remembered one
    assert stored(ini).value("geometry") is not None
