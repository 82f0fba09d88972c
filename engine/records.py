"""The record schema: one dict per face and frame, shared by JSONL, CSV and snapshots.

::

    {"source": "clip.mp4", "frame": 12, "time_s": 0.4, "track_id": 3,
     "box_xyxy": [x0, y0, x1, y1], "score": 1.234,
     "gender": "female", "gender_confidence": 0.97, "age": 34.2, "age_confidence": 0.19,
     "age_spread": 4.3, ...}

``source`` is the video's path, or for a folder the image's own path; ``frame`` is the
frame's index in the video, or the image's place in the folder's name-sorted listing
(an unreadable image keeps its place, so it shifts no other record). Labels are strings,
numbers are rounded, NaN is written as null (JSONL) / empty (CSV).
"""
from __future__ import annotations

import math
from typing import Any

from engine.modelspec import ModelSpec
from engine.tasks import task_kind
from engine.types import FrameResult

BASE_COLUMNS = ("source", "frame", "time_s", "track_id", "box_xyxy", "score")


def _num(value: float, digits: int) -> float | None:
    v = float(value)
    return round(v, digits) if math.isfinite(v) else None


def task_columns(spec: ModelSpec) -> list[str]:
    """Each task's fields, by its kind: ``<name>``, ``<name>_confidence`` and, for value tasks,
    ``<name>_spread`` (one standard deviation, e.g. the age's ±)."""
    return [c for t in spec.tasks for c in task_kind(t.kind).record_columns(t)]


def face_records(result: FrameResult, spec: ModelSpec) -> list[dict[str, Any]]:
    """One dict per face of ``result`` in the schema above (tasks in ``spec`` order)."""
    faces = result.faces
    records = []
    for i in range(len(faces)):
        rec: dict[str, Any] = {
            "source": result.frame.source_id,
            "frame": int(result.frame.index),
            "time_s": _num(result.frame.timestamp_s, 3),
            "track_id": int(faces.track_id[i]),
            "box_xyxy": [_num(v, 1) for v in faces.xyxy[i]],
            "score": _num(faces.score[i], 3),
        }
        for task in spec.tasks:
            kind, pred = task_kind(task.kind), faces.tasks.get(task.name)
            if pred is None:
                rec.update(dict.fromkeys(kind.record_columns(task)))
                continue
            rec.update(kind.record_fields(task, pred, i))
        records.append(rec)
    return records
