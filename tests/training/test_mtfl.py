"""MTFL: the loader against files in its format, its chip cache, and partial-label training
(a sample trains only the tasks it is labelled for). Images are crops of scikit-image's
public-domain astronaut portrait; the MTFL lists are written here in MTFL's own format
(backslash paths, a leading space, CRLF line ends)."""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch

from engine.modelspec import TaskSpec
from training.config import LossConfig
from training.samples import DataError
from training.utkface import utk_tasks
from training.datasets import Part, union_tasks
from training.losses import create_losses
from training.model import MultiTaskNet
from training.mtfl import MTFL_TASKS, load_mtfl, parse_row, read_list, write_valid_split
from training.mtfl_chips import box_from_landmarks, build_mtfl_cache
from tests.training.training_fixtures import TinyBackbone

# The astronaut's 5 points in a 250x250 crop of astronaut()[0:250, 95:345] (eyes, nose, mouth
# corners; read off the photo, within a few pixels).
LANDMARKS_250 = np.array([[108, 108], [150, 104], [130, 133], [112, 158], [148, 155]], np.float32)


def row_text(path: str, lm: np.ndarray, gender: int, smile: int, glasses: int, pose: int) -> str:
    coords = " ".join(f"{v:.6f}" for v in [*lm[:, 0], *lm[:, 1]])
    return f"{path} {coords} {gender} {smile} {glasses} {pose}"


@pytest.fixture(scope="module")
def mtfl(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("MTFL")
    (root / "lfw_5590").mkdir()
    (root / "AFLW").mkdir()
    face = np.ascontiguousarray(data.astronaut()[0:250, 95:345, ::-1])
    train_lines = []
    for i in range(10):
        img = cv2.convertScaleAbs(face, alpha=0.8 + 0.04 * i)
        cv2.imwrite(str(root / "lfw_5590" / f"Astro_{i:04d}.jpg"), img)
        train_lines.append(row_text(f"lfw_5590\\Astro_{i:04d}.jpg", LANDMARKS_250, 1 + i % 2, 1 + (i // 2) % 2,
                                    1 + (i % 3 == 0), 1 + i % 5))
    train_lines.append(row_text("lfw_5590\\Missing_0001.jpg", LANDMARKS_250, 1, 1, 2, 3))  # no such image
    train_lines.append("lfw_5590\\Bad_0001.jpg 1 2 3")  # too few fields
    train_lines.append(row_text("lfw_5590\\Astro_0000.jpg", LANDMARKS_250, 3, 1, 2, 3))  # gender 3
    # test: the face scaled to 150 px (as AFLW's crops), and a blank image no detector finds a face in
    cv2.imwrite(str(root / "AFLW" / "0001-image1.jpg"), cv2.resize(face, (150, 150), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(root / "AFLW" / "0002-image2.jpg"), np.full((150, 150, 3), 127, np.uint8))
    lm150 = LANDMARKS_250 * 150 / 250
    test_lines = [row_text("AFLW/0001-image1.jpg", lm150, 2, 1, 2, 3), row_text("AFLW/0002-image2.jpg", lm150, 1, 2, 1, 2)]
    (root / "training.txt").write_bytes(("\r\n ".join(train_lines) + "\r\n").encode())
    (root / "testing.txt").write_bytes(("\r\n ".join(test_lines) + "\r\n").encode())
    splits = tmp_path_factory.mktemp("splits")
    write_valid_split(root, splits)
    return root, splits


def test_rows_parse_to_targets_in_the_tasks_conventions():
    row = parse_row(" lfw_5590\\A_0001.jpg 1 2 3 4 5 6 7 8 9 10 2 1 2 5\r")
    assert row.file == "lfw_5590/A_0001.jpg"
    assert row.landmarks_xy.tolist() == [[1, 6], [2, 7], [3, 8], [4, 9], [5, 10]]
    assert row.targets == {"gender": 1.0, "smile": 1.0, "glasses": 0.0, "pose": 4.0}
    assert MTFL_TASKS[0].labels[int(row.targets["gender"])] == "female"
    with pytest.raises(ValueError, match="pose 6 is not 1-5"):
        parse_row("a.jpg 1 2 3 4 5 6 7 8 9 10 1 1 1 6")


def test_the_loader_splits_train_valid_test_and_counts_what_it_skips(mtfl):
    root, splits = mtfl
    s = load_mtfl(root, splits)
    assert (len(s.train), len(s.valid), len(s.test)) == (9, 1, 2)
    assert not {x.file for x in s.train} & {x.file for x in s.valid}
    assert s.skipped == {"image missing": 1, "bad line: 4 fields, expected 15 (path, 10 coordinates, 4 labels)": 1,
                         "bad line: gender 3 is not 1-2": 1}
    with open(splits / "mtfl_valid10.csv", newline="") as f:
        assert [r["file"] for r in csv.DictReader(f)] == [s.valid[0].file]
    with pytest.raises(DataError, match="MTFL annotation file missing"):
        read_list(splits, "training.txt")


def test_chip_cache_finds_the_labelled_face_and_falls_back_to_the_landmarks(mtfl, tmp_path):
    root, _ = mtfl
    counts = build_mtfl_cache(root, tmp_path / "chips", progress=False)
    assert counts == {"ok": 12, "found by detector": 11, "found by landmarks": 1}
    with open(tmp_path / "chips" / "index.csv", newline="") as f:
        found = {r["file"]: r["found"] for r in csv.DictReader(f)}
    assert found["AFLW/0002-image2.jpg"] == "landmarks" and found["AFLW/0001-image1.jpg"] == "detector"
    chips = np.load(tmp_path / "chips" / "chips.npy")
    # The same face found both ways gives nearly the same chip: the fallback box is placed like the detector's.
    detected = chips[0].astype(np.float32)
    lm_box = box_from_landmarks(LANDMARKS_250, np.array([0.0, 0.0, 2.2]))
    assert lm_box[2] - lm_box[0] > 50 and detected.std() > 20


def test_joined_datasets_need_a_shared_task_to_mean_the_same(mtfl):
    root, splits = mtfl
    utk, m = utk_tasks("full"), load_mtfl(root, splits)
    parts = [Part("utkface", type(m)((), (), (), {}, utk), None), Part("mtfl", m, None)]
    assert [t.name for t in union_tasks(parts)] == ["gender", "race", "age", "smile", "glasses", "pose"]
    clash = type(m)((), (), (), {}, (TaskSpec(name="gender", kind="binary", labels=("female", "male")),))
    with pytest.raises(DataError, match="task 'gender' means different things"):
        union_tasks([Part("utkface", type(m)((), (), (), {}, utk), None), Part("other", clash, None)])


def test_a_partial_label_batch_trains_only_the_labelled_tasks():
    tasks = (TaskSpec(name="gender", kind="binary", labels=("male", "female")),
             TaskSpec(name="smile", kind="binary", labels=("not smiling", "smiling")),
             TaskSpec(name="pose", kind="multiclass", labels=("l", "f", "r")))
    torch.manual_seed(0)
    net = MultiTaskNet(TinyBackbone(), tasks, shared_dims=(8,), head_dim=6, dropout=0.0)
    losses = create_losses(LossConfig(), tasks)
    chips = torch.randint(0, 255, (4, 150, 150, 3), dtype=torch.uint8)
    nan = float("nan")
    targets = {"gender": torch.tensor([0.0, 1.0, 1.0, 0.0]),  # every sample labelled
               "smile": torch.tensor([nan, nan, nan, nan]),  # no sample labelled
               "pose": torch.tensor([0.0, nan, 2.0, nan])}  # half labelled
    out = losses(net(chips), targets)
    sum(out.values()).backward()
    grad = {t.name: net.heads[t.name][-1].weight.grad.abs().sum().item() for t in tasks}
    assert grad["gender"] > 0 and grad["pose"] > 0 and grad["smile"] == 0.0
    assert all(torch.isfinite(v) for v in out.values())
    # the half-labelled loss is the loss of the labelled rows alone
    net.eval()
    logits = net(chips)["pose"]
    alone = torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([0, 2]))
    assert losses(net(chips), targets)["pose"].item() == pytest.approx(alone.item(), rel=1e-5)


def test_fit_on_utkface_joined_with_mtfl_trains_every_task_of_both(mtfl, tmp_path):
    from tests.training.training_fixtures import make_tiny_utkface, write_config
    from training.fit import main

    root, mtfl_splits = mtfl
    build_mtfl_cache(root, tmp_path / "mtfl_chips", progress=False)
    tiny = make_tiny_utkface(tmp_path / "utk")
    for name in ("mtfl_valid10.csv",):  # one splits folder serves both datasets
        (tiny["splits"] / name).write_bytes((mtfl_splits / name).read_bytes())
    config = write_config(tmp_path / "joined.toml", tiny["splits"], 'data.dataset = "utkface+mtfl"\n'
                          'model.age_kind = "expectation"\nweighting.kind = "equal"\nfreeze.early_freeze = false')
    out = tmp_path / "run"
    assert main(["--config", str(config), "--data", str(tiny["images"]), "--chips", str(tiny["chips"]),
                 "--mtfl", str(root), "--mtfl-chips", str(tmp_path / "mtfl_chips"), "--out", str(out),
                 "--epochs", "1"]) == 0
    with open(out / "log.csv", newline="") as f:
        row = next(csv.DictReader(f))
    for metric in ("gender_acc", "race_acc", "age_mae", "smile_acc", "glasses_acc", "pose_acc"):
        assert np.isfinite(float(row[metric])), metric
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert [t["name"] for t in ckpt["tasks"]] == ["gender", "race", "age", "smile", "glasses", "pose"]
