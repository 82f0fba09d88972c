"""Shared fixtures: paths, real images, and a small REAL ONNX model built through the contract.

The tiny model is a test fixture, never shipped: its weights are random (fixed seed), but
it is a genuine ONNX graph run by ONNX Runtime, with the input, normalisation, outputs
and JSON description that ARCHITECTURE.md's "Model contract" asks of a trained model.
Its outputs are deterministic functions of the chip, so tests can recompute them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.modelspec import METADATA_KEY, ModelSpec, TaskSpec

REPO_ROOT = Path(__file__).resolve().parent.parent

# The tiny graph: chips -> Cast -> (x - mean) * scale -> NCHW -> 10x10 average pool
# (3x15x15) -> flatten -> Gemm(675->16) -> Tanh -> one Gemm head per task.
TINY_POOL = 10
TINY_HIDDEN = 16
TINY_AGE_BINS = (5.0, 15.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0)
TINY_RACE = ("white", "black", "asian", "indian", "other")
TINY_LANDMARKS = 5


def tiny_model_spec(spread: bool = False, landmarks: bool = False) -> ModelSpec:
    tasks = [
        TaskSpec("gender", "binary", labels=("male", "female")),
        TaskSpec("race", "multiclass", labels=TINY_RACE),
        TaskSpec("age", "regression", unit="years", range=(21.0, 60.0)),
        TaskSpec("age_bins", "expectation", unit="years", bins=TINY_AGE_BINS),
    ]
    if landmarks:
        tasks.append(TaskSpec("eyes", "landmarks", points=TINY_LANDMARKS))
    return ModelSpec(
        name="tiny-test-fixture" + ("-spread" if spread else "") + ("-landmarks" if landmarks else ""),
        tasks=tuple(tasks),
        backbone="fixture-avgpool-gemm (random weights, tests only)",
        training={"data": "none: random weights, built by tests/conftest.py"},
    )


def tiny_model_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """The fixture's weights by initializer name (fixed seed, so recomputable in numpy)."""
    rng = np.random.default_rng(seed)
    feat = 3 * (150 // TINY_POOL) ** 2

    def w(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return {
        "mean": np.array([122.782, 117.001, 104.298], np.float32),
        "scale": np.array(1 / 256, np.float32),
        "w1": w(feat, TINY_HIDDEN, scale=8.0 / np.sqrt(feat)), "b1": w(TINY_HIDDEN, scale=0.1),
        "w_gender": w(TINY_HIDDEN, 1, scale=1.5), "b_gender": w(1, scale=0.1),
        "w_race": w(TINY_HIDDEN, len(TINY_RACE), scale=1.5), "b_race": w(len(TINY_RACE), scale=0.1),
        "w_age": w(TINY_HIDDEN, 1, scale=0.5), "b_age": w(1, scale=0.1),
        "w_age_bins": w(TINY_HIDDEN, len(TINY_AGE_BINS), scale=1.5),
        "b_age_bins": w(len(TINY_AGE_BINS), scale=0.1),
        "w_age_spread": w(TINY_HIDDEN, 1, scale=0.5), "b_age_spread": w(1, scale=0.1),
        "w_eyes": w(TINY_HIDDEN, 2 * TINY_LANDMARKS, scale=0.5),
        "b_eyes": w(2 * TINY_LANDMARKS, scale=0.1),
    }


def tiny_model_forward(chips_rgb: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """The fixture graph recomputed in numpy (for tests that check what the engine feeds it)."""
    p = tiny_model_weights(seed)
    x = (chips_rgb.astype(np.float32) - p["mean"]) * p["scale"]
    n, s = len(x), 150 // TINY_POOL
    pooled = x.reshape(n, s, TINY_POOL, s, TINY_POOL, 3).mean(axis=(2, 4))  # [N, 15, 15, 3]
    h = np.tanh(pooled.transpose(0, 3, 1, 2).reshape(n, -1) @ p["w1"] + p["b1"])

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return {
        "gender": 1 / (1 + np.exp(-(h @ p["w_gender"] + p["b_gender"])[:, 0])),
        "race": softmax(h @ p["w_race"] + p["b_race"]),
        "age": (h @ p["w_age"] + p["b_age"])[:, 0] * 20 + 40,
        "age_bins": softmax(h @ p["w_age_bins"] + p["b_age_bins"]),
        "age_spread": np.log1p(np.exp((h @ p["w_age_spread"] + p["b_age_spread"])[:, 0])),
        "eyes": (1 / (1 + np.exp(-(h @ p["w_eyes"] + p["b_eyes"])))).reshape(n, TINY_LANDMARKS, 2),
    }


def build_tiny_model(path: Path, *, metadata: bool = True, spread: bool = False,
                     landmarks: bool = False, seed: int = 0) -> Path:
    """Write the fixture ONNX model to ``path`` and return it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    p = tiny_model_weights(seed)
    inits = [numpy_helper.from_array(v, k) for k, v in p.items()]
    inits += [
        numpy_helper.from_array(np.array([-1], np.int64), "flat_squeeze_axes"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(20.0, np.float32), "age_scale"),
        numpy_helper.from_array(np.array(40.0, np.float32), "age_offset"),
        numpy_helper.from_array(np.array([-1, TINY_LANDMARKS, 2], np.int64), "eyes_shape"),
    ]
    node = helper.make_node
    nodes = [
        node("Cast", ["chips"], ["x_f"], to=TensorProto.FLOAT),
        node("Sub", ["x_f", "mean"], ["x_c"]),
        node("Mul", ["x_c", "scale"], ["x_n"]),
        node("Transpose", ["x_n"], ["x_nchw"], perm=[0, 3, 1, 2]),
        node("AveragePool", ["x_nchw"], ["pooled"], kernel_shape=[TINY_POOL, TINY_POOL],
             strides=[TINY_POOL, TINY_POOL]),
        node("Flatten", ["pooled"], ["flat"], axis=1),
        node("Gemm", ["flat", "w1", "b1"], ["h_pre"]),
        node("Tanh", ["h_pre"], ["h"]),
        node("Gemm", ["h", "w_gender", "b_gender"], ["gender_logit"]),
        node("Sigmoid", ["gender_logit"], ["gender_p"]),
        node("Squeeze", ["gender_p", "axis1"], ["gender"]),
        node("Gemm", ["h", "w_race", "b_race"], ["race_logit"]),
        node("Softmax", ["race_logit"], ["race"], axis=1),
        node("Gemm", ["h", "w_age", "b_age"], ["age_z"]),
        node("Squeeze", ["age_z", "axis1"], ["age_z1"]),
        node("Mul", ["age_z1", "age_scale"], ["age_s"]),
        node("Add", ["age_s", "age_offset"], ["age"]),
        node("Gemm", ["h", "w_age_bins", "b_age_bins"], ["age_bins_logit"]),
        node("Softmax", ["age_bins_logit"], ["age_bins"], axis=1),
    ]
    outputs = [
        helper.make_tensor_value_info("gender", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("race", TensorProto.FLOAT, ["N", len(TINY_RACE)]),
        helper.make_tensor_value_info("age", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("age_bins", TensorProto.FLOAT, ["N", len(TINY_AGE_BINS)]),
    ]
    if spread:
        nodes += [node("Gemm", ["h", "w_age_spread", "b_age_spread"], ["age_spread_z"]),
                  node("Softplus", ["age_spread_z"], ["age_spread_1"]),
                  node("Squeeze", ["age_spread_1", "axis1"], ["age_spread"])]
        outputs.append(helper.make_tensor_value_info("age_spread", TensorProto.FLOAT, ["N"]))
    if landmarks:
        nodes += [node("Gemm", ["h", "w_eyes", "b_eyes"], ["eyes_z"]),
                  node("Sigmoid", ["eyes_z"], ["eyes_flat"]),
                  node("Reshape", ["eyes_flat", "eyes_shape"], ["eyes"])]
        outputs.append(helper.make_tensor_value_info("eyes", TensorProto.FLOAT, ["N", TINY_LANDMARKS, 2]))
    graph = helper.make_graph(
        nodes, "faceattr_tiny_fixture",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", 150, 150, 3])],
        outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="faceattr-tests")
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, {METADATA_KEY: tiny_model_spec(spread, landmarks).to_json()})
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir(repo_root) -> Path | None:
    """``../shared`` beside the checkout (data, notes) or None in a user's clone."""
    path = repo_root.parent / "shared"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def faces_pd_dir(shared_dir) -> Path:
    """Public-domain face photos in ../shared/data/faces-pd; skips when absent."""
    path = (shared_dir / "data" / "faces-pd") if shared_dir else None
    if path is None or not path.is_dir():
        pytest.skip("public-domain face photos not available (../shared/data/faces-pd is absent in this checkout)")
    return path


@pytest.fixture
def astronaut_bgr() -> np.ndarray:
    """scikit-image's public-domain astronaut portrait (Eileen Collins), 512x512, BGR (a fresh copy)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


@pytest.fixture(scope="session")
def make_tiny_model():
    """The builder itself: ``make_tiny_model(path, metadata=..., spread=..., landmarks=...)``."""
    return build_tiny_model


@pytest.fixture(scope="session")
def tiny_forward():
    """``tiny_forward(chips_rgb, seed=0)``: the fixture graph recomputed in numpy."""
    return tiny_model_forward


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A small real ONNX model with the FaceAttr description (gender, race, age, age_bins)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-faceattr.onnx")


@pytest.fixture
def model_without_description(tmp_path) -> Path:
    """The same graph as ``tiny_model_path`` but without the 'faceattr' metadata."""
    return build_tiny_model(tmp_path / "no-description.onnx", metadata=False)


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    """The shipped default model; skips while it has not landed yet."""
    from engine.assets import default_model_path as path_of_default

    path = path_of_default()
    if not path.is_file():
        pytest.skip(f"default model {path} does not exist yet (trained by the training issue)")
    return path
