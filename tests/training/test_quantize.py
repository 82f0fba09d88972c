"""training.quantize: a real ONNX Runtime static quantization of the tiny fixture model, calibrated
with chips of the astronaut made by the engine's own detector and aligner."""
from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest

from engine.align import Aligner
from engine.detect import HogDetector
from engine.model import FaceAttrModel, int8_sibling
from engine.modelspec import METADATA_KEY
from training.quantize import QuantizeError, calibration_chips, file_sha256, main


@pytest.fixture(scope="module")
def astronaut_chips() -> np.ndarray:
    """Engine chips of the astronaut at three sizes, and their mirrors (6 chips)."""
    from skimage import data

    image = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    detector = HogDetector(upsample=0, min_face=HogDetector.native_min_face_px)
    aligner = Aligner.create()
    chips = []
    for size in (512, 400, 320):
        scaled = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        faces = detector(scaled)
        assert len(faces), f"no face found in the astronaut at {size} px"
        _, chip = aligner(scaled, faces.largest())
        chips += [chip[0], chip[0][:, ::-1]]
    return np.ascontiguousarray(np.stack(chips))


def _description(path) -> dict:
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return json.loads(meta[METADATA_KEY])


def test_cli_quantizes_and_keeps_the_description(tmp_path, make_tiny_model, astronaut_chips, capsys):
    model = make_tiny_model(tmp_path / "tiny.onnx")
    np.save(tmp_path / "chips.npy", astronaut_chips)
    assert main([str(model), "--calib", str(tmp_path / "chips.npy"), "--split", "none"]) == 0
    out = int8_sibling(model)
    assert out == tmp_path / "tiny.int8.onnx" and out.is_file()
    assert "per-channel int8 weights" in capsys.readouterr().out

    before, after = _description(model), _description(out)
    added = {k: after["training"].pop(k) for k in ("precision", "calibration", "quantized_from", "source_sha256")}
    assert after == before  # everything else unchanged
    assert added["precision"] == "int8" and added["quantized_from"] == "tiny.onnx"
    assert added["source_sha256"] == file_sha256(model)
    assert "6 chips from chips.npy" in added["calibration"]
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops

    int8 = FaceAttrModel.load(out, backend="cpu")
    fp32 = FaceAttrModel.load(model, backend="cpu", precision="fp32")
    assert int8.precision == "int8" and fp32.precision == "fp32"
    assert int8.spec.tasks == fp32.spec.tasks
    a, b = int8.decode(int8.predict_raw(astronaut_chips)), fp32.decode(fp32.predict_raw(astronaut_chips))
    # The fixture's random weights are not a trained network; the bound only says the int8 graph
    # computes the same function (a broken scale would be off by far more).
    assert np.abs(a["race"].probs - b["race"].probs).max() < 0.1
    assert np.abs(a["age"].value - b["age"].value).max() < 2.0


def test_calibration_from_an_image_folder_uses_only_the_split(tmp_path, astronaut_bgr):
    for name in ("train_a.png", "train_b.png", "test_c.png"):
        cv2.imwrite(str(tmp_path / name), astronaut_bgr)
    (tmp_path / "noface_train.png").write_bytes(cv2.imencode(".png", np.zeros((200, 200, 3), np.uint8))[1].tobytes())
    split = tmp_path / "split.csv"
    split.write_text(",file,age\n0,train_a.png,1\n1,train_b.png,2\n2,noface_train.png,3\n")
    chips, note = calibration_chips(tmp_path, split, count=10, seed=0)
    assert chips.shape == (2, 150, 150, 3) and chips.dtype == np.uint8
    assert "2 images" in note and "1 without a face skipped" in note and "split split.csv" in note


def test_calibration_from_a_chip_cache_uses_only_the_split(tmp_path, astronaut_chips):
    np.save(tmp_path / "chips.npy", astronaut_chips[:3])
    (tmp_path / "index.csv").write_text("file,row,status\na.jpg,0,ok\nb.jpg,1,ok\nc.jpg,2,ok\nd.jpg,-1,no_face\n")
    split = tmp_path / "split.csv"
    split.write_text(",file,age\n0,a.jpg,1\n1,c.jpg,2\n2,d.jpg,3\n")
    chips, note = calibration_chips(tmp_path, split, count=10, seed=0)
    assert np.array_equal(chips, astronaut_chips[[0, 2]])
    assert note.startswith("2 chips from the cache")


def test_errors_name_the_file(tmp_path, capsys):
    with pytest.raises(QuantizeError, match="nowhere.csv: split list not found"):
        calibration_chips(tmp_path, tmp_path / "nowhere.csv", 5, 0)
    assert main([str(tmp_path / "missing.onnx"), "--calib", str(tmp_path)]) == 2
    assert "missing.onnx: model file not found" in capsys.readouterr().err
