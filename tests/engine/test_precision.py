"""--precision / precision=: which file runs (auto, int8, fp32, stale or missing siblings), and the
SHIPPED int8 model against the float one on real faces.

The sibling used for file choice is a real INT8 quantization of the tiny fixture (training.quantize,
calibrated on chips of the astronaut), made once per module.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.info import info_parser
from engine.align import Aligner
from engine.detect import HogDetector
from engine.model import FaceAttrModel, ModelLoadError, int8_sibling
from engine.pipeline import Pipeline, PipelineConfig

# Tolerance of the shipped int8 network against the float one, per face.
AGE_TOLERANCE_Y = 2.0
LABEL_CONFIDENCE = 0.6  # labels must agree where the float network is at least this sure


@pytest.fixture(scope="module")
def astronaut_chips() -> np.ndarray:
    from skimage import data

    image = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    faces = HogDetector(upsample=0, min_face=HogDetector.native_min_face_px)(image)
    _, chips = Aligner.create()(image, faces.largest())
    return np.ascontiguousarray(np.concatenate([chips, chips[:, :, ::-1]]))


@pytest.fixture(scope="module")
def models(tmp_path_factory, make_tiny_model, astronaut_chips) -> tuple[Path, Path]:
    """A folder holding the tiny float model and its real int8 sibling."""
    from training.quantize import quantize

    folder = tmp_path_factory.mktemp("precision")
    fp32 = make_tiny_model(folder / "tiny.onnx")
    quantize(fp32, int8_sibling(fp32), astronaut_chips, "astronaut chips (tests)")
    return fp32, int8_sibling(fp32)


def test_auto_takes_the_int8_sibling_on_the_cpu(models):
    fp32, int8 = models
    m = FaceAttrModel.load(fp32, backend="cpu")
    assert (m.path, m.precision) == (int8, "int8")
    assert any("precision int8: running tiny.int8.onnx" in n for n in m.notes)
    auto = FaceAttrModel.load(fp32)  # backend auto on a CPU-only onnxruntime is the CPU too
    assert auto.provider != "CPUExecutionProvider" or auto.precision == "int8"


def test_auto_without_a_sibling_runs_the_file(tiny_model_path):
    assert not int8_sibling(tiny_model_path).exists()
    m = FaceAttrModel.load(tiny_model_path, backend="cpu")
    assert (m.path, m.precision) == (tiny_model_path, "fp32")
    assert not any("precision" in n for n in m.notes)


def test_fp32_and_int8_are_obeyed(models):
    fp32, int8 = models
    assert FaceAttrModel.load(fp32, backend="cpu", precision="fp32").path == fp32
    m = FaceAttrModel.load(fp32, backend="cpu", precision="int8")
    assert (m.path, m.precision) == (int8, "int8")
    direct = FaceAttrModel.load(int8, backend="cpu")  # an int8 file named directly runs itself
    assert (direct.path, direct.precision) == (int8, "int8")


def test_int8_missing_names_the_file(tiny_model_path):
    want = int8_sibling(tiny_model_path)
    with pytest.raises(ModelLoadError, match=f"{want}: INT8 model file not found"):
        FaceAttrModel.load(tiny_model_path, backend="cpu", precision="int8")
    with pytest.raises(ModelLoadError, match="unknown precision 'int4'"):
        FaceAttrModel.load(tiny_model_path, backend="cpu", precision="int4")


def test_a_stale_sibling_is_never_used(models, tmp_path, make_tiny_model):
    """A new float model exported beside an old int8 file: auto runs the float, int8 refuses."""
    _, int8 = models
    fp32 = make_tiny_model(tmp_path / "tiny.onnx", seed=1)  # another network under the same name
    shutil.copy(int8, int8_sibling(fp32))
    m = FaceAttrModel.load(fp32, backend="cpu")
    assert (m.path, m.precision) == (fp32, "fp32")
    assert any("tiny.int8.onnx not used: it was quantized from another version of tiny.onnx" in n
               for n in m.notes)
    with pytest.raises(ModelLoadError, match="tiny.int8.onnx: it was quantized from another version"):
        FaceAttrModel.load(fp32, backend="cpu", precision="int8")


def test_pipeline_config_and_cli_pass_precision(models):
    fp32, int8 = models
    assert Pipeline.create(PipelineConfig(fp32, backend="cpu")).model.path == int8
    assert Pipeline.create(PipelineConfig(fp32, backend="cpu", precision="fp32")).model.path == fp32
    assert info_parser().parse_args([]).precision == "auto"
    assert info_parser().parse_args(["--precision", "int8"]).precision == "int8"
    with pytest.raises(SystemExit):
        info_parser().parse_args(["--precision", "fp16"])


# -- the shipped int8 model ------------------------------------------------------------------

def _real_faces(shared_dir) -> tuple[np.ndarray, str]:
    """Chips of the public-domain portraits (every face HOG finds), else of the astronaut."""
    folder = shared_dir / "data" / "faces-pd" if shared_dir else None
    detector = HogDetector(upsample=0, min_face=HogDetector.native_min_face_px)
    aligner = Aligner.create()
    chips = []
    if folder is not None and folder.is_dir():
        for path in sorted(folder.glob("*.jpg")):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                continue
            scale = 640 / max(image.shape[:2])
            if scale < 1:
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            faces = detector(image)
            if len(faces):
                chips.append(aligner(image, faces)[1])
        if chips:
            return np.concatenate(chips), f"faces-pd ({len(chips)} images)"
    from skimage import data

    image = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    return aligner(image, detector(image))[1], "the astronaut"


def test_shipped_int8_decodes_like_the_float_model(default_model_path, shared_dir):
    int8_path = int8_sibling(default_model_path)
    if not int8_path.is_file():
        pytest.skip(f"{int8_path} is not there (make it with python -m training.quantize)")
    fp32 = FaceAttrModel.load(default_model_path, backend="cpu", precision="fp32")
    int8 = FaceAttrModel.load(default_model_path, backend="cpu", precision="int8")
    assert int8.path == int8_path and int8.spec.tasks == fp32.spec.tasks
    chips, source = _real_faces(shared_dir)
    a, b = fp32.decode(fp32.predict_raw(chips)), int8.decode(int8.predict_raw(chips))
    for task in fp32.spec.tasks:
        if task.kind in ("binary", "multiclass"):
            sure = a[task.name].confidence >= LABEL_CONFIDENCE
            assert sure.any(), f"no face of {source} with a sure {task.name}"
            assert np.array_equal(a[task.name].value[sure], b[task.name].value[sure]), \
                f"{task.name} labels differ on {source}"
        elif task.kind in ("regression", "expectation"):
            diff = np.abs(a[task.name].value - b[task.name].value)
            assert diff.max() <= AGE_TOLERANCE_Y, f"{task.name} differs by {diff.max():.2f} on {source}"
