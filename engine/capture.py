"""The capture thread and the boxes it hands frames over in (used by ``Pipeline.run``).

- live (cameras, or a file played in real time): :class:`Mailbox`, one slot, newest wins;
  frames that arrive while inference is busy replace the waiting one and are counted, so
  latency never builds up;
- files: :class:`FrameQueue`, every frame in order, bounded (the reader waits when
  inference falls behind: back-pressure, bounded memory).
"""
from __future__ import annotations

import queue
import threading
import time

from engine.sources import Source, SourceError

POLL_S = 0.05  # how often a waiting thread looks at the stop flags

END = object()


def capture(source: Source, box, pace: bool) -> None:
    """Capture thread: source frames into ``box`` until the source ends or ``box`` closes."""
    try:
        t0 = time.perf_counter()
        first_s = None
        for frame in source:
            if box.closed:
                return
            if pace:  # play a file in real time: wait until this frame's media time
                first_s = frame.timestamp_s if first_s is None else first_s
                wait = (frame.timestamp_s - first_s) - (time.perf_counter() - t0)
                if wait > 0 and box.wait_closed(wait):
                    return
            if not box.put((frame, time.perf_counter())):
                return
        box.finish(END)
    except SourceError as e:
        box.finish(e)
    except Exception as e:  # a decoder or driver failure mid-stream
        box.finish(SourceError(f"{source.source_id}: reading failed ({type(e).__name__}: {e})"))
    finally:
        if box.closed:  # the consumer has gone: nobody else may still be waiting to close it
            source.close()


class Mailbox:
    """One slot, newest wins. ``get`` returns (frame, t_captured, dropped since last get)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item = None
        self._dropped = 0
        self._final = None
        self.closed = False

    def put(self, item) -> bool:
        with self._cond:
            if self.closed:
                return False
            if self._item is not None:
                self._dropped += 1
            self._item = item
            self._cond.notify_all()
            return True

    def finish(self, final) -> None:
        with self._cond:
            self._final = final
            self._cond.notify_all()

    def get(self, timeout: float):
        with self._cond:
            if self._item is None and self._final is None:
                self._cond.wait(timeout)
            if self._item is not None:
                (frame, t), dropped = self._item, self._dropped
                self._item, self._dropped = None, 0
                return frame, t, dropped
            return self._final

    def wait_closed(self, seconds: float) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self.closed, seconds)
            return self.closed

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class FrameQueue:
    """Bounded FIFO, every frame in order; ``put`` waits while full (back-pressure)."""

    def __init__(self, maxsize: int) -> None:
        self._q: queue.Queue = queue.Queue(maxsize)
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def put(self, item) -> bool:
        frame, t = item
        while not self.closed:
            try:
                self._q.put((frame, t, 0), timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def finish(self, final) -> None:
        while not self.closed:
            try:
                self._q.put(final, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def get(self, timeout: float):
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_closed(self, seconds: float) -> bool:
        return self._closed.wait(seconds)

    def close(self) -> None:
        self._closed.set()
