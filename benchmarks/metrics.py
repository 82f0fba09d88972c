"""Accuracy metrics over one system's predictions: overall and per (race, gender) group.

Labels follow UTKFace: gender 0 = male, 1 = female; race 0..4 = white, black, asian,
indian, other; age in years. A system that does not predict a task has NaN (age) or -1
(gender, race) there and gets ``None`` for that metric.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GENDERS = ("male", "female")
RACES = ("white", "black", "asian", "indian", "other")
CS_YEARS = 5


@dataclass(frozen=True)
class Predictions:
    age: np.ndarray  # [N] float years, NaN = not predicted
    gender: np.ndarray  # [N] int 0/1, -1 = not predicted
    race: np.ndarray  # [N] int 0..4, -1 = not predicted

    @classmethod
    def empty(cls, n: int) -> "Predictions":
        return cls(np.full(n, np.nan), np.full(n, -1, np.int64), np.full(n, -1, np.int64))

    def take(self, mask: np.ndarray) -> "Predictions":
        return Predictions(self.age[mask], self.gender[mask], self.race[mask])


@dataclass(frozen=True)
class Truth:
    age: np.ndarray
    gender: np.ndarray
    race: np.ndarray

    def take(self, mask: np.ndarray) -> "Truth":
        return Truth(self.age[mask], self.gender[mask], self.race[mask])


def _r(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


def scores(truth: Truth, pred: Predictions) -> dict:
    n = len(truth.age)
    out: dict = {"n": int(n)}
    if n and not np.isnan(pred.age).all():
        err = np.abs(pred.age - truth.age)
        out["age_mae"] = _r(np.nanmean(err), 3)
        out["age_cs5"] = _r(np.mean(err <= CS_YEARS))
    else:
        out["age_mae"] = out["age_cs5"] = None
    out["gender_acc"] = _r(np.mean(pred.gender == truth.gender)) if n and (pred.gender >= 0).any() else None
    out["race_acc"] = _r(np.mean(pred.race == truth.race)) if n and (pred.race >= 0).any() else None
    return out


def group_scores(truth: Truth, pred: Predictions) -> list[dict]:
    rows = []
    for r, race in enumerate(RACES):
        for g, gender in enumerate(GENDERS):
            mask = (truth.race == r) & (truth.gender == g)
            rows.append({"race": race, "gender": gender, **scores(truth.take(mask), pred.take(mask))})
    return rows
