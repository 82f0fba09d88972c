"""The values that flow through the pipeline.

Small frozen dataclasses holding struct-of-arrays numpy data (one row per face), in the
manner of roboflow/supervision's ``Detections``. Stages never mutate them: they return a
new value built with :func:`dataclasses.replace` (or the helpers below).

Conventions carried by the names:
- ``*_bgr`` / ``*_rgb``: channel order of an H×W×3 uint8 image.
- ``xyxy``: boxes as (x0, y0, x1, y1) in frame pixels, float32, shape [N, 4].
- ``*_xy``: points as (x, y) in frame pixels.
- ``*_ms`` / ``*_s``: milliseconds / seconds.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import numpy as np

if TYPE_CHECKING:  # the spec module sits above this one; only the type is named here
    from engine.modelspec import TaskSpec


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded image from a source."""

    image_bgr: np.ndarray  # H×W×3 uint8, BGR as OpenCV decodes
    index: int  # 0-based position in the source
    timestamp_s: float  # media time (files) or capture time since start (cameras)
    source_id: str  # camera name/index, file path, or (folders) the image's own path
    still: bool = False  # an independent photo: its own scene (no tracking or smoothing across)

    @property
    def size_wh(self) -> tuple[int, int]:
        h, w = self.image_bgr.shape[:2]
        return w, h


@dataclass(frozen=True, eq=False)
class TaskPrediction:
    """One task's decoded output for N faces.

    ``value``: [N] float (regression, expectation: the value in the task's unit;
    binary, multiclass: the label index into the task's ``labels``).
    ``confidence``: [N] float in 0..1, NaN where the task kind gives none.
    ``probs``: [N, C] probabilities (binary: [N, 2] as (p(labels[0]), p(labels[1])),
    multiclass/expectation: the softmax), or None.
    ``points_xy``: [N, K, 2] frame pixels for landmark tasks, else None.
    ``spread``: [N] one standard deviation in the task's unit for value tasks that give one
    (an expectation's distribution, a regression's spread output), else None.
    ``task``: the description of the task it was decoded for (its kind, labels, unit), so
    a prediction can be labelled on its own (:meth:`text`).
    """

    value: np.ndarray
    confidence: np.ndarray
    probs: np.ndarray | None = None
    points_xy: np.ndarray | None = None
    task: "TaskSpec | None" = None
    spread: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.value)
        for name in ("confidence", "probs", "points_xy", "spread"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"TaskPrediction.{name} has {len(arr)} rows, value has {n}")

    def __len__(self) -> int:
        return len(self.value)

    @property
    def has_points(self) -> bool:
        """A point task's prediction (landmarks): drawn as points, not written as a label."""
        return self.points_xy is not None

    def take(self, index: np.ndarray) -> "TaskPrediction":
        return TaskPrediction(
            value=self.value[index],
            confidence=self.confidence[index],
            probs=None if self.probs is None else self.probs[index],
            points_xy=None if self.points_xy is None else self.points_xy[index],
            task=self.task,
            spread=None if self.spread is None else self.spread[index],
        )

    def text(self, i: int) -> str:
        """The short label of face ``i`` ("female 97%", "34 y"), by the task's kind."""
        if self.task is None:
            raise ValueError("this prediction does not know its task (decode it with FaceAttrModel)")
        from engine.tasks import format_value  # the kinds' registry sits above this module

        return format_value(self.task, self, i)


def _empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


@dataclass(frozen=True, eq=False)
class Faces:
    """All faces of one frame, struct-of-arrays. N may be 0."""

    xyxy: np.ndarray = field(default_factory=lambda: _empty((0, 4), np.float32))
    score: np.ndarray = field(default_factory=lambda: _empty((0,), np.float32))
    landmarks_xy: np.ndarray = field(default_factory=lambda: _empty((0, 5, 2), np.float32))
    track_id: np.ndarray = field(default_factory=lambda: _empty((0,), np.int64))
    tasks: Mapping[str, TaskPrediction] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        for name, arr in (("score", self.score), ("landmarks_xy", self.landmarks_xy),
                          ("track_id", self.track_id)):
            if len(arr) != n:
                raise ValueError(f"Faces.{name} has {len(arr)} rows, xyxy has {n}")
        for name, pred in self.tasks.items():
            if len(pred) != n:
                raise ValueError(f"Faces.tasks['{name}'] has {len(pred)} rows, xyxy has {n}")

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def from_boxes(cls, xyxy: np.ndarray, score: np.ndarray) -> "Faces":
        """Faces as a detector gives them: boxes and scores, no landmarks or tracks yet."""
        n = len(xyxy)
        return cls(
            xyxy=np.asarray(xyxy, np.float32).reshape(n, 4),
            score=np.asarray(score, np.float32).reshape(n),
            landmarks_xy=np.full((n, 5, 2), np.nan, np.float32),
            track_id=np.full((n,), -1, np.int64),
        )

    def take(self, index: np.ndarray) -> "Faces":
        """The subset of faces at ``index`` (an int array or a boolean mask)."""
        return Faces(
            xyxy=self.xyxy[index],
            score=self.score[index],
            landmarks_xy=self.landmarks_xy[index],
            track_id=self.track_id[index],
            tasks={k: t.take(index) for k, t in self.tasks.items()},
        )

    def largest(self) -> "Faces":
        """The face with the largest box (one row), or no faces if there are none."""
        if len(self) == 0:
            return self
        w_h = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return self.take(np.array([int(np.argmax(w_h[:, 0] * w_h[:, 1]))]))

    def replace(self, **changes) -> "Faces":
        return dataclasses.replace(self, **changes)

    def labels(self, i: int) -> dict[str, str]:
        """Face ``i``'s label text per task, in the model's task order."""
        return {name: pred.text(i) for name, pred in self.tasks.items()}


@dataclass(frozen=True, eq=False)
class FrameResult:
    """A frame, its faces and what each stage cost (ms)."""

    frame: Frame
    faces: Faces
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    dropped_frames: int = 0  # live mode: frames skipped since the previous result
    detected: bool = True  # False when this frame's boxes came from the tracker only
    new_scene: bool = False  # tracks were reset before this frame (a still, the first frame, a shot cut)
