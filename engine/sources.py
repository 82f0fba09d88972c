"""Where frames come from: a camera (by index or name), a video file, an image, a folder.

:func:`open_source` turns what a user typed or picked into a :class:`Source`, or raises
:class:`SourceError` with one sentence naming the input and the reason. Problems that only
show while reading (a truncated file, a camera unplugged) end the stream instead, and
``Source.end_reason`` says why; the caller decides whether to reopen.

A source is iterated by one thread at a time (the pipeline's capture thread) and closed
after that thread has stopped: OpenCV captures are not safe to release mid-read.
"""
from __future__ import annotations

import math
import os
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from engine.cvlog import quiet_opencv
from engine.probe import video_problem
from engine.types import Frame

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CAMERA_PREFIX = "camera:"
DEFAULT_FPS = 30.0
CAMERA_GONE_AFTER_S = 2.0  # a camera that delivers nothing this long has gone away
IMAGE_FPS = 1.0  # images and folders play as a slide show when written to a video
OPEN_TIMEOUT_S = 5.0  # a camera or pipe that has not delivered a first frame by then is given up


class SourceError(RuntimeError):
    """A source cannot be opened or read; the message names the input and the reason."""


@dataclass(frozen=True)
class CameraInfo:
    index: int
    name: str


def _camera_api() -> int:
    if sys.platform.startswith("linux"):
        return cv2.CAP_V4L2
    if sys.platform == "win32":
        return cv2.CAP_DSHOW
    return cv2.CAP_ANY


def list_cameras(max_index: int = 8) -> list[CameraInfo]:
    """The cameras present, by index and name.

    On Linux the names come from ``/sys/class/video4linux`` without opening any device;
    a camera's metadata node (``index`` != 0) is left out. Elsewhere indices are probed
    with OpenCV and named 'Camera N'.
    """
    if sys.platform.startswith("linux"):
        found = []
        for node in sorted(Path("/sys/class/video4linux").glob("video*")):
            try:
                index = int(node.name[len("video"):])
            except ValueError:
                continue
            if index >= max_index or _sys_text(node / "index", "0") != "0":
                continue
            found.append(CameraInfo(index, _sys_text(node / "name", f"Camera {index}")))
        return sorted(found, key=lambda c: c.index)
    found = []
    with quiet_opencv():
        for index in range(max_index):
            cap = cv2.VideoCapture(index, _camera_api())
            if cap.isOpened():
                found.append(CameraInfo(index, f"Camera {index}"))
            cap.release()
    return found


def _sys_text(path: Path, default: str) -> str:
    try:
        return path.read_text().strip() or default
    except OSError:
        return default


def _found_text(cameras: list[CameraInfo]) -> str:
    if not cameras:
        return "found: none"
    return "found: " + ", ".join(f"{c.index} '{c.name}'" for c in cameras)


class Source:
    """Frames from one input. Iterate once (from one thread), then :meth:`close`."""

    is_live: bool = False
    fps: float = DEFAULT_FPS
    frame_count: int | None = None
    size_wh: tuple[int, int] = (0, 0)
    source_id: str = ""
    start_frame: int = 0  # the index of the first frame it yields (a seek)

    def __init__(self) -> None:
        self.end_reason: str | None = None  # why the stream stopped early, if it did
        self.warnings: list[str] = []  # problems that were skipped over (unreadable images)
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source_id!r})"


class CameraSource(Source):
    is_live = True

    def __init__(self, index: int, name: str | None = None) -> None:
        super().__init__()
        label = f"camera {index}" if name is None else f"camera {index} '{name}'"
        with quiet_opencv():
            cap = cv2.VideoCapture(index, _camera_api())
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"camera {index}: no such camera ({_found_text(list_cameras())})")
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise SourceError(f"{label}: the camera opened but delivers no frames (in use by another program?)")
        self._cap = cap
        self._first = first
        self.index = index
        self.source_id = label
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and math.isfinite(fps) and 1 <= fps <= 240 else DEFAULT_FPS
        h, w = first.shape[:2]
        self.size_wh = (w, h)

    def __iter__(self) -> Iterator[Frame]:
        t0 = time.monotonic()
        index = 0
        image = self._first
        self._first = None
        last_ok = time.monotonic()
        while not self._closed:
            if image is None:
                ok, image = self._cap.read()
                if not ok or image is None:
                    image = None
                    if time.monotonic() - last_ok > CAMERA_GONE_AFTER_S:
                        self.end_reason = (f"{self.source_id}: stopped delivering frames after frame {index} "
                                           "(disconnected?)")
                        return
                    time.sleep(0.01)
                    continue
            last_ok = time.monotonic()
            yield Frame(image, index, last_ok - t0, self.source_id)
            index += 1
            image = None

    def close(self) -> None:
        super().close()
        self._cap.release()


class VideoFileSource(Source):
    def __init__(self, path: Path, loop: bool = False, start_frame: int = 0) -> None:
        """``start_frame``: the first frame played (0-based; the window's seek bar). A start
        at or past the end plays the last frame."""
        super().__init__()
        self.path = path
        self.loop = loop
        self.source_id = str(path)
        cap = self._open()
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise SourceError(f"{path}: not a readable video ({_why_not_video(path, opened=True)})")
        self._cap = cap
        self._first = first  # yielded first, so opening needs no seek back
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and math.isfinite(fps) and 0 < fps <= 1000 else DEFAULT_FPS
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count and math.isfinite(count) and count > 0 else None
        h, w = first.shape[:2]
        self.size_wh = (w, h)
        self.start_frame = 0
        if start_frame > 0:
            self._seek(start_frame if self.frame_count is None else min(start_frame, self.frame_count - 1))

    def _seek(self, frame: int) -> None:
        """Position on ``frame``: OpenCV seeks to the key frame before it and decodes up to
        it, so the frame is exact; a seek the container refuses falls back to reading on."""
        if self._cap.set(cv2.CAP_PROP_POS_FRAMES, frame) and int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) == frame:
            ok, image = self._cap.read()
            if ok and image is not None:
                self._first, self.start_frame = image, frame
                return
        self._cap.release()  # read from the start up to the frame
        self._cap = self._open()
        at, image = -1, None
        while at < frame:
            ok, nxt = self._cap.read()
            if not ok or nxt is None:
                break
            at, image = at + 1, nxt
        if image is not None:
            self._first, self.start_frame = image, at

    def _open(self) -> cv2.VideoCapture:
        with quiet_opencv():
            cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.path}: not a readable video ({_why_not_video(self.path)})")
        return cap

    def _ended_early(self, read: int) -> bool:
        """Whether ``read`` frames fall short of the count the container announced.

        Some containers only estimate the count (duration × fps), so a frame or two of
        difference is not called truncation.
        """
        if self.frame_count is None:
            return False
        return read + max(2, round(0.01 * self.frame_count)) <= self.frame_count

    def __iter__(self) -> Iterator[Frame]:
        index = self.start_frame  # keeps counting across loops, so trackers and writers see one stream
        offset_s = 0.0
        while not self._closed:
            read = self.start_frame if index == self.start_frame else 0
            last_s = 0.0
            while not self._closed:
                image, self._first = self._first, None
                if image is None:
                    ok, image = self._cap.read()
                    if not ok or image is None:
                        break
                pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
                media_s = pos_ms / 1000 if math.isfinite(pos_ms) and (pos_ms > 0 or read == 0) else read / self.fps
                last_s = media_s
                yield Frame(image, index, offset_s + media_s, self.source_id)
                index += 1
                read += 1
            if self._closed:
                return
            if self._ended_early(read):
                self.end_reason = (f"{self.path}: ended early at frame {read} of {self.frame_count}: "
                                   "the file is truncated or damaged")
                return
            if not self.loop or read == 0:
                return
            offset_s += last_s + 1 / self.fps
            if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                self._cap.release()
                self._cap = self._open()

    def close(self) -> None:
        super().close()
        self._cap.release()


class ImageSource(Source):
    """One image file, or the images of a folder in name order (one frame each)."""

    fps = IMAGE_FPS

    def __init__(self, label: str, paths: list[Path], start_frame: int = 0) -> None:
        super().__init__()
        self.source_id = label
        self.paths = paths
        self.start_frame = max(0, min(start_frame, len(paths) - 1))  # the first image shown (image browser)
        self.unreadable = []
        self.frame_count = len(paths)
        first = None
        for p in paths:  # the size of the first readable image (writers need one size)
            first = _imread(p)
            if first is not None:
                break
        if first is None:
            if len(paths) == 1:
                raise SourceError(f"{paths[0]}: not a readable image")
            raise SourceError(f"{label}: none of its {len(paths)} images could be read")
        h, w = first.shape[:2]
        self.size_wh = (w, h)

    def __iter__(self) -> Iterator[Frame]:
        """Each readable image as a still; ``index`` is its place in :attr:`paths`, so an
        unreadable image skipped (and named in :attr:`unreadable`) shifts no other."""
        self.unreadable: list[Path] = []
        for index, p in enumerate(self.paths):
            if index < self.start_frame:
                continue
            if self._closed:
                return
            image = _imread(p)
            if image is None:
                self.unreadable.append(p)
                self.warnings.append(f"{p}: not a readable image, skipped")
                continue
            yield Frame(image, index, index / self.fps, str(p), still=True)


def _imread(path: Path) -> np.ndarray | None:
    """Read an image as BGR; None if unreadable. Reads bytes first so any path works."""
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None


def _why_not_video(path: Path, opened: bool = False) -> str:
    """Why OpenCV could not decode ``path`` as a video, as precisely as a look at it tells."""
    why = video_problem(path)
    if why:
        return why
    if opened:
        return "no frames could be decoded"
    return "the file cannot be opened as a video; it is damaged, truncated or not a video"


def _is_stream(path: Path) -> bool:
    """A named pipe or a device: reading it may block until someone writes."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def _open_within(label: str, open_fn, timeout_s: float | None) -> "Source":
    """``open_fn()`` in a helper thread, given up after ``timeout_s`` (cameras and pipes can
    block in the driver or in open(2) forever; no caller thread must hang with them).
    A source that opens after all is closed by the helper."""
    if not timeout_s:
        return open_fn()
    done = threading.Event()
    box: dict = {}
    abandoned = threading.Event()

    def work() -> None:
        try:
            box["source"] = open_fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e
        done.set()
        if abandoned.is_set() and "source" in box:
            box["source"].close()

    threading.Thread(target=work, name="faceattr-open", daemon=True).start()
    if not done.wait(timeout_s):
        abandoned.set()
        if done.is_set() and "source" in box:  # it finished in between
            box["source"].close()
        raise SourceError(f"{label}: delivered no frame within {timeout_s:g} s "
                          "(a camera or pipe with nothing to read?)")
    if "error" in box:
        raise box["error"]
    return box["source"]


def _open_stream(path: Path, timeout_s: float | None) -> "VideoFileSource":
    """A named pipe or device as a video, once it has data to read.

    OpenCV's FFmpeg open of a pipe nobody writes to blocks inside a process-wide lock, so
    a helper thread given up on would keep every later video from opening. We wait for
    readable data ourselves (a non-blocking open and ``select``, reading nothing), and only
    then let OpenCV open it; our descriptor stays open until then so a writer never sees
    the pipe without a reader.
    """
    import select

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise SourceError(f"{path}: cannot be opened ({(e.strerror or str(e)).lower()})") from e
    try:
        wait_s = timeout_s if timeout_s else None
        ready, _, _ = select.select([fd], [], [], wait_s)
        if not ready:
            raise SourceError(f"{path}: delivered no data within {timeout_s:g} s (a pipe nobody writes to?)")
        if _bytes_waiting(fd) == 0:  # readable but empty: the writer came and went (end of file)
            raise SourceError(f"{path}: the pipe was closed by its writer without sending any data")
        return _open_within(str(path), lambda: VideoFileSource(path, loop=False), timeout_s)
    finally:
        os.close(fd)


def _bytes_waiting(fd: int) -> int:
    """Bytes ready to read on a pipe, without reading them (-1 where the system cannot tell)."""
    try:
        import fcntl
        import termios

        buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(buf, sys.byteorder, signed=True)
    except (ImportError, OSError):
        return -1


def _is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def open_source(spec: str | int | Path, loop: bool = False, timeout_s: float | None = OPEN_TIMEOUT_S,
                start_frame: int = 0) -> Source:
    """Open a camera (int, digit string, 'camera:NAME'), a video file, an image or a folder.

    ``loop`` restarts a video file at its end (the GUI plays the bundled sample so).
    ``start_frame`` starts a video file or a folder there (cameras and pipes ignore it).
    Cameras and pipes that deliver no first frame within ``timeout_s`` are given up.
    Raises :class:`SourceError` with one sentence naming the input and the reason.
    """
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return _open_within(f"camera {int(spec)}", lambda: _open_camera_index(int(spec)), timeout_s)
    if isinstance(spec, str):
        text = spec.strip()
        if text.isdigit() and not Path(text).exists():
            return _open_within(f"camera {text}", lambda: _open_camera_index(int(text)), timeout_s)
        if text.lower().startswith(CAMERA_PREFIX):
            name = text[len(CAMERA_PREFIX):].strip()
            return _open_within(f"camera '{name}'", lambda: _open_camera_name(name), timeout_s)
        if not text:
            raise SourceError("no input given: name a camera, a video, an image or a folder")
        spec = Path(text)
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_dir():
        images = sorted((p for p in path.iterdir() if p.is_file() and _is_image_path(p)),
                        key=lambda p: p.name)
        if not images:
            raise SourceError(f"{path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageSource(str(path), images, start_frame=start_frame)
    if _is_stream(path):
        return _open_stream(path, timeout_s)
    if _is_image_path(path):
        return ImageSource(str(path), [path])
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty")
    return VideoFileSource(path, loop=loop, start_frame=start_frame)


def _open_camera_index(index: int) -> CameraSource:
    if index < 0:
        raise SourceError(f"camera {index}: no such camera (indices start at 0)")
    name = next((c.name for c in list_cameras(max(8, index + 1)) if c.index == index), None)
    return CameraSource(index, name)


def _open_camera_name(name: str) -> CameraSource:
    cameras = list_cameras()
    exact = [c for c in cameras if c.name == name]
    loose = [c for c in cameras if name.lower() in c.name.lower()]
    match = exact or loose
    if not name or not match:
        raise SourceError(f"camera '{name}': no such camera ({_found_text(cameras)})")
    return CameraSource(match[0].index, match[0].name)
