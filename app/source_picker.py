"""The source combo box: cameras by name, the sample video, opened files, "Open file…".

Each entry carries a *source spec* string, the form the settings remember:
'camera:NAME', 'sample', or a file path. :func:`resolve_spec` turns one into what
``engine.sources.open_source`` takes.
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


def resolve_spec(spec: str, cameras: list[CameraInfo]) -> tuple[object, bool]:
    """(what to open, loop?) for a source spec. The sample loops; a camera found by name
    opens by index (two cameras of the same model share a name)."""
    if spec == SAMPLE_SOURCE:
        return sample_video_path(), True
    if spec.startswith(CAMERA_PREFIX):
        name = spec[len(CAMERA_PREFIX):]
        match = [c for c in cameras if c.name == name]
        return (match[0].index if match else spec), False
    return Path(spec), False


def is_available(spec: str, cameras: list[CameraInfo]) -> bool:
    """Whether a remembered source can be played now."""
    if not spec or spec == OPEN_FILE:
        return False
    if spec == SAMPLE_SOURCE:
        return True
    if spec.startswith(CAMERA_PREFIX):
        return any(camera_spec(c) == spec for c in cameras)
    return Path(spec).is_file()


def display_name(spec: str) -> str:
    if spec == SAMPLE_SOURCE:
        return "Sample video"
    if spec.startswith(CAMERA_PREFIX):
        return spec[len(CAMERA_PREFIX):]
    return Path(spec).name


class SourcePicker(QComboBox):
    """Emits ``chosen(spec)`` when the user picks a source, ``open_requested`` for "Open file…"."""

    chosen = Signal(str)
    open_requested = Signal()

    def __init__(self, cameras: list[CameraInfo], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumContentsLength(22)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setToolTip("Source: a camera, the sample video, or a file")
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
        """Select ``spec`` (adding a file entry for it if needed) without emitting ``chosen``."""
        index = self.findData(spec)
        if index < 0:
            index = self.findData(OPEN_FILE)
            self.insertItem(index, f"File: {display_name(spec)}", spec)
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
