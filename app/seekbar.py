"""The seek bar under the video: a slider over the frames of a file (or the images of a
folder), the time (or image number), and the speed.

It only shows and asks: ``seek_requested(frame)`` is emitted when the user lets go of
the handle or clicks beside it; the window restarts the run there. Cameras and pipes
have no length: the bar is disabled for them.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget


def clock(seconds: float) -> str:
    """'1:05.3' (minutes:seconds.tenths), 'h:mm:ss' past an hour."""
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        s = int(seconds)
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{int(seconds) // 60}:{seconds % 60:04.1f}"


class SeekBar(QWidget):
    seek_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("seek")
        self.slider.setToolTip("Seek (← → step a frame)")
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # arrows belong to the window's step actions
        self.time_label = QLabel()
        self.time_label.setObjectName("time")
        self.speed_label = QLabel()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.time_label)
        layout.addWidget(self.speed_label)
        self._fps = 0.0
        self._stills = False
        self.slider.sliderReleased.connect(lambda: self.seek_requested.emit(self.slider.value()))
        self.slider.actionTriggered.connect(self._clicked)
        self.set_source(None, 0.0, False)

    def _clicked(self, action: int) -> None:
        if action in (QSlider.SliderAction.SliderPageStepAdd, QSlider.SliderAction.SliderPageStepSub):
            # the slider moves after this signal; ask for where it will be
            self.seek_requested.emit(self.slider.sliderPosition())

    def set_source(self, frame_count: int | None, fps: float, stills: bool) -> None:
        """A new source: its length in frames (None: live, not seekable)."""
        self._fps, self._stills = fps, stills
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, (frame_count or 1) - 1))
        self.slider.setPageStep(max(1, round(fps * 5)) if not stills else 1)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.slider.setEnabled(bool(frame_count and frame_count > 1))
        self.time_label.setText("live" if frame_count is None and fps else "")

    def seekable(self) -> bool:
        return self.slider.isEnabled()

    def show_frame(self, index: int) -> None:
        """The frame now shown (the handle follows, unless the user holds it)."""
        if not self.slider.isSliderDown():
            self.slider.blockSignals(True)
            self.slider.setValue(index)
            self.slider.blockSignals(False)
        if not self.slider.isEnabled():
            return
        last = self.slider.maximum()
        if self._stills:
            self.time_label.setText(f"image {index + 1} of {last + 1}")
        elif self._fps > 0:
            self.time_label.setText(f"{clock(index / self._fps)} / {clock(last / self._fps)}")

    def show_speed(self, speed: float) -> None:
        self.speed_label.setText("" if speed == 1.0 else f"{speed:g}×")
