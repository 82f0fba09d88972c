"""training.metrics: the age-band table and the race x gender table, against plain numpy by hand."""
from __future__ import annotations

import numpy as np
import pytest

from training.utkface import utk_tasks
from training.metrics import AGE_BANDS, band_table, classification_metrics, compute_metrics, group_table

TASKS = {t.name: t for t in utk_tasks("full")}


def _data(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = {"gender": rng.integers(0, 2, n).astype(float), "race": rng.integers(0, 5, n).astype(float),
             "age": rng.integers(1, 100, n).astype(float)}
    pred = {"gender": np.where(rng.random(n) < 0.9, truth["gender"], 1 - truth["gender"]),
            "race": np.where(rng.random(n) < 0.8, truth["race"], rng.integers(0, 5, n)).astype(float),
            "age": truth["age"] + rng.normal(2, 6, n)}
    return truth, pred


def test_bands_are_the_issues_and_each_holds_its_true_ages():
    assert [(lo, hi) for lo, hi in AGE_BANDS] == [(0, 12), (13, 20), (21, 40), (41, 60), (61, None)]
    truth, pred = _data()
    rows = band_table(TASKS, truth, pred)
    assert [r["band"] for r in rows] == ["0–12", "13–20", "21–40", "41–60", "61+"]
    assert sum(r["n"] for r in rows) == len(truth["age"])
    for r in rows:
        a = truth["age"]
        m = (a >= r["lo"]) & (a <= (r["hi"] if r["hi"] is not None else np.inf))
        err = pred["age"][m] - a[m]
        assert r["n"] == m.sum()
        assert r["age_mae"] == pytest.approx(np.abs(err).mean())
        assert r["age_bias"] == pytest.approx(err.mean())
        assert r["gender_acc"] == pytest.approx((pred["gender"][m] == truth["gender"][m]).mean())
        assert r["race_acc"] == pytest.approx((pred["race"][m] == truth["race"][m]).mean())


def test_band_edges_are_inclusive_and_an_empty_band_scores_none():
    truth = {"age": np.array([12.0, 13.0, 20.0, 21.0, 60.0, 61.0]), "gender": np.zeros(6)}
    pred = {"age": truth["age"] + 1, "gender": np.zeros(6)}
    rows = band_table({"age": TASKS["age"], "gender": TASKS["gender"]}, truth, pred)
    assert [r["n"] for r in rows] == [1, 2, 1, 1, 1]
    assert "race_acc" not in rows[0]
    only_adults = {"age": np.array([30.0, 45.0]), "gender": np.zeros(2)}
    empty = band_table({"age": TASKS["age"], "gender": TASKS["gender"]}, only_adults, only_adults)[0]
    assert empty == {"band": "0–12", "lo": 0, "hi": 12, "n": 0, "gender_acc": None, "age_mae": None, "age_bias": None}
    assert band_table({"gender": TASKS["gender"]}, truth, pred) == []  # no age task: no bands


def test_race_by_gender_rows_carry_gender_and_race_accuracy_and_age():
    truth, pred = _data(seed=1)
    rows = group_table(TASKS, truth, pred)
    assert len(rows) == 10 and sum(r["n"] for r in rows) == len(truth["age"])
    for r in rows:
        m = (truth["race"] == TASKS["race"].labels.index(r["race"])) & (truth["gender"] == TASKS["gender"].labels.index(r["gender"]))
        assert r["race_acc"] == pytest.approx((pred["race"][m] == truth["race"][m]).mean())
        assert r["gender_acc"] == pytest.approx((pred["gender"][m] == truth["gender"][m]).mean())
        assert r["age_mae"] == pytest.approx(np.abs(pred["age"][m] - truth["age"][m]).mean())


def test_compute_metrics_holds_bands_groups_and_class_support():
    truth, pred = _data(seed=2)
    out = compute_metrics(list(TASKS.values()), truth, pred)
    assert len(out["bands"]) == 5 and len(out["groups"]) == 10
    race = classification_metrics(TASKS["race"], truth["race"], pred["race"])
    assert race["support"] == {label: int((truth["race"] == i).sum()) for i, label in enumerate(TASKS["race"].labels)}
    assert out["tasks"]["race"] == race


def test_a_stated_spread_is_scored_by_how_often_the_truth_lies_within_it():
    truth = {"age": np.array([30.0, 30.0, 30.0, 30.0])}
    pred = {"age": np.array([31.0, 34.0, 37.0, 30.0])}  # errors 1, 4, 7, 0
    spread = {"age": np.array([2.0, 3.0, 3.0, 1.0])}  # within one: 1st, 4th; within two: also the 2nd
    block = compute_metrics([TASKS["age"]], truth, pred, spread)["tasks"]["age"]
    assert (block["within_1_spread"], block["within_2_spread"], block["spread_median"]) == (0.5, 0.75, 2.5)
    rng = np.random.default_rng(0)  # a model whose errors are normal with the spread it states: 68 % / 95 %
    sd = rng.uniform(2, 10, 20000)
    honest = compute_metrics([TASKS["age"]], {"age": np.full(20000, 40.0)}, {"age": 40 + rng.normal(0, sd)},
                             {"age": sd})["tasks"]["age"]
    assert honest["within_1_spread"] == pytest.approx(0.6827, abs=0.01)
    assert honest["within_2_spread"] == pytest.approx(0.9545, abs=0.005)
    assert "within_1_spread" not in compute_metrics([TASKS["age"]], truth, pred)["tasks"]["age"]  # no spread stated


def test_data_without_ages_is_scored_per_band_of_the_models_age_estimate():
    from training.mtfl import MTFL_TASKS

    tasks = [t for t in MTFL_TASKS if t.name in ("gender", "smile")]
    truth = {"gender": np.array([1, 1, 0, 0, 1, 0.]), "smile": np.array([1, 0, 1, 0, 1, 1.])}
    pred = {"gender": np.array([0, 1, 0, 1, 1, 0.]), "smile": np.array([1, 1, 1, 0, 1, 1.])}
    ages = np.array([3.0, 12.4, 12.6, 20.4, 35.0, 80.0])  # rounded: 3 and 12 in 0-12; 13 and 20 in 13-20
    rows = {r["band"]: r for r in compute_metrics(tasks, truth, pred, age_estimate=ages)["estimated_age_bands"]}
    assert [r["n"] for r in rows.values()] == [2, 2, 1, 0, 1]
    assert (rows["0–12"]["gender_acc"], rows["0–12"]["smile_acc"]) == (0.5, 0.5)
    assert (rows["13–20"]["gender_acc"], rows["13–20"]["smile_acc"]) == (0.5, 1.0)
    assert rows["41–60"]["gender_acc"] is None and rows["61+"]["gender_acc"] == 1.0
    # data that labels age is scored by its true age only
    truth_u, pred_u = _data(n=50)
    assert "estimated_age_bands" not in compute_metrics(list(TASKS.values()), truth_u, pred_u,
                                                        age_estimate=pred_u["age"])
