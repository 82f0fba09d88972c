"""Video encoders behind the video sink: H.264 through PyAV's FFmpeg, else OpenCV's.

Browsers and most players want H.264 in MP4. The OpenCV wheels on PyPI cannot encode it
(their FFmpeg has no H.264 encoder), so :func:`open_encoder` tries PyAV's FFmpeg first
(libx264), then OpenCV's fourccs ('avc1', then MPEG-4 part 2 'mp4v', which every build
has). ``encoder.codec`` says which one is writing, so the window can tell the user.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from engine.cvlog import quiet_opencv

OPENCV_FOURCCS = ("avc1", "mp4v")
_failed: set[str] = set()  # tried once per process: a failed try prints FFmpeg noise


class EncoderUnavailable(RuntimeError):
    pass


class PyAvH264:
    """H.264 (libx264, yuv420p, CRF 20) in MP4 with its index in front, through PyAV."""

    codec = "H.264 (PyAV)"
    fourcc = "avc1"

    def __init__(self, path: Path, fps: float, size_wh: tuple[int, int]) -> None:
        try:
            import av
        except ImportError as e:
            raise EncoderUnavailable("PyAV is not installed") from e
        self._av = av
        try:
            self._out = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
            stream = self._out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = size_wh
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "20", "preset": "veryfast"}
        except (av.error.FFmpegError, ValueError) as e:
            raise EncoderUnavailable(str(e)) from e
        self._stream = stream
        self.size_wh = size_wh

    def write(self, image_bgr: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(image_bgr, format="bgr24")
        for packet in self._stream.encode(frame):
            self._out.mux(packet)

    def release(self) -> None:
        try:
            for packet in self._stream.encode():  # flush the frames the encoder still holds
                self._out.mux(packet)
        finally:
            self._out.close()


class OpenCvEncoder:
    """OpenCV's FFmpeg writer with the first fourcc of OPENCV_FOURCCS that opens."""

    def __init__(self, path: Path, fps: float, size_wh: tuple[int, int]) -> None:
        self._writer = None
        self.size_wh = size_wh
        for fourcc in OPENCV_FOURCCS:
            if fourcc in _failed:
                continue
            with quiet_opencv():  # a missing encoder is not an error yet
                writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), fps, size_wh)
            if writer.isOpened():
                self._writer, self.fourcc = writer, fourcc
                self.codec = "H.264 (OpenCV)" if fourcc == "avc1" else "MPEG-4 part 2 (OpenCV; no H.264 encoder here)"
                return
            writer.release()
            _failed.add(fourcc)
        _failed.difference_update(OPENCV_FOURCCS)  # the folder may be the cause: retry next time
        raise EncoderUnavailable(f"no encoder among {', '.join(OPENCV_FOURCCS)} opened")

    def write(self, image_bgr: np.ndarray) -> None:
        self._writer.write(image_bgr)  # OpenCV reports no write errors: the sink checks the file

    def release(self) -> None:
        self._writer.release()


def even_size(size_wh: tuple[int, int]) -> tuple[int, int]:
    """H.264 in yuv420p needs even sides: the size rounded up (frames are letterboxed)."""
    w, h = size_wh
    return w + w % 2, h + h % 2


def open_encoder(path: Path, fps: float, size_wh: tuple[int, int]):
    """The best encoder that opens for ``path``; EncoderUnavailable when none does."""
    try:
        return PyAvH264(path, fps, even_size(size_wh))
    except EncoderUnavailable:
        Path(path).unlink(missing_ok=True)
    return OpenCvEncoder(path, fps, size_wh)
