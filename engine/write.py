"""Sinks: where results go (the annotated video or images, JSONL, CSV), one interface for all.

Every sink has ``write(result, image_bgr=None)`` (``image_bgr``: the rendered frame, for
the sinks whose ``visual`` is true), ``close()`` and ``abort()``, and is a context manager:

- a sink writes under a temporary name (``x.part.mp4``, ``x.mp4.part.jsonl``,
  ``x.annotated.part/``) and only :meth:`close` gives the output its final name, after
  checking it is whole: a complete-looking name always holds a complete output;
- :meth:`abort` (an interrupted run, a write error) finishes what was written, the video
  playable and the text ending on a whole line, and keeps it under the temporary name;
- JSONL and CSV are written a frame at a time, one write and a flush per frame, so a
  process that dies keeps every finished frame; a failed write is cut back to the last
  whole frame and raised as :class:`WriteError` naming the output.

OpenCV's video writer reports no write errors (a full disk gives a truncated file), so
the video sink checks free space as it goes and the finished file's boxes when it closes.
The record schema is :mod:`engine.records`.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from engine.modelspec import ModelSpec
from engine.mp4 import is_complete, move_index_to_front
from engine.records import face_records, task_columns
from engine.encoders import EncoderUnavailable, open_encoder
from engine.types import FrameResult

__all__ = ["WriteError", "VideoWriter", "JsonlWriter", "CsvWriter", "ImageWriter", "part_path",
           "face_records", "task_columns", "move_index_to_front"]

MIN_FREE_BYTES = 1 << 20  # the video sink stops with an error when less is left on the disk
FREE_CHECK_EVERY = 16  # frames between free-space checks


class WriteError(OSError):
    """An output cannot be written; the message names the output and the reason."""


def part_path(path: str | Path) -> Path:
    """The temporary name of ``path`` while it is written: 'x.mp4.jsonl' -> 'x.mp4.part.jsonl'."""
    path = Path(path)
    return path.with_name(f"{path.stem}.part{path.suffix}")


def _reason(e: OSError) -> str:
    return (e.strerror or str(e) or type(e).__name__).lower()


class _Sink:
    path: Path
    part: Path
    visual = False  # wants the rendered frame (engine.annotate.render_and_write renders it once)

    def write(self, result: FrameResult, image_bgr: np.ndarray | None = None) -> None:
        raise NotImplementedError

    def close(self) -> list[Path]:
        raise NotImplementedError

    def abort(self) -> list[Path]:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close() if exc_type is None else self.abort()


# --- text sinks ------------------------------------------------------------------------

class _TextWriter(_Sink):
    def __init__(self, path: str | Path, spec: ModelSpec) -> None:
        self.path = Path(path)
        self.part = part_path(self.path)
        self.spec = spec
        self.faces_written = 0
        self._good = 0  # bytes of whole frames written
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.part, "wb")
        except OSError as e:
            raise WriteError(f"{self.path}: cannot write ({_reason(e)})") from e
        header = self._header()
        if header:
            self._put(header)

    def _header(self) -> bytes:
        return b""

    def _encode(self, records: list[dict]) -> bytes:
        raise NotImplementedError

    def _put(self, data: bytes) -> None:
        try:
            self._file.write(data)
            self._file.flush()  # per frame: a process that dies keeps every finished frame
        except OSError as e:
            self._cut_back()
            raise WriteError(f"{self.path}: cannot write ({_reason(e)})") from e
        self._good += len(data)

    def _cut_back(self) -> None:
        """Drop a partly written frame: the file ends on its last whole line."""
        try:
            self._file.truncate(self._good)
        except (OSError, ValueError):
            try:
                os.truncate(self.part, self._good)
            except OSError:
                pass

    def write(self, result: FrameResult, image_bgr: np.ndarray | None = None) -> None:
        records = face_records(result, self.spec)
        if records:
            self._put(self._encode(records))
            self.faces_written += len(records)

    def _finish(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.close()
        except OSError:  # the last flush failed: keep the whole frames
            self._cut_back()

    def close(self) -> list[Path]:
        if self._file.closed and not self.part.exists():
            return [self.path] if self.path.exists() else []
        self._finish()
        os.replace(self.part, self.path)
        return [self.path]

    def abort(self) -> list[Path]:
        self._finish()
        return [self.part] if self.part.exists() else []


class JsonlWriter(_TextWriter):
    """One JSON object per face per line (schema: :mod:`engine.records`)."""

    def _encode(self, records):
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


class CsvWriter(_TextWriter):
    """The JSONL columns with the box split in ``box_x0 .. box_y1``; landmark points as JSON."""

    def __init__(self, path: str | Path, spec: ModelSpec) -> None:
        self.columns = ["source", "frame", "time_s", "track_id", "box_x0", "box_y0", "box_x1", "box_y1",
                        "score", *task_columns(spec)]
        super().__init__(path, spec)

    def _rows(self, rows: list[dict]) -> bytes:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, lineterminator="\n")
        if rows is None:
            writer.writeheader()
        else:
            writer.writerows(rows)
        return text.getvalue().encode("utf-8")

    def _header(self) -> bytes:
        return self._rows(None)

    def _encode(self, records):
        rows = []
        for r in records:
            row = dict(r)
            for name, v in zip(("box_x0", "box_y0", "box_x1", "box_y1"), row.pop("box_xyxy")):
                row[name] = v
            for k, v in row.items():
                if v is None:
                    row[k] = ""
                elif isinstance(v, list):
                    row[k] = json.dumps(v)
            rows.append(row)
        return self._rows(rows)


# --- images --------------------------------------------------------------------------

def image_suffix(path: Path) -> str:
    """Annotated images keep JPEG as JPEG; everything else becomes PNG (lossless)."""
    return path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"


class ImageWriter(_Sink):
    """Annotated images: one file for an image input, a folder for a folder of images
    (each image under its own name)."""

    visual = True

    def __init__(self, path: str | Path, folder: bool) -> None:
        self.path = Path(path)
        self.folder = folder
        self.part = part_path(self.path) if not folder else self.path.with_name(self.path.name + ".part")
        self.written: list[Path] = []
        try:
            if folder:
                if self.part.exists():
                    shutil.rmtree(self.part)
                self.part.mkdir(parents=True)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(f"{self.path}: cannot write ({_reason(e)})") from e

    def write(self, result: FrameResult, image_bgr: np.ndarray | None = None) -> None:
        image_bgr = result.frame.image_bgr if image_bgr is None else image_bgr
        target = self.part
        if self.folder:
            name = Path(result.frame.source_id)
            target = self.part / (name.stem + image_suffix(name))
        ok, data = cv2.imencode(target.suffix, image_bgr)
        if not ok:
            raise WriteError(f"{self.path}: cannot encode the annotated image")
        try:
            target.write_bytes(data.tobytes())
        except OSError as e:
            target.unlink(missing_ok=True)
            raise WriteError(f"{target if self.folder else self.path}: cannot write ({_reason(e)})") from e
        self.written.append(target)

    def close(self) -> list[Path]:
        if not self.part.exists():
            return [self.path] if self.path.exists() else []
        if self.folder and self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.part, self.path)
        return [self.path]

    def abort(self) -> list[Path]:
        return [self.part] if self.part.exists() else []


# --- video ---------------------------------------------------------------------------

def _fit(image_bgr: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """``image_bgr`` letterboxed into ``size_wh`` (a writer takes one frame size only)."""
    w, h = size_wh
    ih, iw = image_bgr.shape[:2]
    if (iw, ih) == (w, h):
        return image_bgr
    s = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class VideoWriter(_Sink):
    """An mp4 file: H.264 through PyAV (or OpenCV where it can), else MPEG-4 part 2
    (``engine/encoders.py``; ``codec`` says which).

    ``write`` takes the rendered image, or a FrameResult (with ``image_bgr``, or its own
    frame image). Frames of another size are letterboxed to ``size_wh``.
    """

    visual = True

    def __init__(self, path: str | Path, fps: float, size_wh: tuple[int, int]) -> None:
        self.path = Path(path)
        self.fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else 30.0
        self.frames_written = 0
        self.part = self.part_path = part_path(self.path if self.path.suffix else self.path.with_suffix(".mp4"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(f"{self.path}: cannot write ({_reason(e)})") from e
        try:
            self._writer = open_encoder(self.part, self.fps, (int(size_wh[0]), int(size_wh[1])))
        except EncoderUnavailable as e:
            self.part.unlink(missing_ok=True)
            raise WriteError(f"{self.path}: cannot write an mp4 video here ({e}, or the folder is not "
                             "writable)") from e
        self.size_wh = self._writer.size_wh
        self.fourcc, self.codec = self._writer.fourcc, self._writer.codec

    def write(self, image: np.ndarray | FrameResult, image_bgr: np.ndarray | None = None) -> None:
        if self._writer is None:
            raise WriteError(f"{self.path}: the video is already closed")
        if isinstance(image, FrameResult):
            image = image.frame.image_bgr if image_bgr is None else image_bgr
        if self.frames_written % FREE_CHECK_EVERY == 0:
            self._check_space()
        try:
            self._writer.write(np.ascontiguousarray(_fit(image, self.size_wh)))
        except Exception as e:  # noqa: BLE001 - PyAV raises its own errors (a full disk among them)
            raise WriteError(f"{self.path}: cannot write ({_reason(e) if isinstance(e, OSError) else e})") from e
        self.frames_written += 1

    def _check_space(self) -> None:
        try:
            free = shutil.disk_usage(self.part.parent).free
        except OSError:
            return
        if free < MIN_FREE_BYTES:
            raise WriteError(f"{self.path}: no space left on the device ({free // 1024} KiB free)")

    def _finish(self) -> bool:
        """Release the encoder and move the index to the front; True when the file is whole."""
        writer, self._writer = self._writer, None
        if writer is None:
            return self.part.exists() and is_complete(self.part)
        try:
            writer.release()
        except Exception:  # noqa: BLE001 - an encoder that cannot finish (a full disk): the check says so
            pass
        if not self.part.exists():
            return False
        try:
            move_index_to_front(self.part)
        except (OSError, ValueError):
            pass  # the file still plays with its index at the end
        return is_complete(self.part)

    def close(self) -> list[Path]:
        """Finish the file and give it its final name; raises WriteError if it is not whole."""
        if self._writer is None and not self.part.exists():
            return [self.path] if self.path.exists() else []
        if not self._finish():
            raise WriteError(f"{self.path}: the video could not be written completely "
                             f"(is the disk full?); what was written is in {self.part.name}")
        os.replace(self.part, self.path)
        return [self.path]

    def abort(self) -> list[Path]:
        """Finish what was written (playable) and keep it under the temporary name."""
        self._finish()
        return [self.part] if self.part.exists() else []
