"""Writers for results: the annotated video, per-face JSONL and CSV.

Nothing already produced is lost: JSONL and CSV are flushed after every frame, so a
process that dies leaves every finished frame on disk. The video is written under a
temporary name (``<name>.part.mp4``) and renamed when it is closed, also when closing
after an error, so a complete-looking name always holds a playable file; on close its
index (``moov``) is moved to the front, so the file streams and a copy cut short still
plays up to the cut.

Record schema (one per face and frame; frames without faces write nothing)::

    {"frame": 12, "time_s": 0.4, "track_id": 3, "box_xyxy": [x0, y0, x1, y1], "score": 1.234,
     "gender": "female", "gender_confidence": 0.97, "age": 34.2, "age_confidence": null, ...}

Labels are strings, numbers are rounded, NaN is written as null (JSONL) / empty (CSV).
"""
from __future__ import annotations

import csv
import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.modelspec import ModelSpec, TaskSpec
from engine.sources import quiet_opencv
from engine.types import FrameResult, TaskPrediction

FOURCCS = ("avc1", "mp4v")  # H.264 where this OpenCV build can encode it, else MPEG-4 part 2
_failed_fourccs: set[str] = set()  # tried once per process: a failed try prints FFmpeg noise


class WriteError(OSError):
    """An output file cannot be written; the message names the file and the reason."""


# --- records -------------------------------------------------------------------------

def _num(value: float, digits: int) -> float | None:
    v = float(value)
    return round(v, digits) if math.isfinite(v) else None


def _task_value(task: TaskSpec, pred: TaskPrediction, i: int) -> Any:
    if task.kind in ("binary", "multiclass"):
        v = float(pred.value[i])
        if not math.isfinite(v):
            return None
        k = int(round(v))
        return task.labels[k] if 0 <= k < len(task.labels) else None
    if task.kind == "landmarks":
        if pred.points_xy is None:
            return None
        return [[_num(x, 1), _num(y, 1)] for x, y in np.asarray(pred.points_xy[i], np.float64)]
    return _num(pred.value[i], 2)


def task_columns(spec: ModelSpec) -> list[str]:
    cols = []
    for t in spec.tasks:
        cols += [t.name, f"{t.name}_confidence"]
    return cols


def face_records(result: FrameResult, spec: ModelSpec) -> list[dict[str, Any]]:
    """One dict per face of ``result`` in the schema above (tasks in ``spec`` order)."""
    faces = result.faces
    records = []
    for i in range(len(faces)):
        rec: dict[str, Any] = {
            "frame": int(result.frame.index),
            "time_s": _num(result.frame.timestamp_s, 3),
            "track_id": int(faces.track_id[i]),
            "box_xyxy": [_num(v, 1) for v in faces.xyxy[i]],
            "score": _num(faces.score[i], 3),
        }
        for task in spec.tasks:
            pred = faces.tasks.get(task.name)
            if pred is None:
                rec[task.name] = rec[f"{task.name}_confidence"] = None
                continue
            rec[task.name] = _task_value(task, pred, i)
            rec[f"{task.name}_confidence"] = _num(pred.confidence[i], 3)
        records.append(rec)
    return records


# --- text writers ------------------------------------------------------------------------

class _TextWriter:
    def __init__(self, path: str | Path, spec: ModelSpec) -> None:
        self.path = Path(path)
        self.spec = spec
        self.faces_written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", newline="", encoding="utf-8")
        except OSError as e:
            raise WriteError(f"{self.path}: cannot write ({e.strerror or e})") from e

    def write(self, result: FrameResult) -> None:
        records = face_records(result, self.spec)
        if not records:
            return
        self._write_records(records)
        self._file.flush()  # per frame: a process that dies keeps every finished frame
        self.faces_written += len(records)

    def _write_records(self, records: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class JsonlWriter(_TextWriter):
    """One JSON object per face per line."""

    def _write_records(self, records):
        self._file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


class CsvWriter(_TextWriter):
    """The JSONL columns with the box split in ``box_x0 .. box_y1``; landmark points as JSON."""

    def __init__(self, path: str | Path, spec: ModelSpec) -> None:
        super().__init__(path, spec)
        self.columns = ["frame", "time_s", "track_id", "box_x0", "box_y0", "box_x1", "box_y1",
                        "score", *task_columns(spec)]
        self._csv = csv.DictWriter(self._file, fieldnames=self.columns, lineterminator="\n")
        self._csv.writeheader()
        self._file.flush()

    def _write_records(self, records):
        for r in records:
            row = dict(r)
            for name, v in zip(("box_x0", "box_y0", "box_x1", "box_y1"), row.pop("box_xyxy")):
                row[name] = v
            for k, v in row.items():
                if v is None:
                    row[k] = ""
                elif isinstance(v, list):
                    row[k] = json.dumps(v)
            self._csv.writerow(row)


# --- video ---------------------------------------------------------------------------------

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


class VideoWriter:
    """An mp4 file: H.264 ('avc1') where OpenCV can encode it, else 'mp4v'.

    ``write`` takes the (rendered) image, or a FrameResult whose frame image is written
    as is. Frames of another size are letterboxed to ``size_wh``.
    """

    def __init__(self, path: str | Path, fps: float, size_wh: tuple[int, int]) -> None:
        self.path = Path(path)
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        self.fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else 30.0
        self.frames_written = 0
        self.part_path = self.path.with_name(self.path.stem + ".part" + (self.path.suffix or ".mp4"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(f"{self.path}: cannot write ({e.strerror or e})") from e
        self._writer = None
        self.fourcc = ""
        for fourcc in FOURCCS:
            if fourcc in _failed_fourccs:
                continue
            with quiet_opencv():  # a missing encoder is not an error yet
                writer = cv2.VideoWriter(str(self.part_path), cv2.CAP_FFMPEG,
                                         cv2.VideoWriter_fourcc(*fourcc), self.fps, self.size_wh)
            if writer.isOpened():
                self._writer, self.fourcc = writer, fourcc
                break
            writer.release()
            _failed_fourccs.add(fourcc)
        if self._writer is None:
            _failed_fourccs.difference_update(FOURCCS)  # the folder may be the cause: retry next time
            self.part_path.unlink(missing_ok=True)
            raise WriteError(f"{self.path}: cannot write an mp4 video here "
                             f"(no encoder among {', '.join(FOURCCS)} opened, or the folder is not writable)")

    def write(self, image: np.ndarray | FrameResult) -> None:
        if self._writer is None:
            raise WriteError(f"{self.path}: the video is already closed")
        image_bgr = image.frame.image_bgr if isinstance(image, FrameResult) else image
        self._writer.write(np.ascontiguousarray(_fit(image_bgr, self.size_wh)))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and give it its final name (keeps what was written)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if not self.part_path.exists():
            return
        try:
            move_index_to_front(self.part_path)
        except (OSError, ValueError):
            pass  # the file still plays with its index at the end
        os.replace(self.part_path, self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- mp4 "faststart" ----------------------------------------------------------------------

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex"}


def _atoms(data: bytes, start: int, end: int):
    """(type, offset, size, header size) of each box in ``data[start:end]``."""
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[i + 8:i + 16])[0]
            header = 16
        elif size == 0:
            size = end - i
        if size < header or i + size > end:
            raise ValueError(f"bad mp4 box {kind!r} at {i}")
        yield kind, i, size, header
        i += size


def _shift_chunk_offsets(moov: bytearray, start: int, end: int, shift: int) -> None:
    for kind, i, size, header in list(_atoms(moov, start, end)):
        if kind in _CONTAINERS:
            _shift_chunk_offsets(moov, i + header, i + size, shift)
        elif kind in (b"stco", b"co64"):
            wide = kind == b"co64"
            fmt, width = (">Q", 8) if wide else (">I", 4)
            (count,) = struct.unpack(">I", moov[i + header + 4:i + header + 8])
            base = i + header + 8
            for k in range(count):
                at = base + k * width
                (v,) = struct.unpack(fmt, moov[at:at + width])
                v += shift
                if not wide and v >= 2 ** 32:
                    raise ValueError("chunk offset overflows stco")
                struct.pack_into(fmt, moov, at, v)


def _top_level_boxes(f, file_size: int) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of each top-level box, read by seeking from header to header."""
    boxes = []
    i = 0
    while i + 8 <= file_size:
        f.seek(i)
        size, kind = struct.unpack(">I4s", f.read(8))
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0]
        elif size == 0:
            size = file_size - i
        if size < 8 or i + size > file_size:
            raise ValueError(f"bad mp4 box {kind!r} at {i}")
        boxes.append((kind, i, size))
        i += size
    return boxes


def move_index_to_front(path: str | Path) -> bool:
    """Move an mp4's ``moov`` box (its index) before ``mdat``, as ffmpeg's ``+faststart`` does.

    Returns False when there is nothing to do (already in front, or a layout this does
    not handle: the index must be the last box). The media data is copied in blocks.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".faststart")
    with open(path, "rb") as f:
        boxes = _top_level_boxes(f, path.stat().st_size)
        kinds = [k for k, _, _ in boxes]
        if (b"moov" not in kinds or b"mdat" not in kinds or kinds[-1] != b"moov"
                or kinds.index(b"moov") < kinds.index(b"mdat")):
            return False
        _, m_at, m_size = boxes[-1]
        f.seek(m_at)
        moov = bytearray(f.read(m_size))
        header = 16 if struct.unpack(">I", moov[:4])[0] == 1 else 8
        _shift_chunk_offsets(moov, header, m_size, m_size)
        insert_at = boxes[kinds.index(b"mdat")][1]
        try:
            with open(tmp, "wb") as out:
                f.seek(0)
                out.write(f.read(insert_at))
                out.write(moov)
                f.seek(insert_at)
                remaining = m_at - insert_at
                while remaining > 0:
                    block = f.read(min(remaining, 1 << 22))
                    if not block:
                        raise ValueError("file shorter than its boxes say")
                    out.write(block)
                    remaining -= len(block)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return True
