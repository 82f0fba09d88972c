"""App test fixtures: Qt offscreen, settings isolated from the user's, a model, the sample.

Qt runs on its offscreen platform (set before anything imports Qt). Every test gets its
own settings store: ``$FACEATTR_SETTINGS`` points at an INI file in the test's tmp dir
and QSettings' default paths are moved there too, so nothing touches the user's.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import pytest  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from engine.assets import default_model_path, sample_video_path  # noqa: E402


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
