"""Starting the GUI: the source check, the QApplication, the settings store, the main window.

A ``--source`` that cannot be opened is a usage error: one line on stderr and exit status
2 before any window opens, and the remembered source is left as it was.

Ctrl+C and SIGTERM (``kill``, ``timeout``, a session ending) close the window properly:
the run stops, the settings are saved, and the process waits for its worker threads
before it exits (128 + the signal, as shells report it). Qt aborts a process that
destroys a running thread, so that wait is bounded only by the threads' own timeouts.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from app import startup_probe
from app.errors import error_line, error_sentence
from app.settings import SAMPLE_SOURCE, AppSettings
from app.source_picker import resolve_spec
from engine.sources import CAMERA_PREFIX, CameraInfo, list_cameras, open_source

EXIT_USAGE = 2
THREADS_EXIT_WAIT_S = 120.0  # a model build (TensorRT) may still be running when the window closes


def source_problem(source: str, cameras: list[CameraInfo]) -> str | None:
    """Why ``source`` (as typed) cannot be played, or None: it opens (and is closed again)."""
    target, loop = resolve_spec(source, cameras)
    try:
        open_source(target, loop=loop).close()
    except Exception as e:  # noqa: BLE001 - any failure is the user's one sentence
        return error_sentence(e)
    return None


def source_spec(source: str) -> str:
    """The spec remembered for a typed source: files and folders by absolute path."""
    if source == SAMPLE_SOURCE or source.startswith(CAMERA_PREFIX):
        return source
    return str(Path(source).expanduser().resolve())


def display_problem(environ=os.environ, platform: str = sys.platform) -> str | None:
    """Why no window can open here, with how to fix it; None when one can (or Qt's
    platform was chosen explicitly). Qt itself would abort (exit 134) with a misleading
    'libxcb-cursor0 is needed' message when Linux has no display at all."""
    if environ.get("QT_QPA_PLATFORM") or not platform.startswith("linux"):
        return None
    if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        return ("no display to open the window on (DISPLAY and WAYLAND_DISPLAY are unset): run it in a "
                "desktop session, under Xvfb (xvfb-run faceattr), or with QT_QPA_PLATFORM=offscreen")
    if not environ.get("WAYLAND_DISPLAY"):
        import ctypes.util
        missing = [lib for lib in ("xcb-cursor", "xcb-icccm", "xcb-keysyms", "xkbcommon-x11")
                   if ctypes.util.find_library(lib) is None]
        if missing:
            packages = " ".join(f"lib{lib}0" if lib != "xkbcommon-x11" else "libxkbcommon-x11-0" for lib in missing)
            packages = packages.replace("libxcb-icccm0", "libxcb-icccm4").replace("libxcb-keysyms0", "libxcb-keysyms1")
            return f"Qt's X11 platform needs system libraries that are missing here: install {packages} (apt-get)"
    return None


def run_gui(model: Path | None = None, backend: str | None = None, detector: str | None = None,
            source: str | None = None, min_face: int | None = None) -> int:
    """Open the window (command-line choices override the remembered ones) and run Qt."""
    problem = display_problem()
    if problem:
        print(error_line(problem), file=sys.stderr)
        return EXIT_USAGE
    cameras = list_cameras()
    if source:
        problem = source_problem(source, cameras)
        if problem:
            print(error_line(problem), file=sys.stderr)
            return EXIT_USAGE
        source = source_spec(source)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from app.settings import APPLICATION, ORGANIZATION, load_settings, open_qsettings
    from app.worker import wait_for_threads

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
    if min_face:
        settings = settings.replace(min_face=min_face)
    window = MainWindow(store, settings, cameras)
    window.show()
    startup_probe.mark("window_shown")
    window.start(source)
    # Python runs signal handlers only when it has control: the timer gives it some.
    received: list[int] = []

    def close_on(signum, _frame) -> None:
        received.append(signum)
        window.close()

    previous = {s: signal.signal(s, close_on) for s in (signal.SIGINT, signal.SIGTERM)}
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)
    try:
        status = app.exec()
    finally:
        wake.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if not wait_for_threads(THREADS_EXIT_WAIT_S):
        # Leaving would destroy a running QThread, which aborts: end the process here instead.
        print(error_line(f"a worker thread did not end within {THREADS_EXIT_WAIT_S:g} s; exiting without it"),
              file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    return 128 + received[-1] if received else status
