"""The source combo box: cameras by name, the sample video, opened files and folders, "Open file…".

Each entry carries a *source spec* string, the form the settings remember:
'camera:NAME', 'sample', or a file or folder path. :func:`resolve_spec` turns one into
what ``engine.sources.open_source`` takes (a folder plays as independent images).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QWidget

from app.settings import SAMPLE_SOURCE
from engine.assets import sample_video_path
from engine.sources import CAMERA_PREFIX, CameraInfo

OPEN_FILE = "<open file>"


def camera_spec(camera: CameraInfo) -> str:
    return f"{CAMERA_PREFIX}{camera.name}"


def find_camera(spec: str, cameras: list[CameraInfo]) -> CameraInfo | None:
    """The camera a 'camera:NAME' spec means: by name, else (a number) by index."""
    name = spec[len(CAMERA_PREFIX):]
    match = [c for c in cameras if c.name == name] or [c for c in cameras if name.isdigit() and c.index == int(name)]
    return match[0] if match else None


def resolve_spec(spec: str, cameras: list[CameraInfo]) -> tuple[object, bool]:
    """(what to open, loop?) for a source spec. The sample loops; a camera found by name
    opens by index (two cameras of the same model share a name)."""
    if spec == SAMPLE_SOURCE:
        return sample_video_path(), True
    if spec.startswith(CAMERA_PREFIX):
        camera = find_camera(spec, cameras)
        return (camera.index if camera else spec), False
    return Path(spec), False


def unavailable_reason(spec: str, cameras: list[CameraInfo]) -> str | None:
    """Why a remembered source cannot be played now (None: it can be tried).

    Only what can be seen without opening it: a camera not connected, a path gone.
    A file or folder that exists (or a named pipe) may still fail to open; that is
    reported when it does.
    """
    if not spec or spec == OPEN_FILE:
        return "no source was chosen yet"
    if spec == SAMPLE_SOURCE:
        return None
    if spec.startswith(CAMERA_PREFIX):
        if find_camera(spec, cameras) is not None:
            return None
        return f"camera '{spec[len(CAMERA_PREFIX):]}' is not connected"
    return None if Path(spec).exists() else f"{spec} no longer exists"


def is_available(spec: str, cameras: list[CameraInfo]) -> bool:
    """Whether a remembered source can be tried now: a connected camera, the sample, an
    existing file or folder."""
    return unavailable_reason(spec, cameras) is None


def display_name(spec: str) -> str:
    if spec == SAMPLE_SOURCE:
        return "Sample video"
    if spec.startswith(CAMERA_PREFIX):
        return spec[len(CAMERA_PREFIX):]
    return Path(spec).name


def entry_text(spec: str) -> str:
    """The combo box's text for a spec it has no entry for: 'File: name', 'Folder: name'."""
    if spec.startswith(CAMERA_PREFIX):
        return f"Camera: {display_name(spec)}"
    return f"{'Folder' if Path(spec).is_dir() else 'File'}: {display_name(spec)}"


class SourcePicker(QComboBox):
    """Emits ``chosen(spec)`` when the user picks a source, ``open_requested`` for "Open file…"."""

    chosen = Signal(str)
    open_requested = Signal()

    def __init__(self, cameras: list[CameraInfo], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumContentsLength(22)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setToolTip("Source: a camera, the sample video, a file, or a folder of images")
        for camera in cameras:
            self.addItem(f"Camera: {camera.name}", camera_spec(camera))
        self.addItem("Sample video", SAMPLE_SOURCE)
        self.addItem("Open file…", OPEN_FILE)
        self._current = self.itemData(0)
        self.activated.connect(self._on_activated)

    def specs(self) -> list[str]:
        return [self.itemData(i) for i in range(self.count())]

    def current_spec(self) -> str:
        return self._current

    def show_spec(self, spec: str) -> None:
        """Select ``spec`` (adding a file or folder entry for it if needed) without emitting ``chosen``."""
        index = self.findData(spec)
        if index < 0:
            index = self.findData(OPEN_FILE)
            self.insertItem(index, entry_text(spec), spec)
            self.setItemData(index, spec, Qt.ItemDataRole.ToolTipRole)  # the full path
        self._current = spec
        self.setCurrentIndex(index)

    def _on_activated(self, index: int) -> None:
        spec = self.itemData(index)
        if spec == OPEN_FILE:
            self.setCurrentIndex(max(0, self.findData(self._current)))
            self.open_requested.emit()
            return
        self._current = spec
        self.chosen.emit(spec)
