"""App test fixtures: Qt offscreen, settings isolated from the user's, a model, the sample,
started windows, a folder of photos, a named pipe nobody writes to.

Qt runs on its offscreen platform (set before anything imports Qt). Every test gets its
own settings store: ``$FACEATTR_SETTINGS`` points at an INI file in the test's tmp dir
and QSettings' default paths are moved there too, so nothing touches the user's.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import stat  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import pytest  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from engine.assets import default_model_path, sample_video_path  # noqa: E402

FRAME_TIMEOUT_MS = 30_000


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch) -> Path:
    """The INI file this test's settings go to (never the user's)."""
    path = tmp_path / "faceattr-settings.ini"
    monkeypatch.setenv("FACEATTR_SETTINGS", str(path))
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
            QSettings.setPath(fmt, scope, str(tmp_path / "qsettings"))
    return path


@pytest.fixture(scope="session")
def app_model_path(tiny_model_path) -> Path:
    """The shipped default model once it exists, else the tiny real fixture model."""
    path = default_model_path()
    return path if path.is_file() else tiny_model_path


@pytest.fixture(scope="session")
def sample_path() -> Path:
    path = sample_video_path()
    if not path.is_file():
        pytest.skip(f"the bundled sample video {path} is missing")
    return path


@pytest.fixture(scope="session")
def short_clip(sample_path, tmp_path_factory) -> Path:
    """The first 30 frames of the sample (real faces), for tests that read every frame."""
    out = tmp_path_factory.mktemp("clips") / "sample-30.mp4"
    cap = cv2.VideoCapture(str(sample_path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while len(frames) < 30:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    assert frames, f"cannot read {sample_path}"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for image in frames:
        writer.write(image)
    writer.release()
    return out


@pytest.fixture(scope="session")
def truncated_clip(sample_path, tmp_path_factory) -> Path:
    """40 sample frames written by the engine's writer (index in front), cut at half its bytes:
    the first frames decode, then the file breaks."""
    from engine.write import VideoWriter

    folder = tmp_path_factory.mktemp("truncated")
    cap = cv2.VideoCapture(str(sample_path))
    with VideoWriter(folder / "whole.mp4", 30.0, (640, 480)) as writer:
        for _ in range(40):
            ok, image = cap.read()
            assert ok, f"cannot read {sample_path}"
            writer.write(image)
    cap.release()
    data = (folder / "whole.mp4").read_bytes()
    out = folder / "truncated.mp4"
    out.write_bytes(data[:len(data) // 2])
    return out


@pytest.fixture
def text_named_mp4(tmp_path) -> Path:
    """A text file pretending to be a video."""
    path = tmp_path / "not-a-video.mp4"
    path.write_text("this is not a video, just text\n" * 20)
    return path


@pytest.fixture
def make_window(qtbot, app_model_path, sample_path):
    """``make_window(cameras=(), opener=..., stall_timeout_s=..., **settings)``: a shown,
    started window on the app model (no cameras unless given)."""
    from app.main_window import MainWindow
    from app.settings import AppSettings, open_qsettings

    windows = []

    def make(cameras=(), start=True, **changes):
        engine = {k: changes.pop(k) for k in ("opener", "stall_timeout_s") if k in changes}
        settings = AppSettings(model_path=str(app_model_path), backend="cpu").replace(**changes)
        window = MainWindow(open_qsettings(), settings, list(cameras), **engine)
        qtbot.addWidget(window)
        window.show()
        if start:
            window.start()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
        assert not window.is_running()


def wait_frames(qtbot, window, count: int = 3) -> None:
    start = window.frames_shown
    qtbot.waitUntil(lambda: window.frames_shown >= start + count, timeout=FRAME_TIMEOUT_MS)


@pytest.fixture(scope="session")
def photo_folder(sample_path, tmp_path_factory) -> Path:
    """Three photos (JPEG) of the same person a few frames apart, taken from the sample:
    played as a video they would be one track; as a folder each is its own scene."""
    folder = tmp_path_factory.mktemp("photos") / "portraits"
    folder.mkdir()
    cap = cv2.VideoCapture(str(sample_path))
    for i in range(3):
        for _ in range(5):
            ok, image = cap.read()
            assert ok, f"cannot read {sample_path}"
        cv2.imwrite(str(folder / f"photo-{i}.jpg"), image)
    cap.release()
    return folder


@pytest.fixture
def silent_pipe(tmp_path):
    """A named pipe nobody writes to: opening it blocks (as a hung camera or stream would).
    Afterwards a reader still blocked in open(2) is let go (a writer opens and closes it)."""
    path = tmp_path / "silent.fifo"
    os.mkfifo(path)
    assert stat.S_ISFIFO(path.stat().st_mode)
    yield path
    for _ in range(20):  # until no reader is left waiting (ENXIO: nobody has it open to read)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            break
