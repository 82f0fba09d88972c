"""How a run went, as values: :class:`PipelineRun` (the results of ``Pipeline.run``, in
order) and, once it ends, its :class:`RunOutcome` (the CLI, the GUI worker and the
self-test read these; nothing parses messages). Imported from ``engine.pipeline`` too."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine.types import FrameResult


class EndReason(enum.Enum):
    FINISHED = "finished"  # the source ended (the last frame of a file, folder or image)
    STOPPED = "stopped"  # the consumer stopped or closed the run
    TRUNCATED = "truncated"  # the source ended early (a damaged file, a camera unplugged)
    FAILED = "failed"  # reading failed, the source went silent, or a stage failed (the error was raised)


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, as values: the CLI, the GUI worker and the self-test read these."""

    reason: EndReason
    source_id: str
    frames: int
    detail: str | None = None  # the sentence for TRUNCATED / FAILED
    warnings: tuple[str, ...] = ()  # what the source skipped over (unreadable images)
    unreadable: tuple[Path, ...] = ()  # images of a folder that could not be read


class PipelineRun:
    """The results of one :meth:`Pipeline.run`, in order; ``outcome`` is set once it ends.

    Iterate it once; :meth:`close` (or ``contextlib.closing``) ends it early and joins the
    capture thread (and a pipelined run's detector threads)."""

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self.outcome: RunOutcome | None = None
        self._frames: Iterator[FrameResult] = iter(())

    def __iter__(self) -> "PipelineRun":
        return self

    def __next__(self) -> FrameResult:
        return next(self._frames)

    def close(self) -> None:
        self._frames.close()
        if self.outcome is None:  # closed before it started
            self.outcome = RunOutcome(EndReason.STOPPED, self.source_id, 0)
