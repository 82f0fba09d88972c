"""engine/model.py on real ONNX files run by ONNX Runtime, with chips from a real face."""
from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engine.align import Aligner
from engine.detect import HogDetector
from engine.align import chip_to_frame_affines
from engine.model import BackendUnavailableError, FaceAttrModel, ModelLoadError
from engine.providers import _plan_providers, available_providers
from engine.tasks import format_value
from engine.modelspec import METADATA_KEY, ModelDescriptionError, TaskSpec
from engine.types import Faces, TaskPrediction

GPU_PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider"}


@pytest.fixture(scope="module")
def model(tiny_model_path) -> FaceAttrModel:
    return FaceAttrModel.load(tiny_model_path, backend="cpu")


@pytest.fixture(scope="module")
def astronaut_face():
    """(image_bgr, faces with landmarks, chips_rgb) for the astronaut portrait: one real face."""
    from skimage import data

    image_bgr = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    faces = HogDetector()(image_bgr)
    faces, chips = Aligner.create()(image_bgr, faces)
    assert len(faces) == 1
    return image_bgr, faces, chips


@pytest.fixture(scope="module")
def chips(astronaut_face) -> np.ndarray:
    """Four different real chips: the face, its mirror image, a darker copy, and a non-face crop."""
    from skimage import data

    face = astronaut_face[2][0]
    coffee = cv2.resize(data.coffee()[:300, :300], (150, 150), interpolation=cv2.INTER_AREA)
    darker = (face.astype(np.float32) * 0.6).astype(np.uint8)
    return np.stack([face, face[:, ::-1], darker, coffee])


def _rewrite_description(src, dst, change) -> None:
    """Copy the ONNX file at ``src`` to ``dst`` with its JSON description passed through ``change``."""
    proto = onnx.load(str(src))
    prop = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    d = json.loads(prop.value)
    change(d)
    prop.value = json.dumps(d)
    onnx.save(proto, str(dst))


# -- loading --------------------------------------------------------------------------------


def test_load_reads_the_description_from_the_file(model, tiny_model_path):
    assert model.path == tiny_model_path
    assert [t.name for t in model.spec.tasks] == ["gender", "race", "age", "age_bins"]
    assert model.spec.task("gender").labels == ("male", "female")
    assert model.provider == "CPUExecutionProvider"
    assert model.notes == ()


def test_auto_backend_reports_provider_in_use_and_why_gpus_were_skipped(tiny_model_path):
    offered = available_providers()
    m = FaceAttrModel.load(tiny_model_path, backend="auto")
    assert m.provider == m.session.get_providers()[0]
    if GPU_PROVIDERS["tensorrt"] not in offered and GPU_PROVIDERS["cuda"] not in offered:
        assert m.provider == "CPUExecutionProvider"
        assert len(m.notes) == 1
        assert "TensorRT" in m.notes[0] and "TensorrtExecutionProvider" in m.notes[0]
        assert m.notes[0].endswith("using CPU")


@pytest.mark.parametrize("backend", ["tensorrt", "cuda"])
def test_named_gpu_backend_that_is_missing_raises_instead_of_falling_back(tiny_model_path, backend):
    if GPU_PROVIDERS[backend] in available_providers():
        pytest.skip(f"{GPU_PROVIDERS[backend]} is available on this machine")
    with pytest.raises(BackendUnavailableError) as e:
        FaceAttrModel.load(tiny_model_path, backend=backend)
    msg = str(e.value)
    assert GPU_PROVIDERS[backend] in msg and "--backend cpu" in msg
    assert "\n" not in msg


def test_unknown_backend_is_refused_naming_the_choices(tiny_model_path):
    with pytest.raises(BackendUnavailableError, match="unknown backend 'gpu'.*auto, tensorrt, cuda, cpu"):
        FaceAttrModel.load(tiny_model_path, backend="gpu")


def test_auto_plan_on_a_gpu_build_tries_tensorrt_fp16_with_disk_cache_then_cuda_then_cpu(tmp_path):
    offered = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    plan = _plan_providers("auto", offered, tmp_path / "trt")
    (trt, options), cuda, cpu = plan.providers
    assert (trt, cuda, cpu) == tuple(offered)
    assert options["trt_fp16_enable"] and options["trt_engine_cache_enable"]
    assert options["trt_engine_cache_path"] == str(tmp_path / "trt") and (tmp_path / "trt").is_dir()
    assert plan.wanted == "TensorrtExecutionProvider" and plan.notes == ()
    only_cuda = _plan_providers("auto", offered[1:], None)
    assert only_cuda.providers == tuple(offered[1:])
    assert only_cuda.notes == ("TensorRT not available (onnxruntime has no TensorrtExecutionProvider); "
                               "using CUDA",)


def test_model_without_description_is_refused_naming_file_and_key(model_without_description):
    with pytest.raises(ModelLoadError) as e:
        FaceAttrModel.load(model_without_description)
    assert isinstance(e.value, ModelDescriptionError)  # callers may catch either
    msg = str(e.value)
    assert str(model_without_description) in msg
    assert "no FaceAttr description" in msg and "'faceattr'" in msg


def test_description_with_a_missing_field_is_refused_naming_the_field(tiny_model_path, tmp_path):
    bad = tmp_path / "no-backbone.onnx"
    _rewrite_description(tiny_model_path, bad, lambda d: d.pop("backbone"))
    with pytest.raises(ModelLoadError, match=r"no-backbone\.onnx: the FaceAttr description lacks 'backbone'"):
        FaceAttrModel.load(bad)


def test_text_file_named_onnx_is_refused_as_not_onnx(tmp_path):
    fake = tmp_path / "notes.onnx"
    fake.write_text("this is a text file, not a network\n")
    with pytest.raises(ModelLoadError) as e:
        FaceAttrModel.load(fake)
    assert str(e.value).startswith(f"{fake}: not an ONNX model file (")
    assert "[ONNXRuntimeError]" not in str(e.value)


def test_empty_file_is_refused_as_not_onnx(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"empty\.onnx: not an ONNX model file"):
        FaceAttrModel.load(empty)


def test_missing_path_and_directory_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match=r"nowhere\.onnx: model file not found"):
        FaceAttrModel.load(tmp_path / "nowhere.onnx")
    with pytest.raises(ModelLoadError, match="it is a directory"):
        FaceAttrModel.load(tmp_path)


def test_task_without_matching_output_is_refused_naming_the_task(tiny_model_path, tmp_path):
    bad = tmp_path / "extra-task.onnx"
    _rewrite_description(tiny_model_path, bad, lambda d: d["tasks"].append(
        {"name": "smile", "kind": "binary", "labels": ["no", "yes"]}))
    with pytest.raises(ModelLoadError, match=r"task 'smile' has no output of that name"):
        FaceAttrModel.load(bad)


def test_output_with_incompatible_shape_is_refused(tiny_model_path, tmp_path):
    bad = tmp_path / "three-races.onnx"
    _rewrite_description(tiny_model_path, bad, lambda d: d["tasks"][1].update(labels=["a", "b", "c"]))
    with pytest.raises(ModelLoadError, match=r"output 'race' has shape \['N', 5\].*needs \[N, 3\]"):
        FaceAttrModel.load(bad)


def test_input_named_in_description_must_exist(tiny_model_path, tmp_path):
    bad = tmp_path / "other-input.onnx"
    _rewrite_description(tiny_model_path, bad, lambda d: d["input"].update(name="images"))
    with pytest.raises(ModelLoadError, match=r"names input 'images' but the graph's inputs are \['chips'\]"):
        FaceAttrModel.load(bad)


def test_malformed_description_field_is_refused_naming_file_and_field(tiny_model_path, tmp_path):
    bad = tmp_path / "range-5.onnx"
    _rewrite_description(tiny_model_path, bad, lambda d: d["tasks"][2].update(range=5))
    with pytest.raises(ModelLoadError) as e:
        FaceAttrModel.load(bad, backend="cpu")
    assert isinstance(e.value, ModelDescriptionError)
    assert str(e.value) == (f"{bad}: FaceAttr description field 'tasks[2].range' should be "
                            "a list of 2 numbers, low then high, got 5")


# -- graphs exported with a fixed batch size -----------------------------------------------


def _fix_batch(src, dst, batch: int):
    """Copy the ONNX model at ``src`` to ``dst`` with dim 0 of its input and outputs fixed to ``batch``."""
    proto = onnx.load(str(src))
    for arg in [*proto.graph.input, *proto.graph.output]:
        arg.type.tensor_type.shape.dim[0].dim_value = batch  # replaces the symbolic 'N'
    onnx.checker.check_model(proto)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_fixed_batch_graph_runs_any_number_of_faces_like_the_dynamic_one(make_tiny_model, tmp_path, chips,
                                                                         batch):
    dynamic_path = make_tiny_model(tmp_path / "dynamic.onnx", spread=True, landmarks=True)
    fixed_path = _fix_batch(dynamic_path, tmp_path / f"batch{batch}.onnx", batch)
    session = ort.InferenceSession(str(fixed_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == batch
    with pytest.raises(Exception, match="(?i)invalid dimensions"):  # the file really refuses 4 faces
        session.run(None, {"chips": chips})

    dynamic = FaceAttrModel.load(dynamic_path, backend="cpu")
    fixed = FaceAttrModel.load(fixed_path, backend="cpu")
    assert dynamic.batch is None and dynamic.notes == ()
    assert fixed.batch == batch
    for n in (1, 3, 4):  # fewer, more and a multiple of the batch, with padding where it does not divide
        want = dynamic.decode(dynamic.predict_raw(chips[:n]))
        raw = fixed.predict_raw(chips[:n])
        assert {k: v.shape for k, v in raw.items()} == {k: v.shape for k, v in dynamic.predict_raw(chips[:n]).items()}
        got = fixed.decode(raw)
        for name, pred in want.items():
            for field in ("value", "confidence", "probs", "points_xy"):
                a, b = getattr(got[name], field), getattr(pred, field)
                assert (a is None) == (b is None), f"{name}.{field}"
                if b is not None:
                    np.testing.assert_allclose(a, b, atol=1e-5, err_msg=f"{name}.{field}, {n} faces, batch {batch}")


def test_fixed_batch_of_one_is_noted_as_one_face_at_a_time(tiny_model_path, tmp_path):
    m = FaceAttrModel.load(_fix_batch(tiny_model_path, tmp_path / "b1.onnx", 1), backend="cpu")
    assert m.notes == ("b1.onnx: the graph takes a fixed batch of 1; faces run one at a time (slower)",)
    m4 = FaceAttrModel.load(_fix_batch(tiny_model_path, tmp_path / "b4.onnx", 4), backend="cpu")
    assert m4.notes == ("b4.onnx: the graph takes a fixed batch of 4; faces run in groups of 4, "
                        "the last one padded with blank chips (slower)",)


def test_fixed_batch_graph_labels_a_real_face_and_zero_faces(tiny_model_path, tmp_path, astronaut_face,
                                                            tiny_forward):
    _, faces, chips = astronaut_face
    m = FaceAttrModel.load(_fix_batch(tiny_model_path, tmp_path / "b2.onnx", 2), backend="cpu")
    out = m(faces, chips)  # one face in a batch of 2: padded, the blank chip's outputs dropped
    assert len(out.tasks["age"].value) == 1
    np.testing.assert_allclose(out.tasks["age"].value, tiny_forward(chips)["age"], atol=1e-3)
    assert len(m(Faces(), np.zeros((0, 150, 150, 3), np.uint8))) == 0


# -- running and decoding -------------------------------------------------------------------


def test_chips_are_fed_untouched_outputs_match_numpy_forward_of_the_graph(model, chips, tiny_forward):
    raw = model.predict_raw(chips)
    expected = tiny_forward(chips)
    for name in ("gender", "race", "age", "age_bins"):
        np.testing.assert_allclose(raw[name], expected[name], rtol=1e-4, atol=1e-4, err_msg=name)
    # different chips give different outputs (the fixture is a real function of its input)
    assert len(np.unique(np.round(raw["age"], 3))) == len(chips)


def test_decode_follows_raw_outputs_of_an_independent_session(model, tiny_model_path, chips):
    session = ort.InferenceSession(str(tiny_model_path), providers=["CPUExecutionProvider"])
    gender, race, age, bins = session.run(["gender", "race", "age", "age_bins"], {"chips": chips})
    pred = model.decode(model.predict_raw(chips))

    g = pred["gender"]  # binary: value = index of the likelier label, probs = (p0, p1)
    np.testing.assert_array_equal(g.value, (gender > 0.5).astype(np.float32))
    np.testing.assert_allclose(g.confidence, np.maximum(gender, 1 - gender), atol=1e-6)
    np.testing.assert_allclose(g.probs[:, 1], gender, atol=1e-6)
    np.testing.assert_allclose(g.probs.sum(axis=1), 1.0, atol=1e-6)

    r = pred["race"]  # multiclass: argmax, top probability
    np.testing.assert_array_equal(r.value, race.argmax(axis=1))
    np.testing.assert_allclose(r.confidence, race.max(axis=1), atol=1e-6)
    np.testing.assert_allclose(r.probs, race, atol=1e-6)

    a = pred["age"]  # regression without a spread output: value, no confidence
    np.testing.assert_allclose(a.value, age, atol=1e-5)
    assert np.isnan(a.confidence).all() and a.probs is None

    b = pred["age_bins"]  # expectation: mean sum(p_i * bin_i), spread = std, confidence 1 / (1 + std)
    bin_values = np.array(model.spec.task("age_bins").bins)
    mean = (bins * bin_values).sum(axis=1)
    std = np.sqrt((bins * (bin_values[None] - mean[:, None]) ** 2).sum(axis=1))
    np.testing.assert_allclose(b.value, mean, rtol=1e-5)
    np.testing.assert_allclose(b.spread, std, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b.confidence, 1 / (1 + std), rtol=1e-4)
    assert ((b.value > bin_values[0]) & (b.value < bin_values[-1])).all()


def test_regression_confidence_comes_from_a_spread_output(make_tiny_model, tmp_path, chips, tiny_forward):
    m = FaceAttrModel.load(make_tiny_model(tmp_path / "spread.onnx", spread=True), backend="cpu")
    pred = m.decode(m.predict_raw(chips))["age"]
    spread = tiny_forward(chips)["age_spread"]
    np.testing.assert_allclose(pred.confidence, 1 / (1 + spread), rtol=1e-4)
    assert ((pred.confidence > 0) & (pred.confidence < 1)).all()


def test_chip_to_frame_affine_reproduces_dlibs_chip(astronaut_face):
    image_bgr, faces, chips = astronaut_face
    affine = chip_to_frame_affines(faces.landmarks_xy, 150, 0.25)
    frame_to_chip = cv2.invertAffineTransform(affine[0])
    rewarped = cv2.warpAffine(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), frame_to_chip, (150, 150))
    assert np.abs(rewarped.astype(np.float32) - chips[0]).mean() < 2.0  # measured: 0.49
    shifted = affine[0].copy()
    shifted[:, 2] += 3  # a map off by 3 px is clearly worse, so the check above has teeth
    off = cv2.warpAffine(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), cv2.invertAffineTransform(shifted),
                         (150, 150))
    assert np.abs(off.astype(np.float32) - chips[0]).mean() > 10.0


def test_landmark_task_points_are_mapped_to_frame_pixels(make_tiny_model, tmp_path, astronaut_face,
                                                         tiny_forward):
    _, faces, chips = astronaut_face
    m = FaceAttrModel.load(make_tiny_model(tmp_path / "landmarks.onnx", landmarks=True), backend="cpu")
    out = m(faces, chips)
    points = out.tasks["eyes"].points_xy
    assert points.shape == (1, 5, 2)
    chip_xy = tiny_forward(chips)["eyes"][0] * 150
    a = chip_to_frame_affines(faces.landmarks_xy, 150, 0.25)[0]
    np.testing.assert_allclose(points[0], chip_xy @ a[:, :2].T + a[:, 2], atol=1e-2)
    x0, y0, x1, y1 = faces.xyxy[0]  # chip coordinates 0..1 land around the face box
    assert ((points[0, :, 0] > x0 - 60) & (points[0, :, 0] < x1 + 60)).all()
    assert ((points[0, :, 1] > y0 - 60) & (points[0, :, 1] < y1 + 60)).all()
    assert np.isnan(out.tasks["eyes"].confidence).all()
    no_map = m.decode(m.predict_raw(chips))["eyes"].points_xy  # without a map: chip pixels
    np.testing.assert_allclose(no_map[0], chip_xy, atol=1e-3)


def test_zero_faces_give_empty_predictions_of_the_right_shapes(model):
    out = model(Faces(), np.zeros((0, 150, 150, 3), np.uint8))
    assert len(out) == 0
    assert out.tasks["gender"].probs.shape == (0, 2)
    assert out.tasks["race"].probs.shape == (0, 5)
    assert out.tasks["age_bins"].probs.shape == (0, 8)
    for pred in out.tasks.values():
        assert pred.value.shape == (0,) and pred.confidence.shape == (0,)


def test_real_face_end_to_end_detect_align_model(model, astronaut_face, tiny_forward):
    _, faces, chips = astronaut_face
    before = faces.xyxy.copy()
    out = model(faces, chips)
    assert out is not faces and not faces.tasks  # input untouched
    np.testing.assert_array_equal(faces.xyxy, before)
    np.testing.assert_array_equal(out.xyxy, faces.xyxy)
    expected = tiny_forward(chips)
    np.testing.assert_allclose(out.tasks["age"].value, expected["age"], atol=1e-3)
    labels = {t.name: format_value(t, out.tasks[t.name], 0) for t in model.spec.tasks}
    assert labels["gender"].split()[0] in ("male", "female")
    assert labels["race"].split()[0] in model.spec.task("race").labels
    assert labels["age"].endswith(" y") and labels["age_bins"].endswith(" y")


def test_wrong_chips_are_refused_with_the_expected_shape(model):
    with pytest.raises(ValueError, match=r"chips must be uint8 \[N, 150, 150, 3\], got float32"):
        model.predict_raw(np.zeros((1, 150, 150, 3), np.float32))
    with pytest.raises(ValueError, match=r"got uint8 \[1, 112, 112, 3\]"):
        model.predict_raw(np.zeros((1, 112, 112, 3), np.uint8))
    with pytest.raises(ValueError, match="2 faces but 1 chips"):
        model(Faces.from_boxes(np.zeros((2, 4)), np.zeros(2)), np.zeros((1, 150, 150, 3), np.uint8))


def test_format_value_gives_short_labels():
    gender = TaskSpec("gender", "binary", labels=("male", "female"))
    p = np.array([0.97, 0.2], np.float32)
    pred = TaskPrediction(value=(p > 0.5).astype(np.float32), confidence=np.maximum(p, 1 - p),
                          probs=np.stack([1 - p, p], 1))
    assert format_value(gender, pred, 0) == "female 97%"
    assert format_value(gender, pred, 1) == "male 80%"
    age = TaskSpec("age", "regression", unit="years")
    ages = TaskPrediction(value=np.array([34.4, np.nan], np.float32), confidence=np.full(2, np.nan))
    assert format_value(age, ages, 0) == "34 y"
    assert format_value(age, ages, 1) == "?"
    height = TaskSpec("height", "regression", unit="m")
    assert format_value(height, TaskPrediction(np.array([1.756]), np.array([np.nan])), 0) == "1.76 m"


def test_default_model_labels_the_astronaut_as_a_woman(default_model_path, astronaut_face):
    m = FaceAttrModel.load(default_model_path, backend="cpu")
    _, faces, chips = astronaut_face
    out = m(faces, chips)
    assert set(out.tasks) == {t.name for t in m.spec.tasks}
    if "gender" in out.tasks:  # Eileen Collins
        assert format_value(m.spec.task("gender"), out.tasks["gender"], 0).startswith("female")
