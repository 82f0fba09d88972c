"""Task kinds are a registry: one class per kind holds everything the engine does with it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine import tasks
from engine.modelspec import ModelSpec, TaskSpec
from engine.tasks import TaskKind, register_task_kind, task_kind, task_kinds
from engine.types import Faces, TaskPrediction

SPECS = {
    "binary": TaskSpec("gender", "binary", labels=("male", "female")),
    "multiclass": TaskSpec("race", "multiclass", labels=("a", "b", "c")),
    "regression": TaskSpec("age", "regression", unit="years"),
    "expectation": TaskSpec("age_bins", "expectation", unit="years", bins=(10.0, 20.0, 30.0)),
    "landmarks": TaskSpec("points", "landmarks", points=5),
}


def test_every_kind_has_an_example_here():
    assert set(task_kinds()) == set(SPECS)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_each_kind_decodes_outputs_of_its_shape_into_one_row_per_face(kind):
    spec = SPECS[kind]
    k = task_kind(kind)
    rng = np.random.default_rng(0)
    raw = rng.random((4, *k.output_tail(spec))).astype(np.float32)
    if kind in ("multiclass", "expectation"):
        raw /= raw.sum(axis=1, keepdims=True)
    pred = k.decode(spec, raw, {}, None, np.float32(150))
    assert len(pred) == 4 and len(pred.confidence) == 4
    pred = TaskPrediction(pred.value, pred.confidence, pred.probs, pred.points_xy, task=spec)
    assert isinstance(pred.text(0), str) and pred.text(0)
    json.dumps(k.record_value(spec, pred, 0))  # a record value is plain JSON


def test_binary_and_multiclass_values_are_label_indices_re_derived_from_probabilities():
    assert task_kind("binary").label_index and task_kind("multiclass").label_index
    assert not task_kind("expectation").label_index and not task_kind("regression").label_index
    probs = np.array([[0.2, 0.7, 0.1]], np.float32)
    pred = task_kind("multiclass").decode(SPECS["multiclass"], probs, {}, None, 150)
    assert pred.value.tolist() == [1.0] and pred.confidence.tolist() == pytest.approx([0.7])


def test_expectation_value_is_the_mean_over_its_bins():
    pred = task_kind("expectation").decode(SPECS["expectation"], np.array([[0.5, 0.5, 0.0]], np.float32),
                                           {}, None, 150)
    assert pred.value.tolist() == pytest.approx([15.0])


def test_an_age_distribution_decodes_to_its_mean_and_spread_and_reads_34_plus_minus_4():
    ages = tuple(float(a) for a in range(0, 101))
    task = TaskSpec("age", "expectation", unit="years", bins=ages)
    p = np.exp(-0.5 * ((np.array(ages) - 34.0) / 4.0) ** 2)  # a Gaussian of mean 34, sd 4 over one-year bins
    pred = task_kind("expectation").decode(task, (p / p.sum())[None].astype(np.float32), {}, None, 150)
    assert pred.value[0] == pytest.approx(34.0, abs=1e-3) and pred.spread[0] == pytest.approx(4.0, abs=0.01)
    assert pred.confidence[0] == pytest.approx(1 / 5, abs=1e-3)
    assert task_kind("expectation").text(task, pred, 0) == "34±4 y"
    assert task_kind("expectation").record_fields(task, pred, 0) == pytest.approx(
        {"age": 34.0, "age_confidence": 0.2, "age_spread": 4.0}, abs=0.01)
    sharp = task_kind("expectation").decode(task, np.eye(len(ages), dtype=np.float32)[[70]], {}, None, 150)
    assert sharp.value[0] == 70.0 and sharp.spread[0] == 0.0 and sharp.confidence[0] == 1.0


def test_regression_reads_its_optional_spread_output_as_confidence():
    k = task_kind("regression")
    assert k.optional_outputs(SPECS["regression"]) == ("age_spread",)
    pred = k.decode(SPECS["regression"], np.array([30.0], np.float32), {"age_spread": np.array([3.0])}, None, 150)
    assert pred.confidence.tolist() == pytest.approx([0.25])


def test_a_new_kind_is_one_class_and_the_description_accepts_it():
    @register_task_kind
    class Percent(TaskKind):
        """A test-only kind: one number 0..1 shown as a percentage."""

        name = "percent-test"

        def decode(self, task, raw, extra, chip_to_frame, chip_size):
            v = raw.reshape(len(raw))
            return TaskPrediction(value=v, confidence=np.full(len(v), np.nan, np.float32))

        def text(self, task, pred, i):
            return f"{pred.value[i] * 100:.0f}%"

    try:
        spec = ModelSpec("m", (TaskSpec("smile", "percent-test"),), "b")
        parsed = ModelSpec.from_json(spec.to_json())
        assert parsed.tasks[0].kind == "percent-test"
        pred = task_kind("percent-test").decode(parsed.tasks[0], np.array([0.42], np.float32), {}, None, 150)
        faces = Faces.from_boxes(np.zeros((1, 4)), np.ones(1)).replace(
            tasks={"smile": TaskPrediction(pred.value, pred.confidence, task=parsed.tasks[0])})
        assert faces.labels(0) == {"smile": "42%"}
    finally:
        del tasks._REGISTRY["percent-test"]


def test_faces_refuse_a_task_whose_rows_do_not_match_the_faces():
    faces = Faces.from_boxes(np.zeros((2, 4)), np.ones(2))
    pred = TaskPrediction(np.zeros(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"Faces.tasks\['age'\] has 3 rows, xyxy has 2"):
        faces.replace(tasks={"age": pred})
    with pytest.raises(ValueError, match="TaskPrediction.confidence has 2 rows, value has 3"):
        TaskPrediction(np.zeros(3, np.float32), np.zeros(2, np.float32))


def test_a_regression_with_a_spread_is_labelled_value_plus_minus_spread():
    spec = SPECS["regression"]
    k = task_kind("regression")
    with_spread = k.decode(spec, np.array([34.2], np.float32), {"age_spread": np.array([6.0])}, None, 150)
    without = k.decode(spec, np.array([34.2], np.float32), {}, None, 150)
    assert k.text(spec, with_spread, 0) == "34±6 y" and k.text(spec, without, 0) == "34 y"
