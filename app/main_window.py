"""The main window: video view, source picker, transport, recording, model, backend and
detector menus, status line, and the side panel of current faces.

The UI thread never captures or infers: a :class:`~app.worker.PipelineWorker` does, and
models load in a :class:`~app.worker.BackgroundCall` (a TensorRT engine build can take
minutes). A model, backend or detector change builds a new pipeline first and swaps it
in only when that worked; if it failed, the sentence is shown and the old one is kept.

Sources: the remembered source changes only when a source the user chose has opened. A
remembered source that is gone at start (a file deleted, a camera unplugged) falls back
to the first camera, else the sample, and the status line says so; one that fails to
open is an error in the window, never a silent switch to something else.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtGui import (QAction, QActionGroup, QCloseEvent, QColor, QDragEnterEvent, QDropEvent, QIcon,
                           QKeySequence, QPainter, QPixmap)
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QMessageBox, QSplitter, QStyle, QToolBar

from app.face_panel import FacePanel
from app.settings import SAMPLE_SOURCE, AppSettings, default_record_dir, save_settings
from app.source_picker import SourcePicker, resolve_spec, unavailable_reason
from app.status import BACKEND_TITLES, LiveStats, MessageLine
from app.video_view import VideoView
from app.worker import BackgroundCall, PipelineWorker, ShownFrame, SourceInfo, WorkerThread
from engine.assets import default_model_path
from engine.detect import DEFAULT_MIN_FACE, DETECTOR_TITLES
from engine.pipeline import EndReason, Pipeline, PipelineConfig, RunOutcome
from engine.sources import CameraInfo, Source, open_source

DETECT_EVERY = (1, 2, 3, 5)
MIN_FACES = (24, 40, 60, 80, 120)  # px: the "Smallest face" menu (plus the size in effect)
STATUS_EVERY_S = 0.25
STALL_TIMEOUT_S = PipelineConfig.stall_timeout_s


def pipeline_config(settings: AppSettings, stall_timeout_s: float = STALL_TIMEOUT_S) -> PipelineConfig:
    return PipelineConfig(
        model_path=Path(settings.model_path) if settings.model_path else default_model_path(),
        backend=settings.backend, detector=settings.detector, upsample=settings.upsample,
        min_face=settings.min_face, detect_every=settings.detect_every, stall_timeout_s=stall_timeout_s)


def _record_icon() -> QIcon:
    pixmap = QPixmap(32, 32)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(211, 47, 47))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(5, 5, 22, 22)
    painter.end()
    return QIcon(pixmap)


def short_provider(provider: str) -> str:
    return provider.replace("ExecutionProvider", "")


def _skipped_text(outcome: RunOutcome) -> str:
    """'; <first problem> (and N more)' for what the source skipped (unreadable photos)."""
    if not outcome.warnings:
        return ""
    more = f" (and {len(outcome.warnings) - 1} more)" if len(outcome.warnings) > 1 else ""
    return f"; {outcome.warnings[0]}{more}"


class MainWindow(QMainWindow):
    """``opener`` opens a source spec (``engine.sources.open_source``'s signature) and
    ``stall_timeout_s`` ends a run whose source went silent; tests shorten both."""

    def __init__(self, store: QSettings, settings: AppSettings, cameras: list[CameraInfo],
                 opener: Callable[..., Source] = open_source, stall_timeout_s: float = STALL_TIMEOUT_S) -> None:
        super().__init__()
        self.store = store
        self.settings = settings  # what is in effect (saved whenever it changes)
        self.cameras = cameras
        self.opener = opener
        self.stall_timeout_s = stall_timeout_s
        self.pipeline: Pipeline | None = None
        self.frames_shown = 0
        self.last_shown: ShownFrame | None = None
        self.last_recording: Path | None = None
        self._run: WorkerThread | None = None
        # stopped runs, kept alive until their 'finished' arrives: their late signals then
        # still come from a live object (a freed worker's address can be reused by the next)
        self._retired: list[WorkerThread] = []
        self._loader: BackgroundCall | None = None
        self._loading: tuple[AppSettings, tuple | None, bool] | None = None  # (settings, play args, initial)
        self._run_spec = ""
        self._run_remember = True  # whether the run's source becomes the remembered one once open
        self._run_note = ""  # why it plays instead of the remembered source, if it does
        self.stats = LiveStats()
        self._status_at = 0.0

        self.setWindowTitle("FaceAttr")
        self.setAcceptDrops(True)
        self.view = VideoView()
        self.face_panel = FacePanel()
        splitter = QSplitter()
        splitter.addWidget(self.view)
        splitter.addWidget(self.face_panel)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([960, 300])
        self.setCentralWidget(splitter)
        self.picker = SourcePicker(cameras)
        self.picker.chosen.connect(self.play_source)
        self.picker.open_requested.connect(self.open_file_dialog)
        self._build_actions()
        self.message_label = MessageLine()
        self.stats_label = QLabel()
        self.statusBar().setSizeGripEnabled(False)
        self.statusBar().addWidget(self.message_label, 1)
        self.statusBar().addPermanentWidget(self.stats_label)
        if settings.geometry:
            self.restoreGeometry(QByteArray(settings.geometry))
        else:
            self.resize(1280, 760)
        self._sync_controls()

    # -- building ------------------------------------------------------------------------

    def _action(self, text: str, slot, shortcut=None, icon=None, checkable=False) -> QAction:
        action = QAction(text, self)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setCheckable(checkable)
        (action.toggled if checkable else action.triggered).connect(slot)
        return action

    def _build_actions(self) -> None:
        sp = QStyle.StandardPixmap
        self.play_action = self._action("Play", self.play, "Space", sp.SP_MediaPlay)
        self.pause_action = self._action("Pause", self.pause, "P", sp.SP_MediaPause)
        self.stop_action = self._action("Stop", self.stop, "S", sp.SP_MediaStop)
        self.record_action = self._action("Record", self.set_recording, "R", None, True)
        self.record_action.setIcon(_record_icon())
        self.record_action.setToolTip("Record the annotated video")
        open_file = self._action("Open file…", self.open_file_dialog, QKeySequence.StandardKey.Open)
        self.open_folder_action = self._action("Open folder…", self.open_folder_dialog, "Ctrl+Shift+O")
        self.open_folder_action.setToolTip("Play a folder's images, each on its own")
        open_model = self._action("Open model…", self.open_model_dialog, "Ctrl+M")
        record_dir = self._action("Record folder…", self.choose_record_dir)
        quit_action = self._action("Quit", self.close, QKeySequence.StandardKey.Quit)

        toolbar = QToolBar("Transport")
        toolbar.setObjectName("transport")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addWidget(self.picker)
        for a in (self.play_action, self.pause_action, self.stop_action, self.record_action):
            toolbar.addAction(a)
        self.addToolBar(toolbar)

        menu = self.menuBar().addMenu("&File")
        for a in (open_file, self.open_folder_action, open_model, record_dir):
            menu.addAction(a)
        menu.addSeparator()
        menu.addAction(quit_action)
        play_menu = self.menuBar().addMenu("&Play")
        for a in (self.play_action, self.pause_action, self.stop_action, self.record_action):
            play_menu.addAction(a)

        self.backend_actions = self._radio_menu("&Backend", BACKEND_TITLES, self.set_backend)
        detector_menu = self.menuBar().addMenu("&Detector")
        self.detector_actions = self._radio_group(detector_menu, DETECTOR_TITLES, self.set_detector)
        detector_menu.addSeparator()
        every = {k: "Detect every frame" if k == 1 else f"Detect every {k} frames (track between)"
                 for k in DETECT_EVERY}
        self.detect_every_actions = self._radio_group(detector_menu, every, self.set_detect_every)
        detector_menu.addSeparator()
        sizes = {px: f"{px} px" + (" (default)" if px == DEFAULT_MIN_FACE else "")
                 for px in sorted({*MIN_FACES, self.settings.min_face})}
        self.min_face_menu = detector_menu.addMenu("Smallest face")
        self.min_face_menu.setToolTipsVisible(True)
        self.min_face_actions = self._radio_group(self.min_face_menu, sizes, self.set_min_face)
        for action in self.min_face_actions.values():
            action.setToolTip("Smaller finds smaller (more distant) faces, and costs more")

    def _radio_menu(self, title: str, choices: dict, slot) -> dict:
        return self._radio_group(self.menuBar().addMenu(title), choices, slot)

    def _radio_group(self, menu, choices: dict, slot) -> dict:
        group = QActionGroup(self)
        group.setExclusive(True)
        actions = {}
        for key, text in choices.items():
            action = QAction(text, self)
            action.setCheckable(True)
            action.triggered.connect(lambda _=False, k=key: slot(k))
            group.addAction(action)
            menu.addAction(action)
            actions[key] = action
        return actions

    def _sync_controls(self) -> None:
        """Menus and buttons show what is in effect."""
        for actions, current in ((self.backend_actions, self.settings.backend),
                                 (self.detector_actions, self.settings.detector),
                                 (self.detect_every_actions, self.settings.detect_every),
                                 (self.min_face_actions, self.settings.min_face)):
            for key, action in actions.items():
                action.setChecked(key == current)
        running = self.is_running()
        paused = running and self._run.worker.paused
        self.play_action.setEnabled(self.pipeline is not None and (not running or paused))
        self.pause_action.setEnabled(running and not paused)
        self.stop_action.setEnabled(running)
        self.record_action.blockSignals(True)
        self.record_action.setChecked(running and self._run.worker.recording_path is not None)
        self.record_action.blockSignals(False)

    # -- start-up and models -------------------------------------------------------------

    def start(self, source: str | None = None) -> None:
        """Load the model in effect and play ``source`` (the command line's, already checked
        to open), else the remembered source. A remembered source that is gone falls back
        to the first camera, else the sample: the status line says so, and it stays remembered."""
        if source:
            play = (source, True, "")
        else:
            spec = self.settings.source
            why = unavailable_reason(spec, self.cameras)
            if why is None:
                play = (spec, True, "")
            else:
                fallback = self.picker.specs()[0] if self.cameras else SAMPLE_SOURCE
                play = (fallback, False, why if spec else "")
        self.picker.show_spec(play[0])
        self._load(self.settings, play=play, initial=True)

    def is_loading(self) -> bool:
        return self._loader is not None

    def _load(self, settings: AppSettings, play: tuple | None, initial: bool = False) -> None:
        """Build a pipeline for ``settings`` in the background; then play ``play``
        (:meth:`play_source`'s arguments), or else what was playing."""
        if self._loader is not None:
            self.show_message("A model is still loading; try again when it is done.")
            self._sync_controls()
            return
        config = pipeline_config(settings, self.stall_timeout_s)
        self.show_message(f"Loading {config.model_path.name} ({settings.backend})…")
        loader = BackgroundCall(lambda: Pipeline.create(config))
        # bound methods, not lambdas: a lambda would run in the loader's thread
        loader.done.connect(self._loaded)
        loader.failed.connect(self._load_failed)
        self._loader = loader
        self._loading = (settings, play, initial)
        loader.start()

    def _finish_loader(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None:
            loader.wait()

    def _loaded(self, pipeline: Pipeline) -> None:
        if self._loader is None or self.sender() is not self._loader:
            return  # the window closed while it loaded
        settings, play, _ = self._loading
        self._finish_loader()
        was_playing = self.is_running()
        current = self.picker.current_spec()
        self._stop_run()
        self.pipeline = pipeline
        self.settings = settings
        self._save()
        self.face_panel.set_spec(pipeline.spec)
        notes = "; ".join(pipeline.notes)
        self.show_message(f"Model {pipeline.spec.name} on {short_provider(pipeline.provider)}"
                          + (f" ({notes})" if notes else ""))
        self._update_stats(force=True)
        self._sync_controls()
        if play:
            self.play_source(*play)
        elif was_playing:  # the same source, on the new pipeline
            self.play_source(current, self._run_remember, self._run_note)

    def _load_failed(self, why: str) -> None:
        if self._loader is None or self.sender() is not self._loader:
            return
        settings, play, initial = self._loading
        self._finish_loader()
        if self.pipeline is None and initial:
            fallback = settings.replace(model_path="", backend="auto")
            if fallback != settings:  # a remembered model or backend that no longer works
                self.show_error("Model not loaded", f"{why}. Trying the default model on auto.")
                self._load(fallback, play, initial=True)
                return
            self.view.clear("No model loaded: File ▸ Open model…")
        kept = (f"Keeping {self.pipeline.spec.name} on {short_provider(self.pipeline.provider)}."
                if self.pipeline else "No model is loaded.")
        self.show_error("Model not loaded", f"{why}. {kept}")
        self._sync_controls()  # menus go back to what is in effect

    def open_model_dialog(self) -> None:
        start = self.settings.model_path or str(default_model_path().parent)
        path, _ = QFileDialog.getOpenFileName(self, "Open model", start, "ONNX models (*.onnx);;All files (*)")
        if path:
            self.load_model(path)

    def load_model(self, path: str | Path) -> None:
        self._load(self.settings.replace(model_path=str(path)), play=None)

    def set_backend(self, backend: str) -> None:
        if backend != self.settings.backend or self.pipeline is None:
            self._load(self.settings.replace(backend=backend), play=None)

    def set_detector(self, detector: str) -> None:
        if detector != self.settings.detector:
            self._load(self.settings.replace(detector=detector), play=None)

    def set_detect_every(self, every: int) -> None:
        if every != self.settings.detect_every:
            self._load(self.settings.replace(detect_every=every), play=None)

    def set_min_face(self, px: int) -> None:
        if px != self.settings.min_face:
            self._load(self.settings.replace(min_face=px), play=None)

    # -- sources and transport -----------------------------------------------------------

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open video or image", str(Path.home()),
            "Videos and images (*.mp4 *.avi *.mov *.mkv *.webm *.m4v *.jpg *.jpeg *.png *.bmp);;All files (*)")
        if path:
            self.open_file(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open folder of images", str(Path.home()))
        if path:
            self.open_file(path)

    def open_file(self, path: str | Path) -> None:
        """Play a video, an image, or a folder (its images in name order, each on its own)."""
        self.play_source(str(Path(path)))

    def play_source(self, spec: str, remember: bool = True, note: str = "") -> None:
        """Stop what plays and play ``spec`` ('sample', 'camera:NAME' or a path). It becomes
        the remembered source once it has opened if ``remember``; ``note`` says why it plays
        (e.g. instead of a remembered source that is gone)."""
        self.picker.show_spec(spec)
        self._stop_run()
        if self.pipeline is None:
            self.show_error("No model", "No model is loaded: open one with File ▸ Open model….")
            return
        target, loop = resolve_spec(spec, self.cameras)
        worker = PipelineWorker(self.pipeline, target, loop=loop, opener=self.opener)
        # bound methods, not lambdas: a lambda would run in the worker's thread
        worker.opened.connect(self._opened)
        worker.result.connect(self._show_result)
        worker.error.connect(self._run_error)
        worker.recording.connect(self._recording_event)
        worker.finished.connect(self._run_finished)
        self._run = WorkerThread(worker)
        self._run_spec, self._run_remember, self._run_note = spec, remember, note
        self.stats.reset()
        self._run.start()
        what = spec if spec != SAMPLE_SOURCE else "the sample video"
        self.show_message(f"{note}; opening {what} instead…" if note else f"Opening {what}…")
        self._sync_controls()

    def _is_current(self, worker) -> bool:
        return self._run is not None and worker is self._run.worker

    def _opened(self, info: SourceInfo) -> None:
        if not self._is_current(self.sender()):
            return
        if self._run_remember:
            self.settings = self.settings.replace(source=self._run_spec)
            self._save()
        kind = "live" if info.is_live else f"{info.fps:.3g} fps"
        what = f"{info.source_id} ({info.size_wh[0]}×{info.size_wh[1]}, {kind})"
        self.show_message(f"{self._run_note}; playing {what} instead" if self._run_note else f"Playing {what}")

    def play(self) -> None:
        if self.is_running():
            self._run.worker.set_paused(False)
            self._sync_controls()
        else:
            self.play_source(self.picker.current_spec())

    def pause(self) -> None:
        if self.is_running():
            self._run.worker.set_paused(True)
            self.show_message("Paused")
            self._sync_controls()

    def stop(self) -> None:
        if self.is_running():
            self._stop_run()
            self.show_message("Stopped")

    def is_running(self) -> bool:
        return self._run is not None and self._run.is_running()

    def _stop_run(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            self._retired.append(run)
            if not run.stop():
                self.show_error("Stop", "The video thread did not stop within 10 s.")
        self._sync_controls()

    def _run_error(self, why: str) -> None:
        if self._is_current(self.sender()):
            self.show_error("Playback stopped", why)

    def _run_finished(self, outcome: RunOutcome) -> None:
        worker = self.sender()
        if self._is_current(worker):
            self._run.thread.wait(2000)
            if outcome.reason is EndReason.FINISHED:
                self.show_message(f"Finished: end of {outcome.source_id}" + _skipped_text(outcome))
            elif outcome.reason is not EndReason.STOPPED and not self.message_label.is_error():
                self.show_error("Playback ended", outcome.detail or outcome.source_id)  # a truncated file, ...
            self._retired.append(self._run)
            self._run = None
        # the run's last signal has arrived: now it can be freed
        self._retired = [r for r in self._retired if r.worker is not worker]
        self._sync_controls()

    # -- frames --------------------------------------------------------------------------

    def _show_result(self, shown: ShownFrame) -> None:
        worker = self.sender()
        if isinstance(worker, PipelineWorker):
            worker.frame_shown()
        if not self._is_current(worker):
            return  # a late frame from a run already stopped
        self.view.set_frame(shown.image_bgr)
        self.face_panel.show_faces(shown.result.faces, self.pipeline.spec)
        self.last_shown = shown
        self.frames_shown += 1
        self.stats.add(shown.result.timings_ms, shown.result.dropped_frames + shown.display_skipped,
                       time.monotonic())
        self._update_stats()

    def _update_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._status_at < STATUS_EVERY_S:
            return
        self._status_at = now
        self.stats_label.setText(self.stats.text(self.pipeline.provider if self.pipeline else None))

    # -- recording -----------------------------------------------------------------------

    def record_dir(self) -> Path:
        return Path(self.settings.record_dir or default_record_dir())

    def choose_record_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Record into folder", str(self.record_dir()))
        if path:
            self.settings = self.settings.replace(record_dir=path)
            self._save()
            self.show_message(f"Recordings go to {path}")

    def set_recording(self, on: bool) -> None:
        if not self.is_running():
            if on:
                self.show_message("Play a source first, then record.")
            self._sync_controls()
            return
        worker = self._run.worker
        if on:
            path = self.record_dir() / time.strftime("faceattr-%Y%m%d-%H%M%S.mp4")
            worker.start_recording(path)
            self.show_message(f"Recording to {path}…")
        else:
            worker.stop_recording()

    def _recording_event(self, what: str, text: str) -> None:
        if what == "saved":
            self.last_recording = Path(text)
            self.show_message(f"Saved recording: {text}")
        elif what == "failed":
            self.show_error("Recording failed", text)
        self._sync_controls()

    # -- messages ------------------------------------------------------------------------

    def show_message(self, text: str) -> None:
        self.message_label.show_message(text)

    def show_error(self, title: str, text: str) -> None:
        """The sentence in the status line (red) and in a non-modal box: the window stays usable."""
        self.message_label.show_error(title, text)

    @property
    def error_box(self) -> QMessageBox | None:
        return self.message_label.error_box

    def message(self) -> str:
        return self.message_label.text()

    # -- drag and drop, closing ----------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            event.acceptProposedAction()
            self.open_file(urls[0].toLocalFile())

    def _save(self) -> None:
        save_settings(self.store, self.settings)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop the run (a worker still finishing stays referenced by app.worker until its
        thread ends) and drop a model still loading: its result is no longer wanted."""
        self._stop_run()
        loader, self._loader = self._loader, None
        if loader is not None:
            loader.done.disconnect(self._loaded)
            loader.failed.disconnect(self._load_failed)
        self.settings = self.settings.replace(geometry=bytes(self.saveGeometry().data()))
        self._save()
        self.message_label.close_box()
        super().closeEvent(event)

