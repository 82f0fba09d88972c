"""Starting the GUI: the QApplication, the settings store, and the main window."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.main_window import MainWindow
from app.settings import APPLICATION, ORGANIZATION, AppSettings, load_settings, open_qsettings
from engine.sources import list_cameras


def run_gui(model: Path | None = None, backend: str | None = None, detector: str | None = None,
            source: str | None = None) -> int:
    """Open the window (command-line choices override the remembered ones) and run Qt."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    store = open_qsettings()
    settings: AppSettings = load_settings(store)
    if model is not None:
        settings = settings.replace(model_path=str(Path(model).resolve()))
    if backend:
        settings = settings.replace(backend=backend)
    if detector:
        settings = settings.replace(detector=detector)
    if source:
        settings = settings.replace(source=source if source == "sample" or source.startswith("camera:")
                                    else str(Path(source).resolve()))
    window = MainWindow(store, settings, list_cameras())
    window.show()
    window.start()
    # Ctrl+C in the terminal closes the window properly (threads joined, settings saved).
    # Python runs signal handlers only when it has control: the timer gives it some.
    previous = signal.signal(signal.SIGINT, lambda *_: window.close())
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)
    try:
        return app.exec()
    finally:
        wake.stop()
        signal.signal(signal.SIGINT, previous)
