"""Temporal smoothing of each task's output per track, so labels do not flicker.

For every track id an exponential moving average (EMA) is kept:
``s = alpha * s_previous + (1 - alpha) * this_frame`` (``alpha`` 0 = no smoothing).
- binary / multiclass: the probabilities are averaged and the label (argmax) and its
  confidence re-derived from the averaged probabilities;
- expectation: the probabilities and the value are averaged (the value Σ pᵢ·binᵢ is
  linear in p, so averaging it equals re-deriving it from the averaged probabilities),
  confidence = the top averaged probability;
- regression: value and confidence are averaged; landmarks: the points.
A track id seen for the first time starts from that frame's prediction, so a new face
that takes an old face's place on screen gets its own labels at once. Tracks unseen for
more than ``max_missed`` frames are forgotten. Faces without a track id (-1) pass through.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from engine.modelspec import ModelSpec, TaskSpec
from engine.tasks import task_kind
from engine.types import Faces, TaskPrediction



@dataclass
class _TaskState:
    value: np.ndarray  # scalar arrays / rows, float32
    confidence: np.ndarray
    probs: np.ndarray | None
    points: np.ndarray | None
    spread: np.ndarray | None = None


@dataclass
class _TrackState:
    last_seen: int
    tasks: dict[str, _TaskState] = field(default_factory=dict)


def _ema(prev, new, alpha: float):
    return None if prev is None or new is None else alpha * prev + (1.0 - alpha) * new


class TaskSmoother:
    """Pipeline stage: per-track EMA of every task's prediction. Returns new Faces.

    A prediction's kind is its task's (``TaskPrediction.task``, set by the model), or
    given by ``tasks`` (a ModelSpec or its TaskSpecs). For a bare prediction with neither
    the kind is inferred from the prediction itself: probabilities whose value is their
    argmax index are labels, other probabilities are an expectation, no probabilities a
    regression.
    """

    def __init__(self, alpha: float = 0.6, tasks: ModelSpec | Iterable[TaskSpec] | None = None,
                 max_missed: int = 5) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"smoothing alpha must be in [0, 1), got {alpha}")
        self.alpha = float(alpha)
        self.max_missed = int(max_missed)
        specs = tasks.tasks if isinstance(tasks, ModelSpec) else (tasks or ())
        self._kinds: dict[str, str] = {t.name: t.kind for t in specs}
        self._tracks: dict[int, _TrackState] = {}
        self._frame = 0

    def reset(self) -> None:
        self._tracks.clear()

    def __call__(self, faces: Faces) -> Faces:
        self._frame += 1
        if self.alpha == 0.0 or not faces.tasks:
            self._forget()
            return faces
        kinds = {name: self._kind(name, pred) for name, pred in faces.tasks.items()}
        out = {name: TaskPrediction(
            value=pred.value.copy(), confidence=pred.confidence.copy(),
            probs=None if pred.probs is None else pred.probs.copy(),
            points_xy=None if pred.points_xy is None else pred.points_xy.copy(), task=pred.task,
            spread=None if pred.spread is None else pred.spread.copy())
            for name, pred in faces.tasks.items()}
        for i, tid in enumerate(faces.track_id.tolist()):
            if tid < 0:
                continue
            track = self._tracks.get(tid)
            fresh = track is None
            if fresh:
                track = self._tracks[tid] = _TrackState(self._frame)
            track.last_seen = self._frame
            for name, pred in out.items():
                state = None if fresh else track.tasks.get(name)
                track.tasks[name] = self._update(state, pred, i, kinds[name])
        self._forget()
        return faces.replace(tasks=out)

    def _update(self, state: _TaskState | None, pred: TaskPrediction, i: int, kind: str) -> _TaskState:
        """Blend row ``i`` of ``pred`` into ``state`` and write the smoothed row back into ``pred``."""
        raw = _TaskState(
            value=pred.value[i].astype(np.float32), confidence=pred.confidence[i].astype(np.float32),
            probs=None if pred.probs is None else pred.probs[i].astype(np.float32),
            points=None if pred.points_xy is None else pred.points_xy[i].astype(np.float32),
            spread=None if pred.spread is None else pred.spread[i].astype(np.float32))
        if state is None:
            return raw  # a new track (or a task new to it) starts from this frame's prediction
        a = self.alpha
        s = _TaskState(value=_ema(state.value, raw.value, a),
                       confidence=_ema(state.confidence, raw.confidence, a),
                       probs=_ema(state.probs, raw.probs, a), points=_ema(state.points, raw.points, a),
                       spread=_ema(state.spread, raw.spread, a))
        if s.probs is not None:  # labels and distributions: re-derived from the smoothed probabilities
            summary = task_kind(kind).from_probs(pred.task, s.probs)
            if summary is not None:
                s.value, s.confidence, spread = summary
                s.spread = spread if spread is not None else s.spread
            else:
                s.confidence = s.probs.max()
        pred.value[i] = s.value
        pred.confidence[i] = s.confidence
        if s.probs is not None:
            pred.probs[i] = s.probs
        if s.points is not None:
            pred.points_xy[i] = s.points
        if s.spread is not None and pred.spread is not None:
            pred.spread[i] = s.spread
        return s

    def _kind(self, name: str, pred: TaskPrediction) -> str:
        kind = self._kinds.get(name) or (pred.task.kind if pred.task is not None else None)
        if kind is None:
            if pred.points_xy is not None:
                kind = "landmarks"
            elif pred.probs is None:
                kind = "regression"
            elif len(pred.value) == 0:
                return "multiclass"  # undecided until a face shows the values
            else:
                is_index = np.array_equal(pred.value, pred.probs.argmax(axis=1).astype(pred.value.dtype))
                kind = "multiclass" if is_index else "expectation"
            self._kinds[name] = kind
        return kind

    def _forget(self) -> None:
        stale = [tid for tid, t in self._tracks.items() if self._frame - t.last_seen > self.max_missed]
        for tid in stale:
            del self._tracks[tid]

    @property
    def tracked_ids(self) -> list[int]:
        """Track ids whose smoothing state is kept."""
        return sorted(self._tracks)
