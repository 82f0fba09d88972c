"""What the GUI remembers between runs, stored with QSettings.

:class:`AppSettings` is a plain frozen value; :func:`load_settings` / :func:`save_settings`
move it in and out of a ``QSettings``. :func:`open_qsettings` picks the store: the
user's native one, or an INI file named by ``$FACEATTR_SETTINGS`` (tests and portable
installs use it so they never touch the user's settings).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from engine.detect import DETECTORS
from engine.model import BACKENDS
from engine.pipeline import PipelineConfig

ORGANIZATION = "FaceAttr"
APPLICATION = "FaceAttr"
SETTINGS_ENV = "FACEATTR_SETTINGS"
SAMPLE_SOURCE = "sample"  # the bundled sample video (a source spec of its own)
MAX_RECENT = 10
LIVE_MIN_FACE = 60  # px: the window's default smallest face (see AppSettings.min_face)
MIN_FACE_RANGE = (8, 1000)  # px: smallest-face sizes accepted from the store and the command line


def default_record_dir() -> str:
    movies = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MoviesLocation)
    return str(Path(movies or Path.home() / "Videos") / "FaceAttr")


@dataclass(frozen=True)
class AppSettings:
    """The remembered choices. ``model_path`` '' means the default model."""

    # '' (first camera, else the sample), 'sample', 'camera:NAME', or a file or folder path.
    # Changes only when a source the user chose has opened (never to a fallback).
    source: str = ""
    model_path: str = ""
    backend: str = "auto"
    detector: str = PipelineConfig.detector  # the engine's default detector
    upsample: int = 0
    # Live defaults, chosen from the quiet live runs (benchmarks/RESULTS.md, "The window's
    # defaults"): MTCNN (the engine's default detector), a full scan every 3rd frame, O-Net
    # checks of the tracked faces in between (PipelineConfig.region_confirm), faces from 60 px.
    # On 1280x720 with 5 faces of 60-200 px that gave 19.7 fps at 99.7 % recall (HOG with
    # region scans: 9.3 fps, 98.9 %), on the 640x480 sample 26.0 fps at 100 % (HOG: 18.8 fps).
    # The command line keeps engine.detect.DEFAULT_MIN_FACE (40) and detects every frame.
    min_face: int = LIVE_MIN_FACE  # px: the smallest face found (sets the detection scale)
    detect_every: int = 3
    # Backend menu, "Overlap frames": locate each frame while the one before goes through the
    # network (PipelineConfig.overlap_network, the network on 1 thread). Quiet runs: the sample
    # 27.2 -> 29.3 fps (p50 latency 41 -> 56 ms), 1280x720 with 5 faces 18.7 -> 22.7 fps
    # (65 -> 84 ms), 1080p 13.7 -> 15.5 fps: more frames for about half a frame more lag.
    overlap_frames: bool = True
    record_dir: str = ""
    snapshot_dir: str = ""  # '' means next to recordings
    geometry: bytes = b""  # QMainWindow.saveGeometry()
    # View menu: what the overlay shows (engine.render.Renderer's fields)
    hidden_tasks: tuple[str, ...] = ()
    min_confidence: float = 0.0  # below it a value shows as '?'
    show_boxes: bool = True
    show_landmarks: bool = False
    show_track_ids: bool = True
    blur_faces: bool = False
    # Play menu
    speed: float = 1.0
    loop: bool = False  # files start over at their end (the sample always loops)
    recent: tuple[str, ...] = ()  # files and folders opened, newest first

    def replace(self, **changes) -> "AppSettings":
        return replace(self, **changes)


def open_qsettings() -> QSettings:
    """The store to use: an INI file at ``$FACEATTR_SETTINGS`` if set, else the user's."""
    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(ORGANIZATION, APPLICATION)


def _int(value, default: int, lo: int, hi: int) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        return default
    return v if lo <= v <= hi else default


def load_settings(store: QSettings) -> AppSettings:
    """Read the settings; anything missing or invalid falls back to its default."""
    d = AppSettings()

    def text(key: str, default: str) -> str:
        v = store.value(key, default)
        return v if isinstance(v, str) else default

    backend = text("backend", d.backend)
    detector = text("detector", d.detector)
    geometry = store.value("geometry", QByteArray())
    return AppSettings(
        source=text("source", d.source),
        model_path=text("model_path", d.model_path),
        backend=backend if backend in BACKENDS else d.backend,
        detector=detector if detector in DETECTORS else d.detector,
        upsample=_int(store.value("upsample"), d.upsample, 0, 3),
        min_face=_int(store.value("min_face"), d.min_face, *MIN_FACE_RANGE),
        detect_every=_int(store.value("detect_every"), d.detect_every, 1, 100),
        overlap_frames=_bool(store.value("overlap_frames"), d.overlap_frames),
        record_dir=text("record_dir", d.record_dir),
        snapshot_dir=text("snapshot_dir", d.snapshot_dir),
        geometry=bytes(geometry.data()) if isinstance(geometry, QByteArray) else d.geometry,
        hidden_tasks=_names(store.value("hidden_tasks")),
        min_confidence=_float(store.value("min_confidence"), d.min_confidence, 0.0, 1.0),
        show_boxes=_bool(store.value("show_boxes"), d.show_boxes),
        show_landmarks=_bool(store.value("show_landmarks"), d.show_landmarks),
        show_track_ids=_bool(store.value("show_track_ids"), d.show_track_ids),
        blur_faces=_bool(store.value("blur_faces"), d.blur_faces),
        speed=_float(store.value("speed"), d.speed, 0.1, 16.0),
        loop=_bool(store.value("loop"), d.loop),
        recent=_names(store.value("recent"))[:MAX_RECENT],
    )


def _bool(value, default: bool) -> bool:
    """INI files give 'true' / 'false' back as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    return default


def _float(value, default: float, lo: float, hi: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if lo <= v <= hi else default


def _names(value) -> tuple[str, ...]:
    """A list stored by QSettings: a list, one string (a single item), or nothing."""
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, (list, tuple)):
        return tuple(v for v in value if isinstance(v, str) and v)
    return ()


def save_settings(store: QSettings, settings: AppSettings) -> None:
    for f in fields(AppSettings):
        value = getattr(settings, f.name)
        if isinstance(value, bytes):
            value = QByteArray(value)
        elif isinstance(value, tuple):
            value = list(value)
        store.setValue(f.name, value)
    store.sync()
