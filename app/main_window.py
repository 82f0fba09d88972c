"""The main window: video view with its seek bar, the source picker, the side panel of
current faces, the status line; menus in :mod:`app.menus`, playback in
:mod:`app.playback`, snapshot and export in :mod:`app.export`, Help in :mod:`app.about`.

The UI thread never captures or infers: a :class:`~app.worker.PipelineWorker` does, and
models load in a :class:`~app.worker.BackgroundCall` (a TensorRT engine build can take
minutes). A model, backend or detector change builds a new pipeline first and swaps it
in only when that worked (playing on from the same frame); if it failed, the sentence is
shown and the old one is kept.

Sources: the remembered source changes only when a source the user chose has opened. A
remembered source that is gone at start (a file deleted, a camera unplugged) falls back
to the first camera, else the sample, and the status line says so; one that fails to
open is an error in the window, never a silent switch to something else.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QByteArray, QSettings, QTimer
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QLabel, QMainWindow, QMessageBox, QSplitter, QVBoxLayout, QWidget

from app import startup_probe
from app.face_panel import FacePanel
from app.menus import Menus
from app.outputs import OutputsMixin
from app.playback import PlaybackMixin
from app.settings import MAX_RECENT, SAMPLE_SOURCE, AppSettings, save_settings
from app.seekbar import SeekBar
from app.source_picker import SourcePicker, unavailable_reason
from app.status import LiveStats, MessageLine
from app.video_view import VideoView
from app.worker import BackgroundCall, PipelineWorker, ShownFrame, SourceInfo, WorkerThread
from engine.assets import default_model_path
from engine.pipeline import Pipeline, PipelineConfig
from engine.providers import short_provider
from engine.render import Renderer
from engine.sources import CameraInfo, Source, open_source

STATUS_EVERY_S = 0.25
STALL_TIMEOUT_S = PipelineConfig.stall_timeout_s


def pipeline_config(settings: AppSettings, stall_timeout_s: float = STALL_TIMEOUT_S) -> PipelineConfig:
    return PipelineConfig(
        model_path=Path(settings.model_path) if settings.model_path else default_model_path(),
        backend=settings.backend, detector=settings.detector, upsample=settings.upsample,
        min_face=settings.min_face, detect_every=settings.detect_every, stall_timeout_s=stall_timeout_s,
        # overlapped, the network gets one core and the locating half the other (benchmarks/live.py)
        overlap_network=settings.overlap_frames, model_threads=1 if settings.overlap_frames else None)


class MainWindow(PlaybackMixin, OutputsMixin, QMainWindow):
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
        self.shown_image = None  # what the view shows now (re-drawn when the View menu changes)
        self.last_recording: Path | None = None
        self.source_info: SourceInfo | None = None
        self._run: WorkerThread | None = None
        # stopped runs, kept alive until their 'finished' arrives: their late signals then
        # still come from a live object (a freed worker's address can be reused by the next)
        self._retired: list[WorkerThread] = []
        self._loader: BackgroundCall | None = None
        self._loading: tuple[AppSettings, tuple | None, bool] | None = None  # (settings, play args, initial)
        self._run_spec = ""
        self._run_remember = True  # whether the run's source becomes the remembered one once open
        self._run_note = ""  # why it plays instead of the remembered source, if it does
        self._playing_text = ""
        self._highlight: int | None = None  # the track selected in the face panel
        self._recording_since: float | None = None
        self.export_job = None
        self.stats = LiveStats()
        self._status_at = 0.0

        self.setWindowTitle("FaceAttr")
        self.setAcceptDrops(True)
        self.view = VideoView()
        self.seekbar = SeekBar()
        self.seekbar.seek_requested.connect(self.seek)
        self.face_panel = FacePanel()
        self.face_panel.track_selected.connect(self._select_track)
        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.view, 1)
        column.addWidget(self.seekbar)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.face_panel)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([960, 300])
        self.setCentralWidget(splitter)
        self.picker = SourcePicker(cameras)
        self.picker.chosen.connect(self.play_source)
        self.picker.open_requested.connect(self.open_file_dialog)
        self.menus = Menus(self, settings)
        self.menus.set_recent(settings.recent)
        self.menus.set_tasks(None, settings.hidden_tasks)
        self.seekbar.show_speed(settings.speed)
        self.message_label = MessageLine()
        self.stats_label = QLabel()
        self.statusBar().setSizeGripEnabled(False)
        self.statusBar().addWidget(self.message_label, 1)
        self.statusBar().addPermanentWidget(self.stats_label)
        self._ticker = QTimer(self)  # the status stays true while no frame arrives (paused, recording)
        self._ticker.timeout.connect(lambda: self._update_stats(force=True))
        self._ticker.start(500)
        if settings.geometry:
            self.restoreGeometry(QByteArray(settings.geometry))
        else:
            self.resize(1280, 760)
        self._sync_controls()

    # names the tests and older callers use
    play_action = property(lambda self: self.menus.play)
    pause_action = property(lambda self: self.menus.pause)
    stop_action = property(lambda self: self.menus.stop)
    record_action = property(lambda self: self.menus.record)
    open_folder_action = property(lambda self: self.menus.open_folder)
    backend_actions = property(lambda self: self.menus.backend_actions)
    detector_actions = property(lambda self: self.menus.detector_actions)
    detect_every_actions = property(lambda self: self.menus.detect_every_actions)
    min_face_actions = property(lambda self: self.menus.min_face_actions)
    min_face_menu = property(lambda self: self.menus.min_face_menu)

    def _sync_controls(self) -> None:
        """Menus and buttons show what is in effect."""
        running = self.is_running()
        self.menus.sync(self.settings, loaded=self.pipeline is not None, running=running,
                        paused=running and self._run.worker.paused,
                        recording=running and self._run.worker.recording_path is not None,
                        seekable=self.seekbar.seekable() and self.last_shown is not None,
                        has_frame=self.last_shown is not None)

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
        (:meth:`play_source`'s arguments), or else what was playing, from where it was."""
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
        was_playing, was_paused = self.is_running(), self.is_paused()
        current = self.picker.current_spec()
        at = self.current_frame() + 1 if self.seekbar.seekable() and self.last_shown is not None else 0
        if was_paused:
            at -= 1  # show the same frame again, on the new pipeline
        self._stop_run()
        self.pipeline = pipeline
        self.settings = settings
        self._save()
        self.face_panel.set_spec(pipeline.spec)
        self.menus.set_tasks(pipeline.spec, settings.hidden_tasks)
        notes = "; ".join(pipeline.notes)
        self.show_message(f"Model {pipeline.spec.name} on {short_provider(pipeline.provider)}"
                          + (f" ({notes})" if notes else ""))
        self._update_stats(force=True)
        self._sync_controls()
        if play:
            self.play_source(*play)
        elif was_playing:  # the same source, on the new pipeline, from the same place
            self.play_source(current, self._run_remember, self._run_note, start_frame=max(0, at), paused=was_paused)

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

    def set_overlap_frames(self, on: bool) -> None:
        if on != self.settings.overlap_frames:
            self._load(self.settings.replace(overlap_frames=on), play=None)

    def set_min_face(self, px: int) -> None:
        if px != self.settings.min_face:
            self._load(self.settings.replace(min_face=px), play=None)

    # -- sources -------------------------------------------------------------------------

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

    def _add_recent(self, spec: str) -> None:
        if spec == SAMPLE_SOURCE or spec.startswith("camera:") or not Path(spec).exists():
            return
        recent = (spec,) + tuple(r for r in self.settings.recent if r != spec)
        self.settings = self.settings.replace(recent=recent[:MAX_RECENT])
        self._save()
        self.menus.set_recent(self.settings.recent)

    # -- what the overlay shows (View menu) ------------------------------------------------

    def renderer(self) -> Renderer:
        s = self.settings
        return Renderer(show_boxes=s.show_boxes, show_landmarks=s.show_landmarks, show_track_ids=s.show_track_ids,
                        hidden_tasks=frozenset(s.hidden_tasks), min_confidence=s.min_confidence,
                        blur_faces=s.blur_faces, highlight_track=self._highlight)

    def set_view(self, **changes) -> None:
        """Change what the overlay shows; the frame on screen is redrawn at once."""
        self.settings = self.settings.replace(**changes)
        self._save()
        self._apply_renderer()
        self._sync_controls()

    def show_task(self, name: str, shown: bool) -> None:
        hidden = tuple(n for n in self.settings.hidden_tasks if n != name) + (() if shown else (name,))
        self.set_view(hidden_tasks=hidden)

    def set_min_confidence(self, value: float) -> None:
        self.set_view(min_confidence=float(value))

    def _select_track(self, track_id: int | None) -> None:
        self._highlight = track_id
        self._apply_renderer()

    def _apply_renderer(self) -> None:
        renderer = self.renderer()
        if self._run is not None:
            self._run.worker.renderer = renderer  # the worker draws the next frame with it
        if self.last_shown is not None and self.pipeline is not None and not (self.is_running() and not self.is_paused()):
            result = self.last_shown.result
            self.shown_image = renderer(result.frame.image_bgr, result.faces)
            self.view.set_frame(self.shown_image)

    def set_fullscreen(self, on: bool) -> None:
        self.showFullScreen() if on else self.showNormal()
        self.menuBar().setVisible(not on)
        self.statusBar().setVisible(not on)
        self.menus.toolbar.setVisible(not on)
        self.face_panel.setVisible(not on)

    def keyPressEvent(self, event) -> None:
        from PySide6.QtCore import Qt

        if event.key() == Qt.Key.Key_Escape and self.isFullScreen():
            self.set_fullscreen(False)
            self._sync_controls()
            return
        super().keyPressEvent(event)

    # -- frames --------------------------------------------------------------------------

    def _show_result(self, shown: ShownFrame) -> None:
        worker = self.sender()
        if isinstance(worker, PipelineWorker):
            worker.frame_shown()
        if not self._is_current(worker):
            return  # a late frame from a run already stopped
        self.view.set_frame(shown.image_bgr)
        self.face_panel.show_faces(shown.result.faces)
        self.seekbar.show_frame(shown.result.frame.index)
        first = self.last_shown is None
        self.last_shown = shown
        self.shown_image = shown.image_bgr
        self.frames_shown += 1
        self.stats.add(shown.result.timings_ms, shown.result.dropped_frames + shown.display_skipped,
                       time.monotonic())
        self._update_stats()
        if first or (self._run is not None and self._run.worker.paused):  # the run may have ended while showing
            self._sync_controls()
        if startup_probe.enabled():
            self._probe_startup(shown)

    def _probe_startup(self, shown: ShownFrame) -> None:
        """benchmarks/startup.py: note the first frame and the first labelled one, then quit."""
        startup_probe.mark("first_frame")
        faces = shown.result.faces
        if len(faces) and faces.tasks:
            startup_probe.mark("first_labelled_frame")
            startup_probe.finish(faces=len(faces), frame=shown.result.frame.index, model=self.settings.model_path,
                                 backend=self.settings.backend, detect_every=self.settings.detect_every)
            QApplication.instance().quit()

    def _update_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._status_at < STATUS_EVERY_S:
            return
        self._status_at = now
        running = self.is_running()
        still = self.last_shown is not None and self.last_shown.result.frame.still
        playing = running and not self._run.worker.paused and not still
        live = running and self.source_info is not None and self.source_info.is_live
        recording = self._recording_since is not None and running
        self.stats_label.setText(self.stats.text(self.pipeline.provider if self.pipeline else None, playing=playing,
                                                 live=live, recording_s=now - self._recording_since if recording else None))

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
        """Stop the run and any export (a thread still finishing stays referenced by
        app.worker until it ends) and drop a model still loading: its result is no longer wanted."""
        self._ticker.stop()
        self._stop_run()
        if self.export_job is not None:
            self.export_job.cancel()
        loader, self._loader = self._loader, None
        if loader is not None:
            loader.done.disconnect(self._loaded)
            loader.failed.disconnect(self._load_failed)
        self.settings = self.settings.replace(geometry=bytes(self.saveGeometry().data()))
        self._save()
        self.message_label.close_box()
        super().closeEvent(event)
