"""Test-split metrics of decoded predictions (numpy only): accuracy, per-class accuracy and
confusion for classifiers; MAE, CS@5, bias, RMSE for values; the UTKFace race x gender table
and the age-band table (age MAE, gender and race accuracy per band of true age); for data without
age labels (MTFL) the classifiers' accuracy per band of the model's own age estimate.
``SplitResult`` is what ``training.evaluate`` computes and ``training.report`` renders (this
module is below both, so neither imports the other's internals).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from engine.modelspec import TaskSpec
from training.task_heads import task_head

CS_YEARS = 5.0
# Bands of true age (years, both ends included; None = no upper end): issue 11's evaluation.
AGE_BANDS: tuple[tuple[int, int | None], ...] = ((0, 12), (13, 20), (21, 40), (41, 60), (61, None))


def band_label(lo: int, hi: int | None) -> str:
    return f"{lo}+" if hi is None else f"{lo}–{hi}"


def band_mask(age: np.ndarray, lo: int, hi: int | None) -> np.ndarray:
    """True ages in [lo, hi] (whole years; ages are whole numbers in UTKFace's names)."""
    age = np.asarray(age, np.float64)
    return (age >= lo) if hi is None else (age >= lo) & (age <= hi)


@dataclass(frozen=True)
class SplitResult:
    name: str
    metrics: dict
    files: tuple[str, ...]
    truth: dict[str, np.ndarray]
    pred: dict[str, np.ndarray]
    spread: dict[str, np.ndarray] = field(default_factory=dict)  # task -> the model's stated spread, where it states one


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def classification_metrics(task: TaskSpec, truth: np.ndarray, pred: np.ndarray) -> dict:
    c = len(task.labels)
    truth, pred = truth.astype(int), pred.astype(int)
    confusion = np.zeros((c, c), np.int64)
    np.add.at(confusion, (truth, pred), 1)
    per_class = {label: _ratio(confusion[i, i], confusion[i].sum()) for i, label in enumerate(task.labels)}
    support = {label: int(confusion[i].sum()) for i, label in enumerate(task.labels)}
    return {"kind": task.kind, "n": int(len(truth)), "accuracy": _ratio(np.trace(confusion), confusion.sum()),
            "labels": list(task.labels), "per_class": per_class, "support": support, "confusion": confusion.tolist()}


def value_metrics(task: TaskSpec, truth: np.ndarray, pred: np.ndarray, spread: np.ndarray | None = None) -> dict:
    """MAE, CS@5, bias, RMSE; with the model's stated ``spread`` (one standard deviation per face)
    also how often the truth lies within one and two spreads of the value (a Gaussian: 68 %, 95 %)."""
    err = pred - truth
    n = len(err)
    out = {"kind": task.kind, "unit": task.unit, "n": int(n),
           "mae": float(np.abs(err).mean()) if n else None,
           "cs5": float((np.abs(err) <= CS_YEARS).mean()) if n else None,
           "bias": float(err.mean()) if n else None,
           "rmse": float(np.sqrt((err ** 2).mean())) if n else None}
    if spread is not None and n:
        out.update({"spread_median": float(np.median(spread)),
                    "within_1_spread": float((np.abs(err) <= spread).mean()),
                    "within_2_spread": float((np.abs(err) <= 2 * spread).mean())})
    return out


def _subset_scores(tasks: Mapping[str, TaskSpec], truth: Mapping[str, np.ndarray], pred: Mapping[str, np.ndarray],
                   m: np.ndarray) -> dict:
    """n, gender and race accuracy, age MAE and bias of the faces in mask ``m`` (None where empty)."""
    n = int(m.sum())
    row: dict = {"n": n}
    for name in ("gender", "race"):
        if name in tasks:
            row[f"{name}_acc"] = _ratio((pred[name][m] == truth[name][m]).sum(), n)
    if "age" in tasks:
        err = pred["age"][m] - truth["age"][m]
        row["age_mae"] = float(np.abs(err).mean()) if n else None
        row["age_bias"] = float(err.mean()) if n else None
    return row


def group_table(tasks: Mapping[str, TaskSpec], truth: Mapping[str, np.ndarray],
                pred: Mapping[str, np.ndarray]) -> list[dict]:
    """Gender and race accuracy, age MAE and bias for every race x gender group (true labels);
    UTKFace only (needs both gender and race)."""
    if not {"gender", "race"} <= tasks.keys():
        return []
    rows = []
    for r, race in enumerate(tasks["race"].labels):
        for g, gender in enumerate(tasks["gender"].labels):
            m = (truth["race"].astype(int) == r) & (truth["gender"].astype(int) == g)
            rows.append({"race": race, "gender": gender, **_subset_scores(tasks, truth, pred, m)})
    return rows


def band_table(tasks: Mapping[str, TaskSpec], truth: Mapping[str, np.ndarray], pred: Mapping[str, np.ndarray],
               bands: Sequence[tuple[int, int | None]] = AGE_BANDS) -> list[dict]:
    """Per band of TRUE age: n, age MAE and bias, gender and race accuracy (those the data has).
    Every band is listed, an empty one with n 0 and None scores; [] without an age task."""
    if "age" not in tasks:
        return []
    return [{"band": band_label(lo, hi), "lo": lo, "hi": hi,
             **_subset_scores(tasks, truth, pred, band_mask(truth["age"], lo, hi))} for lo, hi in bands]


def estimated_band_table(tasks: Mapping[str, TaskSpec], truth: Mapping[str, np.ndarray],
                         pred: Mapping[str, np.ndarray], age_estimate: np.ndarray,
                         bands: Sequence[tuple[int, int | None]] = AGE_BANDS) -> list[dict]:
    """Per band of the MODEL'S age estimate (rounded to whole years): n and the accuracy of every
    classifier task, for data that labels no age (MTFL). It shows where the errors lie, e.g.
    gender on faces the model reads as children; the band is the model's reading, not the truth."""
    age = np.rint(np.asarray(age_estimate, np.float64))
    names = [name for name, t in tasks.items() if task_head(t).classes]
    rows = []
    for lo, hi in bands:
        m = band_mask(age, lo, hi)
        n = int(m.sum())
        rows.append({"band": band_label(lo, hi), "lo": lo, "hi": hi, "n": n,
                     **{f"{name}_acc": _ratio((pred[name][m] == truth[name][m]).sum(), n) for name in names}})
    return rows


def compute_metrics(tasks: Sequence[TaskSpec], truth: Mapping[str, np.ndarray],
                    pred: Mapping[str, np.ndarray], spread: Mapping[str, np.ndarray] | None = None,
                    age_estimate: np.ndarray | None = None) -> dict:
    """Per-task blocks, headline keys (<task>_acc, <task>_mae, <task>_cs5), the race x gender
    table (``groups``) and the age-band table (``bands``); with ``age_estimate`` (the model's ages
    of data without age labels) also the table per band of it (``estimated_age_bands``)."""
    out: dict = {"tasks": {}}
    for t in tasks:
        if task_head(t).classes:
            block = classification_metrics(t, truth[t.name], pred[t.name])
            out[f"{t.name}_acc"] = block["accuracy"]
        else:
            block = value_metrics(t, truth[t.name], pred[t.name], (spread or {}).get(t.name))
            out[f"{t.name}_mae"] = block["mae"]
            out[f"{t.name}_cs5"] = block["cs5"]
        out["tasks"][t.name] = block
    by_name = {t.name: t for t in tasks}
    out["groups"] = group_table(by_name, truth, pred)
    out["bands"] = band_table(by_name, truth, pred)
    if age_estimate is not None and "age" not in by_name:
        out["estimated_age_bands"] = estimated_band_table(by_name, truth, pred, age_estimate)
    return out
