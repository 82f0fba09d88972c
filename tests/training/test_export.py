"""Checkpoint -> ONNX with its description; parity with torch; the engine loads and decodes it."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from engine.model import FaceAttrModel
from engine.modelspec import METADATA_KEY, ModelSpec
from tests.training.tiny_utk import make_tiny_checkpoint, make_tiny_utk
from training import export as export_mod
from training.chips import ChipCache, build_cache
from training.export import ExportWrapper, load_checkpoint, main, net_from_checkpoint


@pytest.fixture(scope="module")
def chips_dir(tmp_path_factory):
    tiny = make_tiny_utk(tmp_path_factory.mktemp("utk"))
    folder = tmp_path_factory.mktemp("cache")
    build_cache(tiny.images, folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, chips_dir):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt",
                                chips=np.array(ChipCache.open(chips_dir).chips))


@pytest.fixture(scope="module")
def exported(ckpt, chips_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    rc = main([str(ckpt), "-o", str(out), "--chips", str(chips_dir)])
    assert rc == 0
    return out


def test_export_prints_parity_on_real_chips_within_1e4(ckpt, chips_dir, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main([str(ckpt), "-o", str(out), "--chips", str(chips_dir), "--name", "tiny-named"]) == 0
    text = capsys.readouterr().out
    assert "parity torch vs onnxruntime on 13 real chips" in text
    diffs = [float(part.split()[1]) for part in text.split("on 13 real chips from")[1].split(":", 1)[1]
             .split("(max abs diff")[0].split(",")]
    assert len(diffs) == 3 and max(diffs) <= 1e-4
    assert "engine loads it" in text and "model 'tiny-named'" in text


def test_exported_file_carries_the_description(exported):
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    spec = ModelSpec.from_json(meta[METADATA_KEY])
    assert spec.name == "utkface-tiny-test-mtl" and spec.backbone == "tiny-test"
    assert [(t.name, t.kind) for t in spec.tasks] == [("gender", "binary"), ("race", "multiclass"), ("age", "regression")]
    assert spec.task("age").range == (21.0, 60.0) and spec.task("gender").labels == ("male", "female")
    assert spec.input.normalisation.mean == (122.782, 117.001, 104.298)
    assert spec.input.normalisation.scale == 1 / 256 and spec.input.normalisation.inside_graph
    assert (spec.input.size, spec.alignment.landmarks, spec.alignment.padding) == (150, "dlib-5", 0.25)
    t = spec.training
    assert (t["data"], t["protocol"], t["config"]) == ("UTKFace", "coral", "tiny")
    assert t["commit"] == "0123456789abcdef0123456789abcdef01234567" and t["date"].startswith("2026-11-23")
    assert len(t["export_commit"]) == 40 or t["export_commit"] == "unknown"


def test_engine_runs_the_export_like_torch_at_any_batch_size(exported, ckpt, chips_dir):
    net = net_from_checkpoint(load_checkpoint(ckpt))
    model = FaceAttrModel.load(exported, backend="cpu")
    chips = np.array(ChipCache.open(chips_dir).chips)
    with torch.no_grad():
        logits = net(torch.from_numpy(chips))
    for n in (1, 5, len(chips)):
        raw = model.predict_raw(chips[:n])
        # the contract's outputs recomputed from the net's logits
        np.testing.assert_allclose(raw["gender"], torch.sigmoid(logits["gender"][:n]).numpy(), atol=1e-4)
        np.testing.assert_allclose(raw["race"], torch.softmax(logits["race"][:n], 1).numpy(), atol=1e-4)
        np.testing.assert_allclose(raw["age"], 21 + 39 * logits["age"][:n].numpy(), atol=1e-4)
    decoded = model.decode(model.predict_raw(chips))
    np.testing.assert_array_equal(decoded["gender"].value, (raw["gender"] > 0.5).astype(np.float32))
    np.testing.assert_array_equal(decoded["race"].value, raw["race"].argmax(1))
    np.testing.assert_allclose(decoded["age"].value, raw["age"])
    assert model.provider == "CPUExecutionProvider"


def test_expectation_age_exports_a_distribution_over_bins(tmp_path, chips_dir):
    ckpt = make_tiny_checkpoint(tmp_path / "exp.pt", age_kind="expectation", chips=np.array(ChipCache.open(chips_dir).chips))
    out = tmp_path / "exp.onnx"
    assert main([str(ckpt), "-o", str(out), "--chips", str(chips_dir)]) == 0
    model = FaceAttrModel.load(out, backend="cpu")
    assert model.spec.task("age").bins == tuple(float(a) for a in range(21, 61))
    chips = np.array(ChipCache.open(chips_dir).chips[:4])
    raw = model.predict_raw(chips)
    assert raw["age"].shape == (4, 40)
    np.testing.assert_allclose(raw["age"].sum(1), 1.0, atol=1e-5)
    wrapper = ExportWrapper(net_from_checkpoint(load_checkpoint(ckpt)))
    with torch.no_grad():
        want = wrapper(torch.from_numpy(chips))[2].numpy()
    np.testing.assert_allclose(raw["age"], want, atol=1e-4)
    np.testing.assert_allclose(model.decode(raw)["age"].value, want @ np.arange(21, 61), rtol=1e-5)


def test_evaluate_metrics_go_into_the_description(ckpt, chips_dir, tmp_path):
    metrics = {"protocol": "coral", "source": "chip cache x", "splits": {
        "test": {"gender_acc": 0.9, "race_acc": 0.8, "age_mae": 5.5, "age_cs5": 0.6, "evaluated": 10,
                 "tasks": {}, "groups": []},
        "test_dedup": {"gender_acc": 0.88, "race_acc": 0.79, "age_mae": 5.7, "age_cs5": 0.58, "evaluated": 9}}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "m.onnx"
    assert main([str(ckpt), "-o", str(out), "--chips", str(chips_dir), "--metrics", str(tmp_path / "metrics.json")]) == 0
    m = FaceAttrModel.load(out).spec.metrics
    assert (m["gender_acc"], m["race_acc"], m["age_mae"], m["split"]) == (0.9, 0.8, 5.5, "coral-test")
    assert m["test_dedup"]["age_mae"] == 5.7 and m["evaluated"] == 10


def test_not_a_checkpoint_gives_one_clear_sentence(tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main([str(tmp_path / "junk.pt"), "-o", str(tmp_path / "x.onnx")]) == 1
    assert "junk.pt: not a readable torch checkpoint" in capsys.readouterr().err
    torch.save({"format": "something-else/2"}, tmp_path / "other.pt")
    assert main([str(tmp_path / "other.pt"), "-o", str(tmp_path / "x.onnx")]) == 1
    assert "not a FaceAttr checkpoint (format 'something-else/2'" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.pt"), "-o", str(tmp_path / "x.onnx")]) == 1
    assert "missing.pt: checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_failed_parity_keeps_the_file_aside_and_exits_non_zero(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export_mod, "PARITY_TOL", -1.0)  # no difference can pass: exercises the refusal
    out = tmp_path / "m.onnx"
    assert main([str(ckpt), "-o", str(out), "--chips", str(tmp_path / "no-cache")]) == 1
    err = capsys.readouterr().err
    assert "differs from torch by more than -1.0" in err and "m.rejected.onnx" in err
    assert not out.exists() and (tmp_path / "m.rejected.onnx").is_file()


# -- temperature scaling (--calibration, training/calibrate.py) ---------------------------------
def write_calibration(path, temperatures, flip_tta=False, **extra):
    tasks = {name: {"kind": "binary" if name == "gender" else "multiclass", "temperature": t, "ece_before": 0.08,
                    "ece_after": 0.02, "nll_before": 0.4, "nll_after": 0.35, "n": 100}
             for name, t in temperatures.items()}
    path.write_text(json.dumps({"method": "temperature scaling", "split": "valid", "flip_tta": flip_tta,
                                "ece_bins": 15, "tasks": tasks, **extra}))
    return path


@pytest.mark.parametrize("flip_tta", [False, True])
def test_calibrated_export_divides_the_logits_by_each_tasks_temperature(ckpt, chips_dir, tmp_path, capsys, flip_tta):
    cal = write_calibration(tmp_path / "calibration.json", {"gender": 2.5, "race": 0.7}, flip_tta,
                            checkpoint={"epoch": 3, "date": "2026-11-23T12:00:00+00:00"})
    out = tmp_path / "cal.onnx"
    args = [str(ckpt), "-o", str(out), "--chips", str(chips_dir), "--calibration", str(cal)]
    assert main(args + (["--flip-tta"] if flip_tta else [])) == 0
    text = capsys.readouterr().out
    assert "temperature scaling (validation ECE before -> after): gender T=2.500 (8.00 % -> 2.00 %)" in text
    assert "note:" not in text

    net = net_from_checkpoint(load_checkpoint(ckpt))
    chips = np.array(ChipCache.open(chips_dir).chips)
    with torch.no_grad():
        views = [net(torch.from_numpy(chips))] + ([net(torch.from_numpy(chips).flip(2))] if flip_tta else [])
    want_gender = np.mean([torch.sigmoid(v["gender"] / 2.5).numpy() for v in views], axis=0)
    want_race = np.mean([torch.softmax(v["race"] / 0.7, 1).numpy() for v in views], axis=0)
    want_age = np.mean([21 + 39 * v["age"].numpy() for v in views], axis=0)
    model = FaceAttrModel.load(out, backend="cpu")  # ONNX Runtime
    raw = model.predict_raw(chips)
    np.testing.assert_allclose(raw["gender"], want_gender, atol=1e-5)
    np.testing.assert_allclose(raw["race"], want_race, atol=1e-5)
    np.testing.assert_allclose(raw["age"], want_age, atol=1e-4)  # not a label task: as before
    uncalibrated = torch.sigmoid(views[0]["gender"]).numpy()
    assert np.abs(raw["gender"] - uncalibrated).max() > 0.01  # the scaling is really in the graph

    block = model.spec.training["temperature_scaling"]
    assert (block["method"], block["split"], block["ece_bins"]) == ("temperature scaling", "valid", 15)
    assert block["tasks"]["gender"] == {"temperature": 2.5, "ece_before": 0.08, "ece_after": 0.02,
                                        "nll_before": 0.4, "nll_after": 0.35, "n": 100}
    assert block["tasks"]["race"]["temperature"] == 0.7 and block.get("flip_tta", False) == flip_tta
    assert "calibration" not in model.spec.training  # training.quantize's key for its INT8 ranges


def test_calibration_fitted_for_another_graph_or_task_is_caught(ckpt, chips_dir, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    base = [str(ckpt), "-o", str(out), "--chips", str(chips_dir), "--calibration"]
    assert main(base + [str(write_calibration(tmp_path / "a.json", {"smile": 1.2}))]) == 1
    assert "temperature for task 'smile', which the network does not have" in capsys.readouterr().err
    assert main(base + [str(write_calibration(tmp_path / "b.json", {"gender": 0.0}))]) == 1
    assert "task 'gender': temperature should be a number above 0, got 0.0" in capsys.readouterr().err
    age = write_calibration(tmp_path / "f.json", {"age": 1.5})
    assert main(base + [str(age)]) == 1
    assert "task 'age' is regression: temperatures are for binary and multiclass tasks" in capsys.readouterr().err
    other = write_calibration(tmp_path / "c.json", {"gender": 1.2}, checkpoint={"epoch": 7, "date": None})
    assert main(base + [str(other)]) == 1
    assert "made for another checkpoint (epoch 7, this one's is 3)" in capsys.readouterr().err
    (tmp_path / "d.json").write_text("{}")
    assert main(base + [str(tmp_path / "d.json")]) == 1
    assert "d.json: not a training.calibrate file" in capsys.readouterr().err
    assert not out.exists()
    flip = write_calibration(tmp_path / "e.json", {"gender": 1.2}, flip_tta=True)
    assert main(base + [str(flip)]) == 0
    assert "note: the temperatures were fitted with flip TTA and this graph runs without it" in capsys.readouterr().out


def test_flip_tta_reads_a_mirrored_views_pose_on_the_other_side():
    from engine.modelspec import TaskSpec
    from tests.training.training_fixtures import TinyBackbone
    from training.model import MultiTaskNet

    torch.manual_seed(0)
    pose = TaskSpec(name="pose", kind="multiclass", labels=("left profile", "left", "frontal", "right", "right profile"))
    net = MultiTaskNet(TinyBackbone(), (pose,), shared_dims=(8,), head_dim=6, dropout=0.0).eval()
    chips = torch.randint(0, 255, (3, 150, 150, 3), dtype=torch.uint8)
    with torch.no_grad():
        p = torch.softmax(net(chips)["pose"], dim=1)
        p_mirror = torch.softmax(net(chips.flip(2))["pose"], dim=1)
        (plain,) = ExportWrapper(net, flip_tta=True)(chips)
        (mirrored,) = ExportWrapper(net, flip_tta=True, mirror={"pose": (4, 3, 2, 1, 0)})(chips)
    torch.testing.assert_close(plain, (p + p_mirror) / 2)
    # the mirror image's "left" is the face's "right": its columns are read reversed
    torch.testing.assert_close(mirrored, (p + p_mirror.flip(1)) / 2)
