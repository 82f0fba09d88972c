"""The mp4 container, read and rewritten without a media library.

- :func:`move_index_to_front`: the ``moov`` box (the index) before ``mdat``, as ffmpeg's
  ``+faststart`` does, so the file streams and a copy cut short still plays up to the cut.
- :func:`is_complete`: whether an mp4 ends with whole boxes and holds an index. OpenCV's
  writer reports no write errors (a full disk gives a truncated file and no word), so
  the video sink checks its file with this when it closes.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

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


def is_complete(path: str | Path) -> bool:
    """True when the file is a sequence of whole mp4 boxes holding ``moov`` and ``mdat``."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            kinds = [k for k, _, _ in _top_level_boxes(f, path.stat().st_size)]
    except (OSError, ValueError, struct.error):
        return False
    return b"moov" in kinds and b"mdat" in kinds
