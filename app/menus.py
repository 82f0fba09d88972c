"""The window's actions, menus and toolbar, built from the engine's lists, and kept
showing what is in effect (:meth:`Menus.sync`).

Menus: File (open, folder, recent, model, snapshot, export, folders, quit), Play
(transport, step, speed, loop, record), View (the model's tasks, minimum confidence,
smallest face, boxes / landmarks / track ids, blur, full screen), Backend (the engine's
back-ends; one this installation cannot run is disabled and its tooltip says why),
Detector (the engine's registry), Help (shortcuts, about, model card). The handlers are
the window's methods, so this module holds no state of the app.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QColor, QIcon, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import QMenu, QStyle, QToolBar

from app.settings import AppSettings
from engine.assets import shipped_models
from engine.detect import DETECTOR_TITLES
from engine.providers import BACKEND_TITLES, BACKENDS, backend_problem
from engine.modelspec import ModelSpec

DETECT_EVERY = (1, 2, 3, 5)
MIN_FACES = (24, 40, 60, 80, 120)  # px: the "Smallest face" menu (plus the size in effect)
SPEEDS = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0)
MIN_CONFIDENCES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)


def record_icon() -> QIcon:
    pixmap = QPixmap(32, 32)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(211, 47, 47))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(5, 5, 22, 22)
    painter.end()
    return QIcon(pixmap)


class Menus:
    """Builds everything on ``window`` (a MainWindow) and exposes the actions by name."""

    def __init__(self, window, settings: AppSettings) -> None:
        self.w = window
        w, sp = window, QStyle.StandardPixmap
        self.play_pause = self._action("Play / pause", w.play_pause, "Space", sp.SP_MediaPlay)
        self.play = self._action("Play", w.play, None, sp.SP_MediaPlay)
        self.pause = self._action("Pause", w.pause, "P", sp.SP_MediaPause)
        self.stop = self._action("Stop", w.stop, "Shift+S", sp.SP_MediaStop)
        self.step_back = self._action("Previous frame", w.step_back, "Left", sp.SP_MediaSeekBackward)
        self.step_forward = self._action("Next frame", w.step_forward, "Right", sp.SP_MediaSeekForward)
        self.to_start = self._action("Back to the start", w.seek_start, "Home", sp.SP_MediaSkipBackward)
        self.record = self._action("Record", w.set_recording, "R", None, True)
        self.record.setIcon(record_icon())
        self.record.setToolTip("Record the annotated video (R)")
        self.loop = self._action("Loop", w.set_loop, "L", None, True)
        self.snapshot = self._action("Snapshot", w.snapshot, "S", sp.SP_DialogSaveButton)
        self.snapshot.setToolTip("Save the frame as PNG and its faces as JSON (S)")
        self.export = self._action("Export results…", w.export_dialog, "Ctrl+E")
        self.export.setToolTip("Annotate the open file as 'faceattr annotate' does: video, JSONL and CSV")
        self.open_file = self._action("Open file…", w.open_file_dialog, QKeySequence.StandardKey.Open)
        self.open_folder = self._action("Open folder…", w.open_folder_dialog, "Ctrl+Shift+O")
        self.open_folder.setToolTip("Browse a folder's images, each on its own")
        self.open_model = self._action("Open model…", w.open_model_dialog, "Ctrl+M")
        self.record_dir = self._action("Recordings folder…", w.choose_record_dir)
        self.snapshot_dir = self._action("Snapshots folder…", w.choose_snapshot_dir)
        self.preferences = self._action("Preferences…", w.preferences_dialog, QKeySequence.StandardKey.Preferences)
        self.fullscreen = self._action("Full screen", w.set_fullscreen, "F", None, True)
        self.quit = self._action("Quit", w.close, QKeySequence.StandardKey.Quit)
        self.view_boxes = self._action("Boxes", lambda on: w.set_view(show_boxes=on), None, None, True)
        self.view_landmarks = self._action("Landmarks", lambda on: w.set_view(show_landmarks=on), None, None, True)
        self.view_ids = self._action("Track ids", lambda on: w.set_view(show_track_ids=on), None, None, True)
        self.view_blur = self._action("Blur faces (privacy)", lambda on: w.set_view(blur_faces=on), None, None, True)
        self.overlap_frames = self._action("Overlap frames", w.set_overlap_frames, None, None, True)
        self.overlap_frames.setToolTip("Find the faces of each frame while the one before is labelled: "
                                       "more frames per second on two or more cores, about half a frame more lag")
        self.task_actions: dict[str, QAction] = {}

        bar = w.menuBar()
        file_menu = bar.addMenu("&File")
        for a in (self.open_file, self.open_folder):
            file_menu.addAction(a)
        self.recent_menu = file_menu.addMenu("Open recent")
        file_menu.addAction(self.open_model)
        self.shipped_menu = file_menu.addMenu("Shipped models")
        for title, path in shipped_models():
            self.shipped_menu.addAction(self._action(title, lambda _=False, p=path: w.load_model(p)))
        file_menu.addSeparator()
        for a in (self.snapshot, self.export):
            file_menu.addAction(a)
        file_menu.addSeparator()
        for a in (self.preferences, self.record_dir, self.snapshot_dir):
            file_menu.addAction(a)
        file_menu.addSeparator()
        file_menu.addAction(self.quit)

        play_menu = bar.addMenu("&Play")
        for a in (self.play_pause, self.play, self.pause, self.stop, None, self.step_back, self.step_forward,
                  self.to_start, None, self.loop, self.record):
            play_menu.addAction(a) if a else play_menu.addSeparator()
        speed_menu = play_menu.addMenu("Speed")
        self.speed_actions = self._radio_group(speed_menu, {s: f"{s:g}×" for s in SPEEDS}, w.set_speed)
        speed_menu.addSeparator()
        speed_menu.addAction(self._action("Slower", lambda: w.change_speed(-1), "["))
        speed_menu.addAction(self._action("Faster", lambda: w.change_speed(+1), "]"))

        view_menu = bar.addMenu("&View")
        self.tasks_menu = view_menu.addMenu("Attributes shown")
        conf_menu = view_menu.addMenu("Minimum confidence")
        conf_menu.setToolTipsVisible(True)
        self.confidence_actions = self._radio_group(
            conf_menu, {c: "Show every value" if c == 0 else f"{c:.0%}" for c in MIN_CONFIDENCES}, w.set_min_confidence)
        for c, action in self.confidence_actions.items():
            action.setToolTip("A value the model is less sure of shows as '?'")
        sizes = {px: f"{px} px" + (" (default)" if px == AppSettings.min_face else "")
                 for px in sorted({*MIN_FACES, settings.min_face})}
        self.min_face_menu = QMenu("Smallest face", w)
        self.min_face_menu.setToolTipsVisible(True)
        self.min_face_actions = self._radio_group(self.min_face_menu, sizes, w.set_min_face)
        for action in self.min_face_actions.values():
            action.setToolTip("Smaller finds smaller (more distant) faces, and costs more")
        view_menu.addMenu(self.min_face_menu)
        view_menu.addSeparator()
        for a in (self.view_boxes, self.view_landmarks, self.view_ids, self.view_blur, None, self.fullscreen):
            view_menu.addAction(a) if a else view_menu.addSeparator()

        backend_menu = bar.addMenu("&Backend")
        backend_menu.setToolTipsVisible(True)
        self.backend_actions = self._radio_group(backend_menu, {b: BACKEND_TITLES.get(b, b) for b in BACKENDS},
                                                 w.set_backend)
        for b, action in self.backend_actions.items():
            why = backend_problem(b)
            if why:
                action.setEnabled(False)
                action.setToolTip(f"Not available: {why}")
        backend_menu.addSeparator()
        backend_menu.addAction(self.overlap_frames)
        detector_menu = bar.addMenu("&Detector")
        self.detector_actions = self._radio_group(detector_menu, DETECTOR_TITLES, w.set_detector)
        detector_menu.addSeparator()
        every = {k: "Detect every frame" if k == 1 else f"Detect every {k} frames (track between)"
                 for k in DETECT_EVERY}
        self.detect_every_actions = self._radio_group(detector_menu, every, w.set_detect_every)
        detector_menu.addSeparator()
        detector_menu.addMenu(self.min_face_menu)

        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self._action("Keyboard shortcuts", w.show_shortcuts, "F1"))
        help_menu.addAction(self._action("Model card", w.show_model_card))
        help_menu.addAction(self._action("About FaceAttr", w.show_about))

        self.toolbar = QToolBar("Transport")
        self.toolbar.setObjectName("transport")
        self.toolbar.setMovable(False)
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toolbar.addWidget(w.picker)
        for a in (self.play, self.pause, self.stop, self.record, self.snapshot):
            self.toolbar.addAction(a)
        w.addToolBar(self.toolbar)

    # -- building --------------------------------------------------------------------------

    def _action(self, text: str, slot, shortcut=None, icon=None, checkable=False) -> QAction:
        action = QAction(text, self.w)
        if icon is not None:
            action.setIcon(self.w.style().standardIcon(icon))
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(checkable)
        if checkable:
            action.toggled.connect(slot)
        else:
            action.triggered.connect(lambda _=False: slot())
        return action

    def _radio_group(self, menu, choices: dict, slot) -> dict:
        group = QActionGroup(self.w)
        group.setExclusive(True)
        actions = {}
        for key, text in choices.items():
            action = QAction(text, self.w)
            action.setCheckable(True)
            action.triggered.connect(lambda _=False, k=key: slot(k))
            group.addAction(action)
            menu.addAction(action)
            actions[key] = action
        return actions

    def set_tasks(self, spec: ModelSpec | None, hidden: tuple[str, ...]) -> None:
        """One check item per task the model describes (rebuilt when a model loads)."""
        self.tasks_menu.clear()
        self.task_actions = {}
        for task in spec.tasks if spec else ():
            action = QAction(task.name, self.w)
            action.setCheckable(True)
            action.setChecked(task.name not in hidden)
            action.toggled.connect(lambda on, n=task.name: self.w.show_task(n, on))
            self.tasks_menu.addAction(action)
            self.task_actions[task.name] = action
        self.tasks_menu.setEnabled(bool(self.task_actions))

    def set_recent(self, recent: tuple[str, ...]) -> None:
        self.recent_menu.clear()
        for path in recent:
            action = self.recent_menu.addAction(Path(path).name or path)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.triggered.connect(lambda _=False, p=path: self.w.open_file(p))
        self.recent_menu.setEnabled(bool(recent))

    # -- showing what is in effect -----------------------------------------------------------

    def sync(self, s: AppSettings, *, loaded: bool, running: bool, paused: bool, recording: bool,
             seekable: bool, has_frame: bool) -> None:
        for actions, current in ((self.backend_actions, s.backend), (self.detector_actions, s.detector),
                                 (self.detect_every_actions, s.detect_every), (self.min_face_actions, s.min_face),
                                 (self.speed_actions, s.speed), (self.confidence_actions, s.min_confidence)):
            for key, action in actions.items():
                action.setChecked(key == current)
        for action, on in ((self.view_boxes, s.show_boxes), (self.view_landmarks, s.show_landmarks),
                           (self.view_ids, s.show_track_ids), (self.view_blur, s.blur_faces),
                           (self.overlap_frames, s.overlap_frames),
                           (self.loop, s.loop), (self.record, running and recording),
                           (self.fullscreen, self.w.isFullScreen())):
            action.blockSignals(True)
            action.setChecked(on)
            action.blockSignals(False)
        self.play.setEnabled(loaded and (not running or paused))
        self.pause.setEnabled(running and not paused)
        self.play_pause.setEnabled(loaded)
        self.stop.setEnabled(running)
        for a in (self.step_back, self.step_forward, self.to_start):
            a.setEnabled(seekable)
        self.snapshot.setEnabled(has_frame)
