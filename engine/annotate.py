"""Batch annotation of one file: the annotated video (or image) plus JSONL / CSV records.

:func:`annotate_file` never raises for a problem with the file itself (missing, not a
video, truncated, an output that cannot be written): it returns an
:class:`AnnotateSummary` whose ``error`` says what went wrong, so a batch goes on with
the next file. Whatever was written before a failure is kept and listed in ``outputs``.
Pass a ready :class:`Pipeline` to load the model once for many files.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2

from engine.pipeline import Pipeline, PipelineConfig
from engine.render import Renderer
from engine.sources import ImageSource, SourceError, open_source
from engine.write import CsvWriter, JsonlWriter, VideoWriter, WriteError

ProgressFn = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class AnnotateSummary:
    input: Path
    frames: int = 0
    faces: int = 0  # face records (one per face per frame)
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None  # why the file could not be (fully) annotated
    end_reason: str | None = None  # why the input ended early (truncated file), if it did
    warnings: tuple[str, ...] = ()  # skipped over (unreadable images in a folder)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def output_paths(input_path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Where each output of ``input_path`` goes: named after its stem."""
    stem = Path(input_path).stem or Path(input_path).name
    out_dir = Path(out_dir)
    return {"video": out_dir / f"{stem}.annotated.mp4",
            "image": out_dir / f"{stem}.annotated{_image_suffix(Path(input_path))}",
            "images": out_dir / f"{stem}.annotated", "jsonl": out_dir / f"{stem}.jsonl",
            "csv": out_dir / f"{stem}.csv"}


def _image_suffix(path: Path) -> str:
    """Annotated images keep JPEG as JPEG; everything else becomes PNG (lossless)."""
    return path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"


class _ImageWriter:
    """Annotated images: one file for an image input, a folder for a folder of images."""

    def __init__(self, path: Path, folder: bool) -> None:
        self.path = path
        self.folder = folder
        self.written: list[Path] = []
        if folder:
            path.mkdir(parents=True, exist_ok=True)

    def write(self, image_bgr, frame_source_id: str) -> None:
        target = self.path
        if self.folder:
            name = Path(frame_source_id)
            target = self.path / (name.stem + _image_suffix(name))
        ok, data = cv2.imencode(target.suffix, image_bgr)
        if not ok:
            raise WriteError(f"{target}: cannot encode the annotated image")
        try:
            target.write_bytes(data.tobytes())
        except OSError as e:
            raise WriteError(f"{target}: cannot write ({e.strerror or e})") from e
        self.written.append(target)

    def close(self) -> None:
        pass


def annotate_file(input_path: str | Path, out_dir: str | Path, config: PipelineConfig | Pipeline,
                  jsonl: bool = True, csv: bool = False, video: bool = True,
                  progress: ProgressFn | None = None, renderer: Renderer | None = None) -> AnnotateSummary:
    """Annotate one video or image file (or a folder of images) into ``out_dir``.

    Outputs: ``<stem>.annotated.mp4`` (a video input), ``<stem>.annotated.jpg`` (an
    image), ``<stem>.annotated/`` (a folder), ``<stem>.jsonl``, ``<stem>.csv``.
    ``progress(done, total)`` is called after each frame (total None when unknown).
    A model that cannot be loaded from ``config`` raises (it is not a per-file problem).
    """
    t0 = time.perf_counter()
    input_path = Path(input_path)
    pipeline = config if isinstance(config, Pipeline) else Pipeline.create(config)
    renderer = renderer or Renderer()
    paths = output_paths(input_path, out_dir)
    try:
        source = open_source(input_path)
    except SourceError as e:
        return AnnotateSummary(input_path, seconds=time.perf_counter() - t0, error=str(e))

    writers: list = []
    frames = faces = 0
    error = None
    started = False
    try:
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(f"{out_dir}: cannot create the output folder ({e.strerror or e})") from e
        if video:
            if isinstance(source, ImageSource):
                folder = input_path.is_dir()
                writers.append(_ImageWriter(paths["images"] if folder else paths["image"], folder))
            else:
                writers.append(VideoWriter(paths["video"], source.fps, source.size_wh))
        if jsonl:
            writers.append(JsonlWriter(paths["jsonl"], pipeline.spec))
        if csv:
            writers.append(CsvWriter(paths["csv"], pipeline.spec))
        visual = next((w for w in writers if isinstance(w, (VideoWriter, _ImageWriter))), None)
        records = [w for w in writers if w is not visual]
        started = True
        results = pipeline.run(source, live=False)
        with contextlib.closing(results):  # joins the capture thread even if a writer fails
          for result in results:
            if isinstance(visual, VideoWriter):
                visual.write(renderer(result.frame.image_bgr, result.faces, pipeline.spec))
            elif visual is not None:
                visual.write(renderer(result.frame.image_bgr, result.faces, pipeline.spec),
                             result.frame.source_id)
            for w in records:
                w.write(result)
            frames += 1
            faces += len(result.faces)
            if progress is not None:
                progress(frames, source.frame_count)
    except (SourceError, WriteError) as e:
        error = str(e)
    except OSError as e:
        error = f"{input_path}: {e.strerror or e}"
    finally:
        source.close()  # run() closes it too; this covers a failure before run started
        for w in writers:
            w.close()
    outputs: list[Path] = []
    for w in writers:
        if isinstance(w, _ImageWriter):
            outputs += w.written
        elif w.path.exists():
            outputs.append(w.path)
    return AnnotateSummary(
        input_path, frames, faces, time.perf_counter() - t0, outputs, error,
        pipeline.last_end_reason if started else None,
        tuple(pipeline.last_warnings) if started else ())
