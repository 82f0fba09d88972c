"""The status line: its message (or error) and its numbers (frames per second, per-stage
latency, dropped frames)."""
from __future__ import annotations

import collections
import re
from typing import Mapping

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox, QWidget

from engine.pipeline import STAGES
from engine.providers import BACKEND_TITLES, short_provider

LATENCY_SMOOTHING = 0.8  # weight of the past in each stage's running average


class LiveStats:
    """Numbers over the recent results of one run (reset when a new run starts)."""

    def __init__(self, window: int = 120) -> None:
        self._arrivals: collections.deque[float] = collections.deque(maxlen=window)
        self.stage_ms: dict[str, float] = {}
        self.dropped = 0

    def reset(self) -> None:
        self._arrivals.clear()
        self.stage_ms.clear()
        self.dropped = 0

    def add(self, timings_ms: Mapping[str, float], dropped: int, now_s: float) -> None:
        """One result arrived at ``now_s``; ``dropped``: frames skipped since the previous one
        (by live mode's mailbox, or because the UI was busy)."""
        self._arrivals.append(now_s)
        self.dropped += dropped
        for stage in STAGES + ("total",):
            ms = timings_ms.get(stage)
            if ms is not None:
                old = self.stage_ms.get(stage)
                self.stage_ms[stage] = ms if old is None else LATENCY_SMOOTHING * old + (1 - LATENCY_SMOOTHING) * ms

    @property
    def fps(self) -> float | None:
        """Results per second over the window, None before there are two."""
        if len(self._arrivals) < 2 or self._arrivals[-1] <= self._arrivals[0]:
            return None
        return (len(self._arrivals) - 1) / (self._arrivals[-1] - self._arrivals[0])

    def text(self, provider: str | None, playing: bool = True, live: bool = False,
             recording_s: float | None = None) -> str:
        """'● REC 0:12 · 9.8 fps · detect 41 align 3 model 12 track 0 smooth 0 ms · CPU'.

        Only what is true now: fps while playing (not paused, ended, or on a still), dropped
        frames for live sources (a file plays every frame), the recording's running time.
        """
        parts = []
        if recording_s is not None:
            parts.append(f"● REC {int(recording_s) // 60}:{int(recording_s) % 60:02d}")
        if playing and self.fps is not None:
            parts.append(f"{self.fps:.1f} fps")
        if self.stage_ms:
            parts.append(" ".join(f"{s} {self.stage_ms[s]:.0f}" for s in STAGES if s in self.stage_ms) + " ms")
        if live:
            parts.append(f"dropped {self.dropped}")
        if provider:
            parts.append(short_provider(provider))
        return "  ·  ".join(parts)




def window_words(text: str) -> str:
    """A sentence written for the command line, in the window's words: the engine advises
    '--backend cpu', the window says 'Backend ▸ CPU' (its menu)."""
    return re.sub(r"--backend (\w+)", lambda m: f"Backend ▸ {BACKEND_TITLES.get(m[1], m[1])}", text)


class MessageLine(QLabel):
    """The status line's sentence; an error is red and also shown in a non-modal box, so
    the window stays usable."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_box: QMessageBox | None = None

    def show_message(self, text: str) -> None:
        self.setProperty("error", False)
        self.setStyleSheet("")
        self._set(text)

    def show_error(self, title: str, text: str) -> None:
        text = window_words(text)
        self._set(text)
        self.setProperty("error", True)
        self.setStyleSheet("color: #c62828;")
        self.close_box()
        box = QMessageBox(QMessageBox.Icon.Warning, title, text[:1].upper() + text[1:],
                          QMessageBox.StandardButton.Ok, self.window())
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.show()
        self.error_box = box

    def is_error(self) -> bool:
        return bool(self.property("error"))

    def close_box(self) -> None:
        if self.error_box is not None:
            self.error_box.close()

    def _set(self, text: str) -> None:
        self.setText(text)
        self.setToolTip(text)  # the status line may cut a long sentence
