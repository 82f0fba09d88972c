"""What the window writes and tells (a mixin of :class:`app.main_window.MainWindow`):
recordings, snapshots, "Export results…", and the Help dialogs.

Where files go: recordings to the recordings folder (File ▸ Recordings folder…, default
~/Videos/FaceAttr), snapshots to the snapshots folder (default: the recordings folder),
exports to the folder the user picks; each says its path in the status line.
"""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from app.about import about_markdown, card_markdown, markdown_dialog, shortcuts_markdown
from app.errors import error_sentence
from app.export import ExportJob, export_command, export_config, progress_dialog, save_snapshot, summary_sentence
from app.preferences import PreferencesDialog
from app.settings import SAMPLE_SOURCE, default_record_dir
from app.source_picker import resolve_spec
from engine.assets import default_model_path

CODEC_NAMES = {"avc1": "H.264", "mp4v": "MPEG-4 Part 2"}


class OutputsMixin:
    """Needs: settings, pipeline, last_shown, shown_image, _run, is_running(), show_message /
    show_error, _sync_controls, _save."""

    # -- recording ---------------------------------------------------------------------------

    def record_dir(self) -> Path:
        return Path(self.settings.record_dir or default_record_dir())

    def choose_record_dir(self) -> None:
        self._choose_folder("record_dir", "Recordings", self.record_dir())

    def _choose_folder(self, setting: str, what: str, current: Path) -> None:
        """Ask for a folder, remember it as ``setting`` and say where ``what`` now go."""
        path = QFileDialog.getExistingDirectory(self, f"{what} folder", str(current))
        if path:
            self.settings = self.settings.replace(**{setting: path})
            self._save()
            self.show_message(f"{what} go to {path}")

    def preferences_dialog(self, accept: bool | None = None) -> None:
        """File ▸ Preferences…; ``accept`` (tests) answers the dialog without showing it."""
        dialog = PreferencesDialog(self, self.settings, self.store.fileName())
        if accept is None:
            accept = dialog.exec() == PreferencesDialog.DialogCode.Accepted
        if accept:
            self.settings = dialog.chosen()
            self._save()
            self.show_message(f"Recordings go to {self.record_dir()}, snapshots to {self.snapshot_dir()}")

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
        if what == "started":
            self._recording_since = time.monotonic()
            worker = self.sender()
            codec = getattr(worker, "recording_codec", "")
            if codec and codec != "avc1":
                self.show_message(f"Recording to {text} as {CODEC_NAMES.get(codec, codec)}: this OpenCV has no "
                                  "H.264 encoder, so some browsers and players will not open it")
        elif what == "saved":
            self._recording_since = None
            self.last_recording = Path(text)
            self.show_message(f"Saved recording: {text}")
        elif what == "failed":
            self._recording_since = None
            self.show_error("Recording failed", text)
        self._sync_controls()

    # -- snapshot ----------------------------------------------------------------------------

    def snapshot_dir(self) -> Path:
        return Path(self.settings.snapshot_dir) if self.settings.snapshot_dir else self.record_dir()

    def choose_snapshot_dir(self) -> None:
        self._choose_folder("snapshot_dir", "Snapshots", self.snapshot_dir())

    def snapshot(self) -> tuple[Path, Path] | None:
        """Save the frame on screen (as drawn) as PNG and its faces as JSON, side by side."""
        if self.last_shown is None or self.pipeline is None:
            self.show_message("Nothing to save yet: play a source first.")
            return None
        try:
            png, js = save_snapshot(self.snapshot_dir(), self.last_shown.result, self.shown_image, self.pipeline.spec)
        except OSError as e:
            self.show_error("Snapshot not saved", error_sentence(e))
            return None
        self.show_message(f"Snapshot saved: {png} and {js.name}")
        return png, js

    # -- export ------------------------------------------------------------------------------

    def export_input(self) -> Path | None:
        """The open file or folder (cameras and pipes have no end to export)."""
        spec = self._run_spec or self.picker.current_spec()
        if not spec or spec.startswith("camera:"):
            return None
        target, _ = resolve_spec(spec, self.cameras) if spec == SAMPLE_SOURCE else (Path(spec), False)
        return Path(target) if Path(target).exists() else None

    def export_dialog(self) -> None:
        source = self.export_input()
        if source is None:
            self.show_message("Export works on a file or folder: open one first (a camera has no end).")
            return
        out = QFileDialog.getExistingDirectory(self, f"Export results of {source.name} to", str(source.parent))
        if out:
            self.export_to(source, Path(out))

    def export_to(self, source: Path, out_dir: Path, show_progress: bool = True) -> ExportJob | None:
        """Annotate ``source`` into ``out_dir`` as ``faceattr annotate --jsonl --csv`` would,
        in the background; returns the job (its ``done`` / ``failed`` say how it ended)."""
        if self.export_job is not None:
            self.show_message("An export is still running; wait for it or cancel it.")
            return None
        s = self.settings
        config = export_config(Path(s.model_path) if s.model_path else default_model_path(), s.backend,
                               s.detector, s.min_face)
        job = ExportJob(source, out_dir, config)
        job.done.connect(self._export_done)
        job.failed.connect(self._export_failed)
        self.export_job = job
        self._export_progress = progress_dialog(self, job) if show_progress else None
        self.show_message(f"Exporting {source.name} to {out_dir} (same as: {export_command(source, out_dir, config)})…")
        job.start()
        return job

    def _end_export(self) -> None:
        job, self.export_job = self.export_job, None
        if job is not None:
            job.wait()
        if getattr(self, "_export_progress", None) is not None:
            self._export_progress.close()
            self._export_progress = None

    def _export_done(self, summary) -> None:
        if self.export_job is None:  # one export at a time: this is its end
            return
        out_dir = self.export_job.out_dir
        self._end_export()
        if summary.error and not summary.interrupted:
            self.show_error("Export incomplete", summary_sentence(summary, out_dir))
        else:
            self.show_message(summary_sentence(summary, out_dir))

    def _export_failed(self, why: str) -> None:
        if self.export_job is None:
            return
        self._end_export()
        self.show_error("Export failed", why)

    # -- Help --------------------------------------------------------------------------------

    def show_shortcuts(self):
        return markdown_dialog(self, "Keyboard shortcuts", shortcuts_markdown())

    def show_about(self):
        from app.info import versions

        p = self.pipeline
        path = Path(self.settings.model_path) if self.settings.model_path else default_model_path()
        return markdown_dialog(self, "About FaceAttr", about_markdown(
            versions(), p.provider if p else None, p.spec if p else None, path))

    def show_model_card(self):
        if self.pipeline is None:
            self.show_message("No model is loaded: open one with File ▸ Open model….")
            return None
        path = Path(self.settings.model_path) if self.settings.model_path else default_model_path()
        return markdown_dialog(self, f"Model card: {self.pipeline.spec.name}", card_markdown(self.pipeline.spec, path))
