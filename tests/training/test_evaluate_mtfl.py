"""training.evaluate on MTFL (files in MTFL's own format) through the engine, checked by hand.

A tiny exported model with the next default model's tasks (gender, race, age as a distribution
over one-year bins 0-116, smile, glasses, pose) is scored on crops of scikit-image's
public-domain astronaut portrait, written as AFLW test images with MTFL annotation lines: a
face found, a blank image (no face found), a face whose given landmarks lie elsewhere (the
labelled face not found) and more faces. The real MTFL test (cache/mtfl_src/MTFL) is
evaluated at the end if it is on this machine (a few of its images only).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from engine.modelspec import TaskSpec
from training.utkface import utk_tasks
from training.evaluate import EvaluateError, check_labels, chips_from_cache, evaluate, main
from training.export import export
from training.mtfl import MTFL_TASKS, write_valid_split

REPO = Path(__file__).resolve().parents[2]
REAL_MTFL = REPO / "cache" / "mtfl_src" / "MTFL"
# The astronaut's 5 points in the 250x250 crop astronaut()[0:250, 95:345] (as tests/training/test_mtfl.py).
LANDMARKS_250 = np.array([[108, 108], [150, 104], [130, 133], [112, 158], [148, 155]], np.float32)
ALLAGES_TASKS = (*utk_tasks("full")[:2],
                 TaskSpec(name="age", kind="expectation", unit="years", bins=tuple(float(a) for a in range(117))),
                 *MTFL_TASKS[1:])


def row_text(path: str, lm: np.ndarray, gender: int, smile: int, glasses: int, pose: int) -> str:
    coords = " ".join(f"{v:.6f}" for v in [*lm[:, 0], *lm[:, 1]])
    return f"{path} {coords} {gender} {smile} {glasses} {pose}"


def make_mtfl(root: Path) -> tuple[Path, Path, dict]:
    """An MTFL folder: 3 LFW training rows, 6 AFLW test rows (150-px crops, as AFLW's)."""
    from skimage import data

    (root / "lfw_5590").mkdir(parents=True)
    (root / "AFLW").mkdir()
    face = np.ascontiguousarray(data.astronaut()[0:250, 95:345, ::-1])
    train = []
    for i in range(3):
        cv2.imwrite(str(root / "lfw_5590" / f"Astro_{i:04d}.jpg"), cv2.convertScaleAbs(face, alpha=0.9 + 0.1 * i))
        train.append(row_text(f"lfw_5590\\Astro_{i:04d}.jpg", LANDMARKS_250, 2, 1, 2, 3))
    small = cv2.resize(face, (150, 150), interpolation=cv2.INTER_AREA)
    lm = LANDMARKS_250 * 150 / 250
    mirrored_lm = np.column_stack([149 - lm[:, 0], lm[:, 1]])[[1, 0, 2, 4, 3]]
    corner = np.array([[3, 3], [9, 3], [6, 6], [4, 9], [8, 9]], np.float32)  # no detection holds this centre
    tests = {  # file: (image, landmarks, gender, smile, glasses, pose) in MTFL's codes
        "AFLW/0001-image1.jpg": (small, lm, 2, 1, 2, 3),
        "AFLW/0002-image2.jpg": (np.full((150, 150, 3), 127, np.uint8), lm, 1, 2, 1, 2),
        "AFLW/0003-image3.jpg": (small, corner, 1, 2, 2, 1),
        "AFLW/0004-image4.jpg": (np.ascontiguousarray(small[:, ::-1]), mirrored_lm, 2, 2, 2, 4),
        "AFLW/0005-image5.jpg": (cv2.convertScaleAbs(small, alpha=0.75), lm, 1, 1, 1, 5),
        "AFLW/0006-image6.jpg": (cv2.convertScaleAbs(small, alpha=1.2, beta=10), lm, 2, 2, 2, 3),
    }
    lines = []
    for file, (image, marks, *labels) in tests.items():
        cv2.imwrite(str(root / file), image)
        lines.append(row_text(file.replace("/", "\\"), marks, *labels))
    (root / "training.txt").write_bytes(("\r\n ".join(train) + "\r\n").encode())
    (root / "testing.txt").write_bytes(("\r\n ".join(lines) + "\r\n").encode())
    splits = root.parent / "splits"
    splits.mkdir()
    write_valid_split(root, splits)
    return root, splits, tests


def make_allages_onnx(folder: Path, chips: np.ndarray) -> Path:
    """A tiny net with the next default model's tasks, saved as training.fit does, exported by training.export."""
    import torch

    from tests.training import training_fixtures
    from tests.training.tiny_utk import _fit_to_chips
    from training.config import Config, DataConfig, ModelConfig
    from training.model import MultiTaskNet

    cfg = Config(name="tiny-allages", data=DataConfig(dataset="utkface", protocol="full"),
                 model=ModelConfig(backbone=training_fixtures.NAME, pretrained=False, shared_dims=(12,), head_dim=8,
                                   dropout=0.3, age_kind="expectation"))
    torch.manual_seed(3)
    net = MultiTaskNet(training_fixtures.TinyBackbone(), list(ALLAGES_TASKS), shared_dims=(12,), head_dim=8, dropout=0.3)
    with torch.no_grad():
        _fit_to_chips(net, torch.from_numpy(np.ascontiguousarray(chips)))
    ckpt = {"format": "faceattr-ckpt/1", "config": cfg.to_dict(), "tasks": [dataclasses.asdict(t) for t in ALLAGES_TASKS],
            "backbone": training_fixtures.NAME, "model_state": net.state_dict(), "epoch": 1, "best": {}, "history": [],
            "git_commit": "0123456789abcdef0123456789abcdef01234567", "date": "2026-12-01T12:00:00+00:00"}
    torch.save(ckpt, folder / "allages.pt")
    return export(folder / "allages.pt", folder / "allages.onnx", chips_dir=None).path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from training.evaluate import chips_from_images
    from training.mtfl import load_mtfl
    from training.evaluate import mtfl_landmarks

    root = tmp_path_factory.mktemp("mtfl-eval")
    mtfl, splits, tests = make_mtfl(root / "MTFL")
    found = chips_from_images(mtfl, load_mtfl(mtfl, splits).test, progress=False, landmarks=mtfl_landmarks(mtfl))
    onnx_path = make_allages_onnx(root, found.chips)
    out = root / "report"
    metrics = evaluate(onnx_path, mtfl, "mtfl", out, from_images=True, splits_dir=splits, progress=False,
                       save_chips=root / "engine-chips", command="python -m training.evaluate (test)")
    return {"root": root, "mtfl": mtfl, "splits": splits, "tests": tests, "onnx": onnx_path, "out": out,
            "metrics": metrics, "chips": root / "engine-chips"}


def test_faces_found_counts_the_labelled_face_only(setup):
    m = setup["metrics"]["splits"]["test"]
    assert setup["metrics"]["dataset"] == "mtfl" and list(setup["metrics"]["splits"]) == ["test"]
    assert m["listed"] == 6 and m["evaluated"] == 4
    assert m["skipped"] == {"no face found": 1, "labelled face not found": 1}
    assert m["faces_found"] == {"found": 4, "of": 6, "share": 4 / 6,
                                "not_found": {"no face found": 1, "labelled face not found": 1}}
    assert setup["metrics"]["source"].endswith("the detection holding the centre of MTFL's landmarks")
    # MTFL has no race or age: only the model's tasks the data labels are scored
    assert list(m["tasks"]) == ["gender", "smile", "glasses", "pose"]
    assert m["bands"] == [] and m["groups"] == []


def test_accuracies_match_onnxruntime_by_hand(setup):
    m = setup["metrics"]["splits"]["test"]
    index = (setup["chips"] / "index.csv").read_text().splitlines()[1:]
    files = [line.split(",")[0] for line in index if line.split(",")[2] == "ok"]
    chips = np.load(setup["chips"] / "chips.npy")
    session = ort.InferenceSession(str(setup["onnx"]), providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"chips": chips})))
    codes = {f: setup["tests"][f][2:] for f in files}  # MTFL codes: gender 1 m 2 f; smile, glasses 1 yes 2 no; pose 1..5
    truth = {"gender": np.array([codes[f][0] - 1 for f in files]), "smile": np.array([codes[f][1] == 1 for f in files]),
             "glasses": np.array([codes[f][2] == 1 for f in files]), "pose": np.array([codes[f][3] - 1 for f in files])}
    pred = {name: (out[name].reshape(-1) > 0.5) for name in ("gender", "smile", "glasses")}
    pred["pose"] = out["pose"].argmax(1)
    for name in truth:
        assert m[f"{name}_acc"] == pytest.approx((pred[name].astype(int) == truth[name].astype(int)).mean()), name
    pose = m["tasks"]["pose"]
    assert pose["labels"] == ["left profile", "left", "frontal", "right", "right profile"]
    assert pose["support"] == {"left profile": 0, "left": 0, "frontal": 2, "right": 1, "right profile": 1}
    confusion = np.zeros((5, 5), int)
    np.add.at(confusion, (truth["pose"], pred["pose"]), 1)
    assert pose["confusion"] == confusion.tolist()


def test_gender_smile_glasses_pose_are_scored_per_band_of_the_models_age_estimate(setup):
    """MTFL labels no age; the model's own age (the expectation over its bins, as the engine decodes
    it) splits the faces into bands, and each band's accuracies are recomputed here by hand."""
    m = setup["metrics"]["splits"]["test"]
    index = (setup["chips"] / "index.csv").read_text().splitlines()[1:]
    files = [line.split(",")[0] for line in index if line.split(",")[2] == "ok"]
    session = ort.InferenceSession(str(setup["onnx"]), providers=["CPUExecutionProvider"])
    chips = np.load(setup["chips"] / "chips.npy")
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"chips": chips})))
    age = np.rint(out["age"] @ np.arange(117.0))
    gender_truth = np.array([setup["tests"][f][2] - 1 for f in files])
    gender_pred = (out["gender"].reshape(-1) > 0.5).astype(int)
    rows = m["estimated_age_bands"]
    assert [r["band"] for r in rows] == ["0–12", "13–20", "21–40", "41–60", "61+"]
    assert sum(r["n"] for r in rows) == m["evaluated"] == len(files)
    for r in rows:
        inside = (age >= r["lo"]) & ((age <= r["hi"]) if r["hi"] is not None else True)
        assert r["n"] == inside.sum()
        assert r["gender_acc"] == (pytest.approx((gender_pred[inside] == gender_truth[inside]).mean())
                                   if inside.any() else None)
        assert {"smile_acc", "glasses_acc", "pose_acc"} <= r.keys()
    text = (setup["out"] / "report.md").read_text()
    assert "### By the model's age estimate" in text and "| model's age | n | gender acc | smile acc |" in text


def test_report_has_faces_found_and_the_pose_class_table(setup):
    text = (setup["out"] / "report.md").read_text()
    assert "Faces found: 4 of 6 (66.67 %)." in text
    assert "| true class | faces | accuracy |" in text and "| left profile | 0 | – |" in text
    assert "| frontal | 2 |" in text
    assert "`test_dedup`" not in text


def test_saved_chips_keep_the_boxes_and_score_alike(setup, tmp_path):
    """--save-chips keeps the detector's boxes (the peer benchmark feeds them to the peer); --chips on
    the folder scores the same faces to the same numbers without detecting again."""
    assert np.load(setup["chips"] / "boxes.npy").shape == (4, 4)
    again = evaluate(setup["onnx"], setup["mtfl"], "mtfl", tmp_path, chips_dir=setup["chips"],
                     splits_dir=setup["splits"], progress=False)
    a, b = again["splits"]["test"], setup["metrics"]["splits"]["test"]
    for key in ("gender_acc", "smile_acc", "glasses_acc", "pose_acc", "evaluated", "skipped"):
        assert a[key] == b[key], key


def test_a_training_cache_chip_placed_from_the_landmarks_is_not_a_face_found(setup, tmp_path):
    from training.samples import Sample

    folder = tmp_path / "cache"
    folder.mkdir()
    np.save(folder / "chips.npy", np.zeros((2, 150, 150, 3), np.uint8))
    (folder / "index.csv").write_text("file,row,status,found\nA/1.jpg,0,ok,detector\nA/2.jpg,1,ok,landmarks\n")
    got = chips_from_cache(folder, [Sample("A/1.jpg", {}), Sample("A/2.jpg", {})])
    assert [s.file for s in got.samples] == ["A/1.jpg"] and got.boxes_xyxy is None
    assert got.skipped == {"A/2.jpg": "labelled face not found (chip placed from the landmarks)"}


def test_cli_dataset_mtfl_and_its_errors(setup, tmp_path, capsys):
    args = [str(setup["onnx"]), "--data", str(setup["mtfl"]), "--splits-dir", str(setup["splits"]),
            "--chips", str(setup["chips"])]
    assert main([*args, "--dataset", "mtfl", "--split", "test", "-o", str(tmp_path / "r")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("test: gender_acc ") and "(4 of 6 evaluated; skipped: labelled face not found 1, no face found 1)" in text
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["protocol"] == "mtfl"
    assert main([*args, "--dataset", "mtfl", "--protocol", "coral", "-o", str(tmp_path / "x")]) == 2
    assert "--protocol coral is not a protocol of --dataset mtfl" in capsys.readouterr().err
    assert main([*args, "--dataset", "mtfl", "--split", "test_dedup", "-o", str(tmp_path / "x")]) == 2
    assert "MTFL has no 'test_dedup' split" in capsys.readouterr().err


def test_a_task_whose_labels_differ_from_the_datas_is_refused():
    flipped = TaskSpec(name="smile", kind="binary", labels=("smiling", "not smiling"))
    with pytest.raises(EvaluateError, match="task 'smile': the model's labels \\(smiling, not smiling\\) are not the data's"):
        check_labels([ALLAGES_TASKS[0], flipped], MTFL_TASKS)
    check_labels(ALLAGES_TASKS, MTFL_TASKS)  # the same meanings: no error


@pytest.mark.skipif(not (REAL_MTFL / "testing.txt").is_file(),
                    reason=f"the real MTFL is not on this machine ({REAL_MTFL}; fetch it as training/mtfl.py says)")
def test_the_real_mtfl_test_lists_its_aflw_faces(setup, tmp_path):
    """Only a handful of real test images (the whole test takes minutes): they load, and the
    labelled face is found in most."""
    from training.evaluate import chips_from_images, mtfl_landmarks
    from training.mtfl import load_mtfl

    test = load_mtfl(REAL_MTFL).test
    assert len(test) == 2995 and all(s.file.startswith("AFLW/") for s in test)
    sample = test[::600]
    got = chips_from_images(REAL_MTFL, sample, progress=False, landmarks=mtfl_landmarks(REAL_MTFL))
    assert len(got.samples) + len(got.skipped) == len(sample) and len(got.samples) >= len(sample) // 2
