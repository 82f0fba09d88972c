"""The side panel: one row per face of the latest frame, one column per task.

Sortable by any column (click its header; numbers sort as numbers). Selecting a row
emits ``track_selected(track id)`` (None when cleared): the window highlights that face
in the view, and the selection follows the track from frame to frame."""
from __future__ import annotations

from typing import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from engine.modelspec import ModelSpec
from engine.render import text_color_bgr, track_color_bgr
from engine.types import Faces


def face_rows(faces: Faces, tasks: Sequence[str] | None = None) -> list[list[str]]:
    """Each face as texts: '#id' then its label per task (``tasks``: the columns' task names,
    by default the faces' own; a task the faces lack gives an empty cell)."""
    tasks = tuple(faces.tasks) if tasks is None else tasks
    rows = []
    for i in range(len(faces)):
        tid = int(faces.track_id[i])
        labels = faces.labels(i)
        rows.append([f"#{tid}" if tid >= 0 else "–"] + [labels.get(name, "") for name in tasks])
    return rows


class _Item(QTableWidgetItem):
    """Sorts by its number when it starts with one ('34 y', '#12', 'female 97%' by text)."""

    def __lt__(self, other) -> bool:
        a, b = _number(self.text()), _number(other.text())
        if a is not None and b is not None:
            return a < b
        return self.text() < other.text()


def _number(text: str) -> float | None:
    head = text.lstrip("#").split(" ")[0].split("±")[0]
    try:
        return float(head)
    except ValueError:
        return None


class FacePanel(QTableWidget):
    """Current faces; the id cell wears the track's overlay colour."""

    track_selected = Signal(object)  # int track id, or None

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 1, parent)
        self._tasks: tuple[str, ...] = ()  # the task columns
        self._selected: int | None = None
        self.setHorizontalHeaderLabels(["face"])
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSortingEnabled(True)
        self.horizontalHeader().setSortIndicatorClearable(True)
        self.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # face order until a header is clicked
        self.itemSelectionChanged.connect(self._selection_changed)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.setMinimumWidth(260)

    def set_spec(self, spec: ModelSpec | None) -> None:
        """Columns follow the model's tasks (set when a model is loaded)."""
        self._set_tasks(tuple(t.name for t in spec.tasks) if spec else ())

    def _set_tasks(self, tasks: tuple[str, ...]) -> None:
        self._tasks = tasks
        names = ["face", *tasks]
        self.setRowCount(0)
        self.setColumnCount(len(names))
        self.setHorizontalHeaderLabels(names)

    def show_faces(self, faces: Faces) -> None:
        """The faces of the latest frame, labelled by what they carry (``Faces.labels``)."""
        if faces.tasks and tuple(faces.tasks) != self._tasks:
            self._set_tasks(tuple(faces.tasks))  # faces of another model than the columns'
        rows = face_rows(faces, self._tasks)
        self.setSortingEnabled(False)  # rows stay put while they are filled, then sort once
        self.blockSignals(True)
        self.setRowCount(len(rows))
        for r, row in enumerate(rows):
            back_bgr = track_color_bgr(int(faces.track_id[r]))
            for c, text in enumerate(row):
                item = self.item(r, c)
                if item is None:
                    item = _Item()
                    self.setItem(r, c, item)
                if item.text() != text:
                    item.setText(text)
                item.setData(Qt.ItemDataRole.UserRole, int(faces.track_id[r]))
                if c == 0:
                    item.setBackground(QBrush(QColor(*back_bgr[::-1])))
                    item.setForeground(QBrush(QColor(*text_color_bgr(back_bgr)[::-1])))
        self.setSortingEnabled(True)
        self.clearSelection()
        for r in range(self.rowCount()):  # the selection follows its track
            if self._selected is not None and self.item(r, 0).data(Qt.ItemDataRole.UserRole) == self._selected:
                self.selectRow(r)
        self.blockSignals(False)

    def _selection_changed(self) -> None:
        rows = {i.row() for i in self.selectedItems()}
        track = self.item(min(rows), 0).data(Qt.ItemDataRole.UserRole) if rows else None
        if track != self._selected:
            self._selected = track
            self.track_selected.emit(track)

    def select_track(self, track_id: int | None) -> None:
        """Select the row of ``track_id`` (None clears), as a click would."""
        for r in range(self.rowCount()):
            if self.item(r, 0).data(Qt.ItemDataRole.UserRole) == track_id:
                self.selectRow(r)
                return
        self.clearSelection()

    def texts(self) -> list[list[str]]:
        """The table's texts, row by row (what a user reads)."""
        return [[self.item(r, c).text() if self.item(r, c) else "" for c in range(self.columnCount())]
                for r in range(self.rowCount())]
