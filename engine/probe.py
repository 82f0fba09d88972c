"""Why a file OpenCV could not open as video is not one: a cheap look at its bytes.

OpenCV's ``VideoCapture`` only says that it failed. For the cases a user can act on, the
container itself tells more, without decoding anything: an audio-only file (MP3/AAC
frames, WAV, AIFF, FLAC, Ogg Vorbis/Opus/FLAC/Speex, an M4A/MP4/MOV whose tracks are all
sound), an MP4/MOV cut off before its index was written, a text file (an HTML page saved
under a video's name, a Git LFS pointer), an empty file. Anything else gives None and the
caller keeps its generic sentence.

Pure Python, no dependencies. Reads the first 64 KiB and, for MP4/MOV, the top-level box
headers (16 bytes each, at most 4096 boxes) and the 'moov' box if it is at most 4 MiB.
"""
from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import BinaryIO, Iterator

AUDIO_ONLY = "no video stream (the file holds audio only)"
NO_MOOV = ("the file is truncated: its MP4/MOV index ('moov' box) is missing, as when a recording "
           "is cut off before it finishes")
_HEAD = 64 * 1024
_MAX_MOOV = 4 * 1024 * 1024
_MAX_BOXES = 4096
# First box types an ISO-BMFF (MP4, M4A, MOV, 3GP) file may start with.
_BMFF_FIRST = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot", b"styp"}
_VIDEO_HANDLERS = {"vide", "auxv", "pict"}
_HANDLER_WORDS = {"soun": "audio", "text": "subtitles", "sbtl": "subtitles", "subt": "subtitles",
                  "clcp": "captions", "meta": "metadata", "tmcd": "timecode", "hint": "hints"}
_OGG_AUDIO = (b"\x01vorbis", b"OpusHead", b"\x7fFLAC", b"Speex   ")
_OGG_METADATA = (b"fishead\x00", b"fisbone\x00")  # Ogg skeleton: describes the other streams


def video_problem(path: Path | str) -> str | None:
    """Why ``path`` holds no playable video, as a phrase to follow "<path>: ", or None if unknown.

    Meant for a file OpenCV failed to open: it does not prove a file is a good video.
    """
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            return "it is a folder, not a video file"
        if not stat.S_ISREG(mode):
            return None  # a pipe or device: opening it could block until a writer comes
        with Path(path).open("rb") as f:
            head = f.read(_HEAD)
            if not head:
                return "the file is empty (0 bytes)"
            if _is_audio(head):
                return AUDIO_ONLY
            if head[4:8] in _BMFF_FIRST and (_u32(head, 0) >= 8 or _u32(head, 0) in (0, 1)):
                return _mp4_problem(f)
            if head.startswith(b"OggS"):
                return _ogg_problem(head, whole=len(head) < _HEAD)
            return _text_problem(head)
    except FileNotFoundError:
        return "the file does not exist"
    except OSError as e:
        return f"the file cannot be read ({e.strerror or e})"


def _u32(data: bytes, at: int) -> int:
    return struct.unpack_from(">I", data, at)[0] if at + 4 <= len(data) else -1


# -- audio signatures --------------------------------------------------------------------------


def _is_audio(head: bytes) -> bool:
    if head.startswith(b"ID3") and len(head) >= 10 and head[3] < 0xFF and head[4] < 0xFF:
        return True  # an ID3v2 tag: MP3 (or AAC) audio follows
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return True
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return True
    if head.startswith(b"fLaC"):
        return True
    return _mpeg_audio_frames(head)


_MP3_KBPS = {  # (MPEG-1?, layer) -> bitrate by index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_KBPS[(False, 3)] = _MP3_KBPS[(False, 2)]
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_frame_length(h: bytes) -> int | None:
    """Length of the MPEG audio (MP1/2/3) or ADTS AAC frame whose header starts ``h``, else None."""
    if len(h) < 7 or h[0] != 0xFF or h[1] & 0xE0 != 0xE0:
        return None
    if h[1] & 0xF6 == 0xF0:  # ADTS (AAC): 12-bit sync, layer 00; the header holds the length
        length = ((h[3] & 0x03) << 11) | (h[4] << 3) | (h[5] >> 5)
        return length if (h[2] >> 2) & 0x0F < 13 and length >= 7 else None
    version, layer = (h[1] >> 3) & 3, 4 - ((h[1] >> 1) & 3)
    bitrate_index, rate_index, padding = h[2] >> 4, (h[2] >> 2) & 3, (h[2] >> 1) & 1
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved values (and free bitrate, whose length we cannot know)
    bitrate = _MP3_KBPS[(version == 3, layer)][bitrate_index - 1] * 1000
    rate = _MP3_RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    return (72 if layer == 3 and version != 3 else 144) * bitrate // rate + padding


def _mpeg_audio_frames(head: bytes) -> bool:
    """Two MPEG audio / ADTS frames back to back at the start: one header alone is too weak a sign."""
    first = _mpeg_frame_length(head)
    return first is not None and _mpeg_frame_length(head[first:first + 7]) is not None


# -- MP4 / MOV ---------------------------------------------------------------------------------


def _boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of the boxes laid end to end in ``data``; stops at a malformed one."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= len(data):
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = len(data) - pos
        if size < header:
            return
        yield kind, data[pos + header:pos + size]
        pos += size


def _child(payload: bytes, kind: bytes) -> bytes | None:
    return next((p for k, p in _boxes(payload) if k == kind), None)


def _mp4_problem(f: BinaryIO) -> str | None:
    size = os.fstat(f.fileno()).st_size
    pos = 0
    for _ in range(_MAX_BOXES):
        if pos + 8 > size:
            return NO_MOOV  # every top-level box read (or the last runs past the end): no index
        f.seek(pos)
        header = f.read(16)
        box_size, kind = struct.unpack_from(">I4s", header)
        start = 8
        if box_size == 1:
            if len(header) < 16:
                return NO_MOOV
            box_size, start = struct.unpack_from(">Q", header, 8)[0], 16
        elif box_size == 0:
            box_size = size - pos
        if box_size < start:
            return None  # not a box structure we understand
        if kind == b"moov":
            if box_size > _MAX_MOOV:
                return None
            f.seek(pos + start)
            return _tracks_problem(f.read(box_size - start))
        pos += box_size
    return None


def _tracks_problem(moov: bytes) -> str | None:
    """Read each track's handler type (moov > trak > mdia > hdlr) and say what is missing."""
    handlers = []
    for kind, trak in _boxes(moov):
        if kind != b"trak":
            continue
        mdia = _child(trak, b"mdia")
        hdlr = _child(mdia, b"hdlr") if mdia is not None else None
        if hdlr is None or len(hdlr) < 12:
            return None  # a track we cannot read might be the video
        handlers.append(hdlr[8:12].decode("latin-1"))
    if not handlers:
        return "no video stream (the MP4/MOV file lists no tracks)"
    if _VIDEO_HANDLERS & set(handlers):
        return None
    if "soun" in handlers:
        return AUDIO_ONLY
    words = sorted({_HANDLER_WORDS.get(h, f"'{h}'") for h in handlers})
    return f"no video stream (its tracks hold {', '.join(words)})"


# -- Ogg ---------------------------------------------------------------------------------------


def _ogg_problem(head: bytes, whole: bool) -> str | None:
    """The codec of each logical stream, from the beginning-of-stream pages that open the file."""
    audio, pos = 0, 0
    while pos + 27 <= len(head) and head[pos:pos + 4] == b"OggS":
        flags, segments = head[pos + 5], head[pos + 26]
        body = pos + 27 + segments
        if not flags & 0x02:
            break  # the first page that begins no stream: every stream has been seen
        first_packet = head[body:body + 8]
        if first_packet.startswith(_OGG_AUDIO):
            audio += 1
        elif not first_packet.startswith(_OGG_METADATA):
            return None  # Theora video, or a codec we do not know
        pos = body + sum(head[pos + 27:body])
    else:
        if not (whole and pos >= len(head)):
            return None  # the stream headers run past what we read
    return AUDIO_ONLY if audio else None


# -- text --------------------------------------------------------------------------------------


def _decode_text(head: bytes) -> str | None:
    """``head`` as UTF-8 (or UTF-16 with a byte-order mark) text, or None if it is not text."""
    encoding = "utf-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8"
    if encoding == "utf-16":
        head = head[:len(head) // 2 * 2]
    try:
        return head.decode(encoding)
    except UnicodeDecodeError as e:
        if e.start >= len(head) - 3 and e.reason == "unexpected end of data":
            return head[:e.start].decode(encoding, errors="replace")  # a character cut by the read
        return None


def _text_problem(head: bytes) -> str | None:
    text = _decode_text(head)
    if text is None:
        return None
    control = sum(1 for c in text if not (c.isprintable() or c in "\t\n\r\f\v\x1b"))
    if control > len(text) // 100:
        return None
    text = text.lstrip("\ufeff")
    if text.startswith("version https://git-lfs.github.com/spec/"):
        return "the file is a Git LFS pointer, not the video itself (fetch it with `git lfs pull`)"
    start = text.lstrip().lower()
    if start.startswith(("<!doctype html", "<html")):
        return "the file is a web page (HTML), not a video"
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    if not line:
        return "the file holds only blank text, not a video"
    return f'the file holds text, not a video (it begins "{line[:40]}{"..." if len(line) > 40 else ""}")'
