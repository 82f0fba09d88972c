"""Snapshot and "Export results…": what the window writes to disk besides recordings.

- :func:`save_snapshot` writes the annotated frame as PNG and its face records as JSON
  (the same records as ``annotate --jsonl``, from :func:`engine.records.face_records`),
  next to each other under one name.
- :class:`ExportJob` runs the CLI's own engine path, :func:`engine.annotate.annotate_file`
  with the CLI's defaults (every frame detected) and the window's model, backend,
  detector and smallest face, in a background thread behind a cancellable progress
  dialog; the outputs carry the CLI's names (:func:`engine.annotate.output_paths`), so
  Export gives the same files as ``faceattr annotate INPUT -o OUTDIR --jsonl --csv``.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import QProgressDialog, QWidget

from app.errors import error_sentence
from engine.annotate import AnnotateSummary, annotate_file, output_paths
from engine.modelspec import ModelSpec
from engine.outdir import FolderInUseError, OutputFolderLock
from engine.pipeline import PipelineConfig
from engine.records import face_records
from engine.types import FrameResult


def snapshot_paths(folder: Path, result: FrameResult) -> tuple[Path, Path]:
    """'<folder>/faceattr-<date>-<time>-f<frame>.png' and the '.json' beside it (never an
    existing name)."""
    stem = time.strftime("faceattr-%Y%m%d-%H%M%S") + f"-f{result.frame.index}"
    png = folder / f"{stem}.png"
    k = 1
    while png.exists() or png.with_suffix(".json").exists():
        k += 1
        png = folder / f"{stem}-{k}.png"
    return png, png.with_suffix(".json")


def save_snapshot(folder: Path, result: FrameResult, image_bgr: np.ndarray, spec: ModelSpec) -> tuple[Path, Path]:
    """Write the frame as shown (PNG) and its records (JSON); returns both paths.
    Raises OSError with the path named when either cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"{folder}: cannot create the snapshot folder ({e.strerror or e})") from e
    png, js = snapshot_paths(folder, result)
    ok, data = cv2.imencode(".png", image_bgr)
    if not ok:
        raise OSError(f"{png}: the frame could not be encoded as PNG")
    document = {"source": result.frame.source_id, "frame": result.frame.index,
                "time_s": round(float(result.frame.timestamp_s), 3), "model": spec.name,
                "image": png.name, "faces": face_records(result, spec)}
    try:
        png.write_bytes(data.tobytes())
        js.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    except OSError as e:
        with contextlib.suppress(OSError):
            png.unlink()
        raise OSError(f"{e.filename or png}: cannot write the snapshot ({e.strerror or e})") from e
    return png, js


def export_config(model_path: Path, backend: str, detector: str, min_face: int) -> PipelineConfig:
    """The CLI's pipeline for these choices: its defaults (detect every frame, no
    live-mode tracking shortcut) with the window's model, backend, detector, smallest face."""
    return PipelineConfig(model_path=model_path, backend=backend, detector=detector, detect_every=1,
                          min_face=min_face)


def export_command(input_path: Path, out_dir: Path, config: PipelineConfig) -> str:
    """The same export as a command line (shown to the user, who may want to batch it)."""
    return (f"faceattr annotate '{input_path}' -o '{out_dir}' --jsonl --csv --model '{config.model_path}' "
            f"--backend {config.backend} --detector {config.detector} --min-face {config.min_face}")


class ExportJob(QObject):
    """One input annotated into ``out_dir`` on a QThread. ``progress(done, total)`` while
    it runs (total -1 when unknown), then ``done(summary)`` or ``failed(sentence)``."""

    progress = Signal(int, int)
    done = Signal(object)  # AnnotateSummary
    failed = Signal(str)

    def __init__(self, input_path: Path, out_dir: Path, config: PipelineConfig) -> None:
        super().__init__()
        self.input_path, self.out_dir, self.config = Path(input_path), Path(out_dir), config
        self.outputs = output_paths(self.input_path, self.out_dir)
        self._cancel = threading.Event()
        self.thread = QThread()
        self.thread.setObjectName("faceattr-export")
        self.moveToThread(self.thread)
        self.thread.started.connect(self._run)

    def start(self) -> None:
        from app.worker import _keep_until_ended  # the thread outlives a closed window

        self.thread.start()
        _keep_until_ended(self)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @Slot()
    def _run(self) -> None:
        def progress(done: int, total: int | None) -> None:
            self.progress.emit(done, -1 if total is None else total)

        lock = OutputFolderLock(self.out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
            try:
                summary = annotate_file(self.input_path, self.out_dir, self.config, jsonl=True, csv=True,
                                        video=True, progress=progress, stop=self._cancel)
            finally:
                lock.release()
        except FolderInUseError as e:
            self.failed.emit(str(e))
        except Exception as e:  # noqa: BLE001 - one sentence for the window
            self.failed.emit(error_sentence(e, str(self.input_path)))
        else:
            if summary.interrupted:  # cancelled: nothing half-written is left behind
                for path in summary.outputs:
                    with contextlib.suppress(OSError):
                        _remove(path)
            self.done.emit(summary)
        finally:
            self.thread.quit()

    def wait(self, timeout_s: float = 60.0) -> bool:
        return self.thread.wait(int(timeout_s * 1000))


def _remove(path: Path) -> None:
    if path.is_dir():
        for p in path.iterdir():
            p.unlink()
        path.rmdir()
    else:
        path.unlink()


def progress_dialog(parent: QWidget, job: ExportJob) -> QProgressDialog:
    """A window-modal progress dialog whose Cancel cancels ``job``."""
    dialog = QProgressDialog(f"Exporting {job.input_path.name}…", "Cancel", 0, 0, parent)
    dialog.setWindowTitle("Export results")
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(0)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.canceled.connect(job.cancel)

    def advance(done: int, total: int) -> None:
        if total > 0:
            dialog.setMaximum(total)
            dialog.setValue(min(done, total))
            dialog.setLabelText(f"Exporting {job.input_path.name}: frame {done} of {total}")
        else:
            dialog.setLabelText(f"Exporting {job.input_path.name}: frame {done}")

    job.progress.connect(advance)
    return dialog


def summary_sentence(summary: AnnotateSummary, out_dir: Path) -> str:
    """What the status line says when an export ends."""
    if summary.interrupted:
        return "Export cancelled; nothing was kept."
    names = ", ".join(p.name for p in summary.outputs)
    head = f"Exported {summary.frames} frames ({summary.faces} faces) to {out_dir}: {names}"
    return head + (f"; {summary.error}" if summary.error else "")
