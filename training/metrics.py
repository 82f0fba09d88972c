"""Test-split metrics of decoded predictions (numpy only): accuracy, per-class accuracy and
confusion for classifiers; MAE, CS@5, bias, RMSE for values; the UTKFace race x gender table.
``SplitResult`` is what ``training.evaluate`` computes and ``training.report`` renders (this
module is below both, so neither imports the other's internals).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from engine.modelspec import TaskSpec

CS_YEARS = 5.0


@dataclass(frozen=True)
class SplitResult:
    name: str
    metrics: dict
    files: tuple[str, ...]
    truth: dict[str, np.ndarray]
    pred: dict[str, np.ndarray]


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def classification_metrics(task: TaskSpec, truth: np.ndarray, pred: np.ndarray) -> dict:
    c = len(task.labels)
    truth, pred = truth.astype(int), pred.astype(int)
    confusion = np.zeros((c, c), np.int64)
    np.add.at(confusion, (truth, pred), 1)
    per_class = {label: _ratio(confusion[i, i], confusion[i].sum()) for i, label in enumerate(task.labels)}
    return {"kind": task.kind, "n": int(len(truth)), "accuracy": _ratio(np.trace(confusion), confusion.sum()),
            "labels": list(task.labels), "per_class": per_class, "confusion": confusion.tolist()}


def value_metrics(task: TaskSpec, truth: np.ndarray, pred: np.ndarray) -> dict:
    err = pred - truth
    n = len(err)
    return {"kind": task.kind, "unit": task.unit, "n": int(n),
            "mae": float(np.abs(err).mean()) if n else None,
            "cs5": float((np.abs(err) <= CS_YEARS).mean()) if n else None,
            "bias": float(err.mean()) if n else None,
            "rmse": float(np.sqrt((err ** 2).mean())) if n else None}


def group_table(tasks: Mapping[str, TaskSpec], truth: Mapping[str, np.ndarray],
                pred: Mapping[str, np.ndarray]) -> list[dict]:
    """Gender accuracy and age MAE for every race x gender group (true labels), UTKFace only."""
    if not {"gender", "race"} <= tasks.keys():
        return []
    rows = []
    for r, race in enumerate(tasks["race"].labels):
        for g, gender in enumerate(tasks["gender"].labels):
            m = (truth["race"].astype(int) == r) & (truth["gender"].astype(int) == g)
            n = int(m.sum())
            row = {"race": race, "gender": gender, "n": n,
                   "gender_acc": _ratio((pred["gender"][m] == truth["gender"][m]).sum(), n)}
            if "age" in tasks:
                row["age_mae"] = float(np.abs(pred["age"][m] - truth["age"][m]).mean()) if n else None
            rows.append(row)
    return rows


def compute_metrics(tasks: Sequence[TaskSpec], truth: Mapping[str, np.ndarray],
                    pred: Mapping[str, np.ndarray]) -> dict:
    """Per-task blocks, headline keys (<task>_acc, <task>_mae, <task>_cs5) and the group table."""
    out: dict = {"tasks": {}}
    for t in tasks:
        if t.kind in ("binary", "multiclass"):
            block = classification_metrics(t, truth[t.name], pred[t.name])
            out[f"{t.name}_acc"] = block["accuracy"]
        else:
            block = value_metrics(t, truth[t.name], pred[t.name])
            out[f"{t.name}_mae"] = block["mae"]
            out[f"{t.name}_cs5"] = block["cs5"]
        out["tasks"][t.name] = block
    out["groups"] = group_table({t.name: t for t in tasks}, truth, pred)
    return out
