"""File ▸ Preferences…: where recordings and snapshots go, and where the settings live.

A plain dialog over :class:`app.settings.AppSettings`: it edits a copy and hands it back
only on OK, so Cancel changes nothing. Folders that do not exist yet are created when
something is first saved there (the sinks create their folder).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QWidget)

from app.settings import AppSettings, default_record_dir


class PreferencesDialog(QDialog):
    def __init__(self, parent: QWidget | None, settings: AppSettings, settings_location: str) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self._settings = settings
        self.record_dir = QLineEdit(settings.record_dir or default_record_dir())
        self.snapshot_dir = QLineEdit(settings.snapshot_dir)
        self.snapshot_dir.setPlaceholderText("next to the recordings")
        form = QFormLayout(self)
        form.addRow("Recordings folder", self._with_browse(self.record_dir, "Recordings folder"))
        form.addRow("Snapshots folder", self._with_browse(self.snapshot_dir, "Snapshots folder"))
        where = QLabel(settings_location)
        where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Settings are kept in", where)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _with_browse(self, edit: QLineEdit, title: str) -> QWidget:
        row = QWidget(self)
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(edit, 1)
        browse = QPushButton("Browse…", row)
        browse.clicked.connect(lambda: self._browse(edit, title))
        layout.addWidget(browse)
        return row

    def _browse(self, edit: QLineEdit, title: str) -> None:
        start = edit.text() or str(Path.home())
        path = QFileDialog.getExistingDirectory(self, title, start)
        if path:
            edit.setText(path)

    def chosen(self) -> AppSettings:
        """The settings with the dialog's choices ('' = the default folder)."""
        record = self.record_dir.text().strip()
        return self._settings.replace(
            record_dir="" if record == default_record_dir() else record,
            snapshot_dir=self.snapshot_dir.text().strip())
