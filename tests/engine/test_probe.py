"""engine/probe.py: why a file is not a playable video, told from its bytes, on real files."""
from __future__ import annotations

import os
import struct
import threading
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.probe import AUDIO_ONLY, NO_MOOV, video_problem


# -- real files made here ----------------------------------------------------------------------


def _opencv_video(path: Path, fourcc: str = "mp4v") -> Path:
    """A real 10-frame video written by OpenCV (for .mp4 its 'moov' index comes after 'mdat')."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
    if not writer.isOpened():
        pytest.skip(f"this OpenCV build cannot write {fourcc} video")
    for i in range(10):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    assert cv2.VideoCapture(str(path)).read()[0], "OpenCV cannot read back its own video"
    return path


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        tone = (np.sin(np.arange(1600) * 0.2) * 8000).astype("<i2")
        w.writeframes(tone.tobytes())
    return path


MP3_HEADER = bytes([0xFF, 0xFB, 0x90, 0x64])  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz: 417-byte frames


def _mp3_frames(count: int = 6) -> bytes:
    return (MP3_HEADER + bytes(417 - 4)) * count


def _adts_frames(count: int = 6, length: int = 200) -> bytes:
    """AAC-LC, 44.1 kHz, stereo ADTS frames of ``length`` bytes (header without CRC)."""
    header = bytes([0xFF, 0xF1, 0x50, 0x80 | (length >> 11), (length >> 3) & 0xFF,
                    ((length & 7) << 5) | 0x1F, 0xFC])
    return (header + bytes(length - 7)) * count


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _box64(kind: bytes, *payload: bytes) -> bytes:
    """A box with a 64-bit 'largesize' header (size field 1), as writers use past 4 GB."""
    body = b"".join(payload)
    return struct.pack(">I4sQ", 1, kind, 16 + len(body)) + body


def _trak(handler: bytes) -> bytes:
    """A track whose media handler (moov > trak > mdia > hdlr) is ``handler``."""
    hdlr = _box(b"hdlr", bytes(4), bytes(4), handler, bytes(12), b"Handler\x00")
    mdhd = _box(b"mdhd", bytes(4), bytes(8), struct.pack(">II", 44100, 44100), bytes(4))
    minf = _box(b"minf", _box(b"dinf", _box(b"dref", bytes(8))), _box(b"stbl", _box(b"stsd", bytes(8))))
    return _box(b"trak", _box(b"tkhd", bytes(84)), _box(b"mdia", mdhd, hdlr, minf))


def _mp4(*handlers: bytes, moov_first: bool = True, large_mdat: bool = False) -> bytes:
    """An ISO-BMFF box tree: ftyp, moov (mvhd + one trak per handler) and an mdat."""
    ftyp = _box(b"ftyp", b"M4A ", struct.pack(">I", 0), b"M4A isommp42")
    moov = _box(b"moov", _box(b"mvhd", bytes(100)), *(_trak(h) for h in handlers))
    data = bytes(1000)
    mdat = (struct.pack(">I4sQ", 1, b"mdat", 16 + len(data)) + data) if large_mdat else _box(b"mdat", data)
    return ftyp + (moov + mdat if moov_first else mdat + moov)


def _ogg_page(first_packet: bytes, serial: int, begins_stream: bool) -> bytes:
    """One Ogg page holding one packet (the CRC is not checked by the probe and left 0)."""
    assert len(first_packet) < 255
    return (b"OggS" + bytes([0, 0x02 if begins_stream else 0]) + bytes(8) + struct.pack("<III", serial, 0, 0)
            + bytes([1, len(first_packet)]) + first_packet)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- audio only --------------------------------------------------------------------------------


def test_wav_written_by_the_wave_module_has_no_video_stream(tmp_path):
    assert video_problem(_wav(tmp_path / "voice.wav")) == AUDIO_ONLY
    assert AUDIO_ONLY == "no video stream (the file holds audio only)"


@pytest.mark.parametrize("name, data", [
    ("song.mp3", _mp3_frames()),
    ("tagged.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10) + _mp3_frames()),
    ("song.aac", _adts_frames()),
], ids=["mp3-frames", "mp3-with-id3-tag", "adts-aac"])
def test_mpeg_audio_files_have_no_video_stream(tmp_path, name, data):
    assert video_problem(_write(tmp_path, name, data)) == AUDIO_ONLY


def test_one_mpeg_sync_word_without_a_following_frame_is_not_taken_for_audio(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes().replace(b"\xff", b"\x00")
    assert video_problem(_write(tmp_path, "one-frame.mp3", MP3_HEADER + noise)) is None
    assert video_problem(_write(tmp_path, "two-frames.mp3", _mp3_frames(2))) == AUDIO_ONLY


@pytest.mark.parametrize("name, data", [
    ("sound.flac", b"fLaC" + bytes([0x80, 0, 0, 34]) + bytes(34) + bytes(500)),
    ("sound.aiff", b"FORM" + struct.pack(">I", 4 + 26) + b"AIFF" + b"COMM" + struct.pack(">I", 18) + bytes(18)),
], ids=["flac", "aiff"])
def test_flac_and_aiff_have_no_video_stream(tmp_path, name, data):
    assert video_problem(_write(tmp_path, name, data)) == AUDIO_ONLY


@pytest.mark.parametrize("packets", [
    [b"\x01vorbis" + bytes(22)],
    [b"OpusHead\x01\x02" + bytes(9)],
    [b"fishead\x00" + bytes(56), b"OpusHead\x01\x02" + bytes(9)],  # a skeleton stream describing the audio
], ids=["vorbis", "opus", "skeleton+opus"])
def test_ogg_with_only_audio_streams_has_no_video_stream(tmp_path, packets):
    data = b"".join(_ogg_page(p, i + 1, True) for i, p in enumerate(packets)) + _ogg_page(b"\x03vorbis", 1, False)
    assert video_problem(_write(tmp_path, "talk.ogg", data)) == AUDIO_ONLY


def test_ogg_with_a_theora_video_stream_is_not_called_audio(tmp_path):
    data = (_ogg_page(b"\x80theora" + bytes(34), 1, True) + _ogg_page(b"\x01vorbis" + bytes(22), 2, True)
            + _ogg_page(b"\x81theora", 1, False))
    assert video_problem(_write(tmp_path, "film.ogv", data)) is None


@pytest.mark.parametrize("moov_first, large_mdat", [(True, False), (False, False), (False, True)],
                         ids=["moov-first", "moov-last", "moov-after-64-bit-mdat"])
def test_m4a_whose_only_track_is_sound_has_no_video_stream(tmp_path, moov_first, large_mdat):
    path = _write(tmp_path, "song.m4a", _mp4(b"soun", moov_first=moov_first, large_mdat=large_mdat))
    assert video_problem(path) == AUDIO_ONLY


def test_boxes_with_64_bit_sizes_inside_moov_are_walked(tmp_path):
    hdlr = _box(b"hdlr", bytes(8), b"soun", bytes(12), b"\x00")
    moov = _box64(b"moov", _box(b"mvhd", bytes(100)), _box64(b"trak", _box64(b"mdia", hdlr)))
    assert video_problem(_write(tmp_path, "big.m4a", _box(b"ftyp", b"M4A ", bytes(4)) + moov)) == AUDIO_ONLY


def test_mp4_with_sound_and_metadata_tracks_but_no_video_is_audio_only(tmp_path):
    assert video_problem(_write(tmp_path, "podcast.mp4", _mp4(b"soun", b"meta", b"text"))) == AUDIO_ONLY


def test_mp4_with_a_video_track_among_others_is_not_a_problem(tmp_path):
    assert video_problem(_write(tmp_path, "clip.mp4", _mp4(b"soun", b"vide"))) is None


def test_mp4_with_only_subtitle_tracks_says_what_its_tracks_hold(tmp_path):
    path = _write(tmp_path, "subs.mp4", _mp4(b"text", b"sbtl"))
    assert video_problem(path) == "no video stream (its tracks hold subtitles)"
    assert video_problem(_write(tmp_path, "empty.mov", _mp4())) == "no video stream (the MP4/MOV file lists no tracks)"


# -- real videos -------------------------------------------------------------------------------


@pytest.mark.parametrize("name, fourcc", [("clip.mp4", "mp4v"), ("clip.avi", "MJPG")])
def test_real_video_written_by_opencv_is_not_a_problem(tmp_path, name, fourcc):
    assert video_problem(_opencv_video(tmp_path / name, fourcc)) is None


def test_real_mp4_whose_video_handler_is_rewritten_to_sound_is_audio_only(tmp_path):
    data = _opencv_video(tmp_path / "clip.mp4").read_bytes()
    at = data.index(b"hdlr") + 12
    assert data[at:at + 4] == b"vide"
    audio = _write(tmp_path, "relabelled.m4a", data[:at] + b"soun" + data[at + 4:])
    assert video_problem(audio) == AUDIO_ONLY


def test_real_mp4_cut_before_its_index_says_the_index_is_missing(tmp_path):
    data = _opencv_video(tmp_path / "clip.mp4").read_bytes()
    cut = _write(tmp_path, "cut.mp4", data[:data.index(b"moov") - 4 - 10])
    assert not cv2.VideoCapture(str(cut)).isOpened()
    assert video_problem(cut) == NO_MOOV


def test_mp4_probe_reads_only_box_headers_past_a_large_mdat(tmp_path):
    """A 3 GB sparse file: the probe seeks over the mdat and reads a few KiB, not gigabytes."""
    path = tmp_path / "long.m4a"
    ftyp = _box(b"ftyp", b"M4A ", bytes(4))
    mdat_size = 3 * 1024 ** 3
    with path.open("wb") as f:
        f.write(ftyp + struct.pack(">I4sQ", 1, b"mdat", mdat_size))
        f.seek(len(ftyp) + mdat_size)
        f.write(_box(b"moov", _box(b"mvhd", bytes(100)), _trak(b"soun")))
    io = Path("/proc/self/io")
    before = int(io.read_text().split("rchar:")[1].split()[0]) if io.exists() else None
    assert video_problem(path) == AUDIO_ONLY
    if before is not None:
        read = int(io.read_text().split("rchar:")[1].split()[0]) - before
        assert read < 1024 ** 2, f"read {read} bytes"


def test_mp4_with_an_oversized_moov_is_left_to_the_generic_message(tmp_path):
    big = _box(b"moov", _box(b"free", bytes(5 * 1024 ** 2)), _trak(b"soun"))
    assert video_problem(_write(tmp_path, "huge-index.m4a", _box(b"ftyp", b"M4A ", bytes(4)) + big)) is None


# -- text, empty, unreadable, other binaries ----------------------------------------------------


@pytest.mark.parametrize("data, said", [
    (b"", "the file is empty (0 bytes)"),
    (b"\n\n  \n", "the file holds only blank text, not a video"),
    (b"\nframe list for the demo\nshot 1\n", 'the file holds text, not a video (it begins "frame list for the demo")'),
    ("caf\u00e9 " * 20_000, 'the file holds text, not a video (it begins "caf\u00e9 caf\u00e9 caf\u00e9 caf\u00e9 '
                            'caf\u00e9 caf\u00e9 caf\u00e9 caf\u00e9 ...")'),
    ("notes\n".encode("utf-16"), 'the file holds text, not a video (it begins "notes")'),
    (b"  <!DOCTYPE html>\n<html><body>Not Found</body></html>\n", "the file is a web page (HTML), not a video"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 132\n",
     "the file is a Git LFS pointer, not the video itself (fetch it with `git lfs pull`)"),
], ids=["empty", "blank", "plain", "utf8-cut-mid-character", "utf16", "html", "git-lfs-pointer"])
def test_text_and_empty_files_are_said_to_be_so(tmp_path, data, said):
    data = data.encode("utf-8") if isinstance(data, str) else data
    assert video_problem(_write(tmp_path, "clip.mp4", data)) == said


def test_random_bytes_a_jpeg_and_control_characters_are_left_to_the_generic_message(tmp_path):
    assert video_problem(_write(tmp_path, "zeros.mp4", bytes(4096))) is None
    assert video_problem(_write(tmp_path, "ascii-binary.mp4", bytes(range(1, 32)) * 100)) is None
    noise = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    assert video_problem(_write(tmp_path, "noise.mp4", noise)) is None
    jpeg = cv2.imencode(".jpg", np.full((32, 32, 3), 128, np.uint8))[1].tobytes()
    assert video_problem(_write(tmp_path, "photo.mp4", jpeg)) is None


def test_missing_file_folder_and_unreadable_file_are_named(tmp_path):
    assert video_problem(tmp_path / "nowhere.mp4") == "the file does not exist"
    assert video_problem(tmp_path) == "it is a folder, not a video file"
    locked = _write(tmp_path, "locked.mp4", b"x")
    os.chmod(locked, 0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: permissions do not stop reading")
        assert video_problem(locked) == "the file cannot be read (Permission denied)"
    finally:
        os.chmod(locked, 0o600)


def test_named_pipe_without_a_writer_is_not_opened(tmp_path):
    fifo = tmp_path / "camera.pipe"
    os.mkfifo(fifo)
    result = []
    probe = threading.Thread(target=lambda: result.append(video_problem(fifo)), daemon=True)
    probe.start()
    probe.join(timeout=5)
    if probe.is_alive():  # unblock the thread's open() before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert result == [None], "video_problem blocked on a named pipe with no writer"
