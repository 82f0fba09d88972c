"""engine/smooth.py: per-track EMA reduces label flicker and resets for a new face.

Predictions are made by the real decode of the fixture model (engine/model.py) from
noisy raw outputs, so the smoother sees exactly what the pipeline gives it.
"""
from __future__ import annotations

import numpy as np
import pytest

from engine.model import FaceAttrModel
from engine.smooth import TaskSmoother
from engine.types import Faces

N_FRAMES = 300


@pytest.fixture(scope="module")
def model(tiny_model_path) -> FaceAttrModel:
    return FaceAttrModel.load(tiny_model_path, backend="cpu")


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def noisy_raw(rng: np.random.Generator, n_faces: int = 1) -> dict[str, np.ndarray]:
    """One frame of raw outputs for a face that is truly 'female 60%', 'asian-ish', ~35 years."""
    return {
        "gender": np.clip(0.6 + rng.normal(0, 0.15, n_faces), 0.01, 0.99).astype(np.float32),
        "race": softmax(np.array([0.0, 0.0, 0.6, 0.4, -1.0]) + rng.normal(0, 0.5, (n_faces, 5))),
        "age": (35 + rng.normal(0, 4, n_faces)).astype(np.float32),
        "age_bins": softmax(-0.5 * ((np.arange(8) * 10 + 5 - 35) / 10) ** 2 + rng.normal(0, 0.4, (n_faces, 8))),
    }


def frame_faces(model: FaceAttrModel, raw: dict, track_ids) -> Faces:
    n = len(track_ids)
    xyxy = np.tile(np.array([[100, 100, 200, 200]], np.float32), (n, 1))
    return Faces.from_boxes(xyxy, np.ones(n)).replace(
        track_id=np.array(track_ids, np.int64), tasks=model.decode(raw))


def flips(labels) -> int:
    labels = np.asarray(labels)
    return int((labels[1:] != labels[:-1]).sum())


def test_smoothing_reduces_label_flips_on_noisy_predictions(model):
    rng = np.random.default_rng(7)
    smoother = TaskSmoother(alpha=0.6, tasks=model.spec)
    raw_labels = {"gender": [], "race": []}
    smooth_labels = {"gender": [], "race": []}
    raw_age, smooth_age = [], []
    for _ in range(N_FRAMES):
        faces = frame_faces(model, noisy_raw(rng), [1])
        out = smoother(faces)
        for task in raw_labels:
            raw_labels[task].append(int(faces.tasks[task].value[0]))
            smooth_labels[task].append(int(out.tasks[task].value[0]))
        raw_age.append(faces.tasks["age"].value[0])
        smooth_age.append(out.tasks["age"].value[0])
    for task in ("gender", "race"):  # measured (seed 7, alpha 0.6): gender 122 -> 50, race 170 -> 87
        raw, smoothed = flips(raw_labels[task]), flips(smooth_labels[task])
        assert smoothed < 0.6 * raw, f"{task}: {raw} flips raw, {smoothed} smoothed"
    assert np.std(np.diff(smooth_age)) < 0.5 * np.std(np.diff(raw_age))
    # smoothing must not bias: the majority label and the mean age stay where they are
    assert np.bincount(smooth_labels["gender"]).argmax() == 1
    assert abs(np.mean(smooth_age) - 35) < 1.0


def test_smoothed_label_and_value_are_derived_from_smoothed_probs(model):
    rng = np.random.default_rng(1)
    smoother = TaskSmoother(alpha=0.6, tasks=model.spec)
    first, second = noisy_raw(rng), noisy_raw(rng)
    smoother(frame_faces(model, first, [1]))
    out = smoother(frame_faces(model, second, [1]))
    race = 0.6 * first["race"][0] + 0.4 * second["race"][0]
    np.testing.assert_allclose(out.tasks["race"].probs[0], race, atol=1e-6)
    assert out.tasks["race"].value[0] == race.argmax()
    assert out.tasks["race"].confidence[0] == pytest.approx(race.max(), abs=1e-6)
    g = 0.6 * first["gender"][0] + 0.4 * second["gender"][0]
    assert out.tasks["gender"].probs[0, 1] == pytest.approx(g, abs=1e-6)
    assert out.tasks["gender"].value[0] == float(g > 0.5)
    bins = 0.6 * first["age_bins"][0] + 0.4 * second["age_bins"][0]
    expected_age = float(bins @ np.array(model.spec.task("age_bins").bins))
    assert out.tasks["age_bins"].value[0] == pytest.approx(expected_age, rel=1e-5)
    assert out.tasks["age"].value[0] == pytest.approx(0.6 * first["age"][0] + 0.4 * second["age"][0], rel=1e-6)


def test_a_new_track_id_starts_from_its_own_prediction(model):
    rng = np.random.default_rng(3)
    smoother = TaskSmoother(alpha=0.9, tasks=model.spec)
    female = noisy_raw(rng)
    female["gender"][:] = 0.95
    for _ in range(20):
        smoother(frame_faces(model, female, [1]))
    male = noisy_raw(rng)
    male["gender"][:] = 0.1
    # a different face takes the same place on screen: the tracker gave it id 2
    out = smoother(frame_faces(model, male, [2]))
    assert out.tasks["gender"].value[0] == 0.0
    assert out.tasks["gender"].probs[0, 1] == pytest.approx(0.1)
    assert out.tasks["age"].value[0] == pytest.approx(male["age"][0])


def test_each_track_is_smoothed_separately(model):
    rng = np.random.default_rng(5)
    smoother = TaskSmoother(alpha=0.6, tasks=model.spec)
    a, b = noisy_raw(rng), noisy_raw(rng)
    both = {k: np.concatenate([a[k], b[k]]) for k in a}
    smoother(frame_faces(model, both, [1, 2]))
    swapped = {k: np.concatenate([b[k], a[k]]) for k in a}
    out = smoother(frame_faces(model, swapped, [2, 1]))  # same tracks, listed the other way round
    np.testing.assert_allclose(out.tasks["age"].value, [b["age"][0], a["age"][0]], rtol=1e-6)


def test_tracks_unseen_for_more_than_max_missed_frames_are_forgotten(model):
    rng = np.random.default_rng(11)
    smoother = TaskSmoother(alpha=0.6, tasks=model.spec, max_missed=5)
    smoother(frame_faces(model, noisy_raw(rng), [1]))
    for _ in range(5):
        smoother(Faces())
    assert smoother.tracked_ids == [1]
    smoother(Faces())
    assert smoother.tracked_ids == []
    raw = noisy_raw(rng)
    out = smoother(frame_faces(model, raw, [1]))
    assert out.tasks["age"].value[0] == pytest.approx(raw["age"][0])


def test_smoother_returns_new_faces_and_leaves_its_input_alone(model):
    rng = np.random.default_rng(2)
    smoother = TaskSmoother(alpha=0.6, tasks=model.spec)
    smoother(frame_faces(model, noisy_raw(rng), [1]))
    faces = frame_faces(model, noisy_raw(rng), [1])
    values = {k: t.value.copy() for k, t in faces.tasks.items()}
    probs = {k: t.probs.copy() for k, t in faces.tasks.items() if t.probs is not None}
    out = smoother(faces)
    assert out is not faces
    for k, t in faces.tasks.items():
        np.testing.assert_array_equal(t.value, values[k])
        if k in probs:
            np.testing.assert_array_equal(t.probs, probs[k])
    assert not np.allclose(out.tasks["age"].value, faces.tasks["age"].value)


def test_untracked_faces_pass_through_unsmoothed(model):
    rng = np.random.default_rng(4)
    smoother = TaskSmoother(alpha=0.6, tasks=model.spec)
    for _ in range(3):
        raw = noisy_raw(rng)
        out = smoother(frame_faces(model, raw, [-1]))
        assert out.tasks["age"].value[0] == pytest.approx(raw["age"][0])
    assert smoother.tracked_ids == []


def test_without_the_spec_kinds_are_inferred_and_results_match(model):
    rng = np.random.default_rng(9)
    with_spec, without = TaskSmoother(0.6, tasks=model.spec), TaskSmoother(0.6)
    for _ in range(30):
        faces = frame_faces(model, noisy_raw(rng, 2), [1, 2])
        a, b = with_spec(faces), without(faces)
        for name in a.tasks:
            np.testing.assert_allclose(a.tasks[name].value, b.tasks[name].value, rtol=1e-6, err_msg=name)


def test_alpha_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\), got 1.0"):
        TaskSmoother(alpha=1.0)
