"""The side panel: one row per face of the latest frame, one column per task."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from engine.model import format_value
from engine.modelspec import ModelSpec
from engine.render import track_color_bgr
from engine.types import Faces


def face_rows(faces: Faces, spec: ModelSpec) -> list[list[str]]:
    """Each face as texts: '#id' then each task's value with its confidence."""
    rows = []
    for i in range(len(faces)):
        tid = int(faces.track_id[i])
        row = [f"#{tid}" if tid >= 0 else "–"]
        for task in spec.tasks:
            pred = faces.tasks.get(task.name)
            row.append(format_value(task, pred, i) if pred is not None else "")
        rows.append(row)
    return rows


class FacePanel(QTableWidget):
    """Current faces; the id cell wears the track's overlay colour."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 1, parent)
        self._spec: ModelSpec | None = None
        self.setHorizontalHeaderLabels(["face"])
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.setMinimumWidth(260)

    def set_spec(self, spec: ModelSpec | None) -> None:
        """Columns follow the model's tasks."""
        self._spec = spec
        names = ["face"] + ([t.name for t in spec.tasks] if spec else [])
        self.setRowCount(0)
        self.setColumnCount(len(names))
        self.setHorizontalHeaderLabels(names)

    def show_faces(self, faces: Faces, spec: ModelSpec) -> None:
        if spec is not self._spec:
            self.set_spec(spec)
        rows = face_rows(faces, spec)
        self.setRowCount(len(rows))
        for r, row in enumerate(rows):
            b, g, rr = track_color_bgr(int(faces.track_id[r]))
            for c, text in enumerate(row):
                item = self.item(r, c)
                if item is None:
                    item = QTableWidgetItem()
                    self.setItem(r, c, item)
                if item.text() != text:
                    item.setText(text)
                if c == 0:
                    item.setBackground(QBrush(QColor(rr, g, b)))
                    dark = 0.299 * rr + 0.587 * g + 0.114 * b > 140
                    item.setForeground(QBrush(QColor(0, 0, 0) if dark else QColor(255, 255, 255)))

    def texts(self) -> list[list[str]]:
        """The table's texts, row by row (what a user reads)."""
        return [[self.item(r, c).text() if self.item(r, c) else "" for c in range(self.columnCount())]
                for r in range(self.rowCount())]
