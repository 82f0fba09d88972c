"""The output folder of a batch: one run at a time, and a distinct name for every input.

:class:`OutputFolderLock` holds an exclusive lock on ``OUTDIR/.faceattr.lock`` for the
whole run: a second run into the same folder would interleave its lines with the first
and overwrite its files, so it is refused with a sentence naming the folder and the PID
that holds it. The operating system drops the lock when the holder dies (``flock`` on
POSIX, ``msvcrt.locking`` on Windows), so a crashed run never blocks the next.

:func:`unique_names` gives each input the base name of its outputs: its file name, with
``-2``, ``-3``... before the extension for a later input of the same name.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

LOCK_NAME = ".faceattr.lock"


class FolderInUseError(RuntimeError):
    """Another run holds the output folder; the message names it."""


class OutputFolderLock:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "OutputFolderLock":
        """Take the lock; raises FolderInUseError (held) or OSError (folder not writable)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (process {holder})" if holder else ""
            raise FolderInUseError(f"{self.folder}: another faceattr run is writing into this folder{who}; "
                                   "wait for it to end or choose another output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing drops the lock

    def __enter__(self) -> "OutputFolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 32).decode(errors="replace").strip()
    except OSError:
        return ""


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def unique_names(inputs: Sequence[str | Path]) -> list[str]:
    """Base names for the outputs of ``inputs``, distinct even where file names repeat."""
    used: set[str] = set()
    names = []
    for item in inputs:
        path = Path(item)
        name = path.name or "input"
        stem, suffix = (path.stem, path.suffix) if path.suffix else (name, "")
        k = 2
        while name.lower() in used:  # case-insensitive file systems would clash too
            name = f"{stem}-{k}{suffix}"
            k += 1
        used.add(name.lower())
        names.append(name)
    return names
