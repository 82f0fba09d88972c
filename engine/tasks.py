"""What each task kind means, in one place: the registry of task kinds.

A model's description (``engine.modelspec``) lists tasks, each of a *kind*. Everything
that depends on the kind lives in that kind's class here, and nowhere else:

- ``needs`` / ``keeps``: the description fields it requires and the ones it uses;
- :meth:`TaskKind.output_tail`: the per-face shape of its graph output (after N);
- :meth:`TaskKind.decode`: raw output rows -> a :class:`TaskPrediction`;
- ``label_index``: whether ``value`` is a label index re-derived from smoothed
  probabilities (``engine.smooth`` averages probabilities, values and points alike);
- :meth:`TaskKind.text`: the short label drawn on the overlay and in the face panel;
- :meth:`TaskKind.record_value` / :meth:`TaskKind.record_columns`: what is written to JSONL / CSV.

A new kind is one class with ``@register_task_kind``; the training side has its mirror
in ``training/task_heads.py``. See docs/ARCHITECTURE.md, "Task kinds".
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from engine.types import TaskPrediction

if TYPE_CHECKING:  # the spec imports this module; only types flow the other way
    from engine.modelspec import TaskSpec

_UNIT_SHORT = {"years": "y", "year": "y"}
_REGISTRY: dict[str, "TaskKind"] = {}


def register_task_kind(cls):
    """Class decorator: the kind becomes known to descriptions, decoding and writers by ``cls.name``."""
    _REGISTRY[cls.name] = cls()
    return cls


def task_kind(name: str) -> "TaskKind":
    """The kind called ``name``; KeyError names the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown task kind '{name}' (known: {', '.join(_REGISTRY)})") from None


def task_kinds() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def _num(value: float, digits: int) -> float | None:
    v = float(value)
    return round(v, digits) if math.isfinite(v) else None


class TaskKind:
    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()  # description fields this kind must have
    keeps: ClassVar[tuple[str, ...]] = ("unit",)  # description fields this kind uses
    label_count: ClassVar[int | None] = None  # exactly this many labels (None: at least 2)
    label_index: ClassVar[bool] = False  # value = argmax of probs (re-derived after smoothing)
    has_points: ClassVar[bool] = False  # predicts points in frame pixels (needs chip->frame maps)

    def output_tail(self, task: "TaskSpec") -> tuple[int, ...]:
        return ()

    def decode(self, task: "TaskSpec", raw: np.ndarray, extra: dict[str, np.ndarray],
               chip_to_frame: np.ndarray | None, chip_size: int) -> TaskPrediction:
        raise NotImplementedError

    def optional_outputs(self, task: "TaskSpec") -> tuple[str, ...]:
        """Names of extra graph outputs this task reads when the graph has them."""
        return ()

    def text(self, task: "TaskSpec", pred: TaskPrediction, i: int) -> str:
        v = float(pred.value[i])
        return "?" if not math.isfinite(v) else f"{v:.3g}"

    def record_value(self, task: "TaskSpec", pred: TaskPrediction, i: int) -> Any:
        return _num(pred.value[i], 2)

    def from_probs(self, task: "TaskSpec | None", probs_row: np.ndarray):
        """(value, confidence, spread) of one face from (smoothed) probabilities, or None when
        this kind's value is not a function of them."""
        if self.label_index:
            return np.float32(probs_row.argmax()), np.float32(probs_row.max()), None
        return None

    def record_columns(self, task: "TaskSpec") -> tuple[str, ...]:
        """This task's JSONL / CSV fields; ``record_fields`` fills them."""
        return (task.name, f"{task.name}_confidence")

    def record_fields(self, task: "TaskSpec", pred: TaskPrediction, i: int) -> dict[str, Any]:
        return {task.name: self.record_value(task, pred, i), f"{task.name}_confidence": _num(pred.confidence[i], 3)}


class _Labelled(TaskKind):
    needs = ("labels",)
    keeps = ("labels", "unit")
    label_index = True

    def text(self, task, pred, i):
        value = float(pred.value[i])
        label = task.labels[int(value)] if math.isfinite(value) else "?"
        conf = float(pred.confidence[i])
        return f"{label} {conf * 100:.0f}%" if math.isfinite(conf) else label

    def record_value(self, task, pred, i):
        v = float(pred.value[i])
        if not math.isfinite(v):
            return None
        k = int(round(v))
        return task.labels[k] if 0 <= k < len(task.labels) else None


@register_task_kind
class Binary(_Labelled):
    """One probability per face, of ``labels[1]``; the output is [N] or [N, 1]."""

    name = "binary"
    label_count = 2

    def decode(self, task, raw, extra, chip_to_frame, chip_size):
        p = raw.reshape(len(raw))
        probs = np.stack([1.0 - p, p], axis=1)
        return TaskPrediction(value=(p > 0.5).astype(np.float32), confidence=np.maximum(p, 1.0 - p), probs=probs)


@register_task_kind
class Multiclass(_Labelled):
    """A softmax over ``labels``; value = the index of the most probable."""

    name = "multiclass"

    def output_tail(self, task):
        return (len(task.labels),)

    def decode(self, task, raw, extra, chip_to_frame, chip_size):
        probs = raw.reshape(len(raw), len(task.labels))
        return TaskPrediction(value=probs.argmax(axis=1).astype(np.float32),
                              confidence=probs.max(axis=1, initial=0.0), probs=probs)


def _number_text(task, value: float) -> str:
    if not math.isfinite(value):
        return "?"
    unit = _UNIT_SHORT.get(task.unit, task.unit)
    number = f"{value:.0f}" if unit == "y" or abs(value) >= 100 else f"{value:.3g}"
    return f"{number} {unit}".strip()


class _Value(TaskKind):
    """A number per face in ``unit``, with a spread (one standard deviation) where the model
    gives one: shown "34±4 y", written as ``<name>_spread``; confidence = 1 / (1 + spread)."""

    def text(self, task, pred, i):
        text = _number_text(task, float(pred.value[i]))
        spread = float(pred.spread[i]) if pred.spread is not None else math.nan
        if math.isfinite(spread) and text != "?":
            number, _, unit = text.partition(" ")
            text = f"{number}±{spread:.0f} {unit}".strip()
        return text

    def record_columns(self, task):
        return (*super().record_columns(task), f"{task.name}_spread")

    def record_fields(self, task, pred, i):
        spread = _num(pred.spread[i], 2) if pred.spread is not None else None
        return {**super().record_fields(task, pred, i), f"{task.name}_spread": spread}


def _spread_confidence(spread: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.maximum(spread, 0.0))).astype(np.float32)


@register_task_kind
class Regression(_Value):
    """One number per face in ``unit``; an optional '<name>_spread' output gives confidence
    1 / (1 + spread)."""

    name = "regression"
    keeps = ("unit", "range")

    def optional_outputs(self, task):
        return (f"{task.name}_spread",)

    def decode(self, task, raw, extra, chip_to_frame, chip_size):
        n = len(raw)
        spread = extra.get(f"{task.name}_spread")
        if spread is None:
            return TaskPrediction(value=raw.reshape(n), confidence=np.full(n, np.nan, np.float32))
        spread = np.maximum(np.asarray(spread, np.float32).reshape(n), 0.0)
        return TaskPrediction(value=raw.reshape(n), confidence=_spread_confidence(spread), spread=spread)


@register_task_kind
class Expectation(_Value):
    """A softmax over ``bins`` (a distribution: age over one-year bins); value = its mean
    Σ pᵢ·binᵢ, spread = its standard deviation, confidence = 1 / (1 + spread)."""

    name = "expectation"
    needs = ("bins",)
    keeps = ("unit", "bins")

    def output_tail(self, task):
        return (len(task.bins),)

    def decode(self, task, raw, extra, chip_to_frame, chip_size):
        probs = raw.reshape(len(raw), len(task.bins))
        value, spread = self.summarise(task, probs)
        return TaskPrediction(value=value, confidence=_spread_confidence(spread), probs=probs, spread=spread)

    @staticmethod
    def summarise(task, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of each row's distribution over ``task.bins``."""
        p, bins = np.asarray(probs, np.float64), np.asarray(task.bins, np.float64)
        mean = p @ bins
        var = np.maximum(p @ (bins * bins) - mean * mean, 0.0)
        return mean.astype(np.float32), np.sqrt(var).astype(np.float32)

    def from_probs(self, task, probs_row):
        if task is None:  # a bare prediction: its bins are unknown
            return None
        mean, spread = self.summarise(task, probs_row[None])
        return mean[0], _spread_confidence(spread)[0], spread[0]


@register_task_kind
class Landmarks(TaskKind):
    """``points`` (x, y) per face in chip units (0..1), mapped to frame pixels."""

    name = "landmarks"
    needs = ("points",)
    keeps = ("points",)
    has_points = True

    def output_tail(self, task):
        return (task.points, 2)

    def decode(self, task, raw, extra, chip_to_frame, chip_size):
        n = len(raw)
        points = raw.reshape(n, task.points, 2) * np.float32(chip_size)
        if chip_to_frame is not None:
            a = np.asarray(chip_to_frame, np.float32).reshape(n, 2, 3)
            points = points @ a[:, :, :2].transpose(0, 2, 1) + a[:, None, :, 2]
        nan = np.full(n, np.nan, np.float32)
        return TaskPrediction(value=nan, confidence=nan.copy(), points_xy=points)

    def text(self, task, pred, i):
        return f"{task.points} points"

    def record_value(self, task, pred, i):
        if pred.points_xy is None:
            return None
        return [[_num(x, 1), _num(y, 1)] for x, y in np.asarray(pred.points_xy[i], np.float64)]


def format_value(task: "TaskSpec", pred: TaskPrediction, i: int) -> str:
    """A short label for face ``i``: "34 y", "female 97%", "asian 81%"."""
    return task_kind(task.kind).text(task, pred, i)
