"""The video view: paints the latest rendered frame, scaled to fit, aspect ratio kept."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget


def bgr_to_qimage(image_bgr: np.ndarray) -> QImage:
    """A QImage that owns a copy of ``image_bgr`` (H×W×3 uint8, BGR)."""
    image_bgr = np.ascontiguousarray(image_bgr)
    h, w = image_bgr.shape[:2]
    view = QImage(image_bgr.data, w, h, image_bgr.strides[0], QImage.Format.Format_BGR888)
    return view.copy()  # detach from the numpy buffer


def qimage_to_bgr(image: QImage) -> np.ndarray:
    """A QImage (any format) as an H×W×3 uint8 BGR array (a copy)."""
    image = image.convertToFormat(QImage.Format.Format_BGR888)
    h, w = image.height(), image.width()
    rows = np.frombuffer(image.constBits(), np.uint8, count=image.bytesPerLine() * h)
    return rows.reshape(h, image.bytesPerLine())[:, :w * 3].reshape(h, w, 3).copy()


def fit_rect(image_wh: tuple[int, int], area: QRect) -> QRect:
    """The largest rectangle of the image's aspect ratio centred in ``area``."""
    iw, ih = image_wh
    if iw <= 0 or ih <= 0 or area.width() <= 0 or area.height() <= 0:
        return QRect()
    scale = min(area.width() / iw, area.height() / ih)
    w, h = max(1, round(iw * scale)), max(1, round(ih * scale))
    return QRect(area.x() + (area.width() - w) // 2, area.y() + (area.height() - h) // 2, w, h)


class VideoView(QWidget):
    """Shows one frame at a time; black bars keep the aspect ratio."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._placeholder = "No video"
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 180)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    def sizeHint(self) -> QSize:
        return QSize(960, 540)

    def set_frame(self, image_bgr: np.ndarray) -> None:
        self._image = bgr_to_qimage(image_bgr)
        self.update()

    def clear(self, placeholder: str = "No video") -> None:
        self._image = None
        self._placeholder = placeholder
        self.update()

    def has_frame(self) -> bool:
        return self._image is not None

    def image_rect(self) -> QRect:
        """Where the current frame is drawn, in widget pixels (empty without a frame)."""
        if self._image is None:
            return QRect()
        return fit_rect((self._image.width(), self._image.height()), self.rect())

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(0, 0, 0))
        if self._image is None:
            painter.setPen(QColor(170, 170, 170))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._placeholder)
        else:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(self.image_rect(), self._image)
        painter.end()
