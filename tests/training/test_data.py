"""UTKFace names and protocols, CelebA's official files, the chip dataset, bad data."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.training.tiny_utk import LABELS, TEST_IDX, TRAIN_IDX, VALID_IDX, face_crop, make_tiny_utk
from training.chips import ChipCache, build_cache
from training.celeba import load_celeba
from training.chip_dataset import ChipDataset
from training.samples import (SPLITS_DIR, DataError, Sample, crossing_duplicates, dedup_test, read_split_csv,
                              split_train_valid)
from training.utkface import (UTK_TASKS, BadNameError, load_utkface, load_utkface_part, parse_utkface_name,
                              parse_utkface_name_detail, utk_tasks)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _rows(name: str) -> list[dict[str, str]]:
    return read_split_csv(SPLITS_DIR / name)


def _lines(name: str) -> list[str]:
    return (SPLITS_DIR / name).read_text().splitlines()[1:]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_utk(tmp_path_factory.mktemp("utk"))


@pytest.fixture(scope="module")
def tiny_cache(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    build_cache(tiny.images, folder, progress=False)
    return ChipCache.open(folder)


@pytest.fixture
def utk_dir():
    path = SHARED_DATA / "utkface"
    if not path.is_dir():
        pytest.skip("UTKFace is not available (../shared/data/utkface is absent in this checkout)")
    return path


# ---------------------------------------------------------------- names

def test_utkface_name_gives_age_gender_race():
    assert parse_utkface_name("100_0_0_20170112213500903.jpg.chip.jpg") == (100, 0, 0)
    assert parse_utkface_name("26_1_3_20170116171048641.jpg.chip.jpg") == (26, 1, 3)


@pytest.mark.parametrize("name, labels, repair", [
    ("24_0_1_20170116220224657 .jpg.chip.jpg", (24, 0, 1), "space before .jpg"),
    ("55_0_0_20170116232725357jpg.chip.jpg", (55, 0, 0), "missing dot before jpg"),
    ("28_1_2_201701161846515488.jpg.chip.jpg", (28, 1, 2), "18-digit date"),
    ("38_0_1_201701162330572788.jpg.chip.jpg", (38, 0, 1), "18-digit date"),
    ("14_0_0_2017011022340900.jpg.chip.jpg", (14, 0, 0), "16-digit date"),
])
def test_known_name_defects_are_repaired_and_named(name, labels, repair):
    p = parse_utkface_name_detail(name)
    assert (p.age, p.gender, p.race) == labels
    assert p.repairs == (repair,)


@pytest.mark.parametrize("name", ["39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
                                  "61_1_20170109150557335.jpg.chip.jpg"])
def test_names_without_race_field_are_rejected_with_that_reason(name):
    with pytest.raises(BadNameError) as e:
        parse_utkface_name(name)
    assert e.value.reason == "no race field" and e.value.name == name


@pytest.mark.parametrize("name, reason", [
    ("astronaut.jpg", "not <age>_<gender>_<race>_<date>"),
    ("25_2_0_20170116220224657.jpg.chip.jpg", "gender 2"),
    ("25_0_5_20170116220224657.jpg.chip.jpg", "race 5"),
    ("117_0_0_20170116220224657.jpg.chip.jpg", "age 117"),
    ("25_0_0_20170116220224657.png", "not <age>"),
])
def test_bad_names_raise_bad_name_error_with_the_reason(name, reason):
    with pytest.raises(BadNameError, match=reason):
        parse_utkface_name(name)


def test_age_task_range_follows_the_protocol():
    assert UTK_TASKS[2].range == (21.0, 60.0) == utk_tasks("coral")[2].range
    assert utk_tasks("full")[2].range == (0.0, 116.0)
    assert [t.name for t in UTK_TASKS] == ["gender", "race", "age"]
    with pytest.raises(DataError, match="unknown UTKFace protocol 'wild'"):
        utk_tasks("wild")


# ---------------------------------------------------------------- shipped protocol files (no data needed)

def test_coral_80_20_split_has_the_thesis_row_counts_and_partitions_the_coral_train_file():
    train, valid, coral = _lines("coral_train80.csv"), _lines("coral_valid20.csv"), _lines("utk_train.csv")
    assert (len(train), len(valid), len(coral)) == (10517, 2630, 13147)
    assert not set(train) & set(valid)
    assert sorted(train + valid) == sorted(coral)  # the rows themselves, byte for byte


def test_coral_80_20_split_is_reproduced_by_its_seed():
    train, valid = split_train_valid(_rows("utk_train.csv"), seed=0)
    assert [r["file"] for r in train] == [r["file"] for r in _rows("coral_train80.csv")]
    assert [r["file"] for r in valid] == [r["file"] for r in _rows("coral_valid20.csv")]


def test_dedup_test_list_is_the_coral_test_minus_84_files():
    test, dedup = _lines("utk_test.csv"), _lines("coral_test_dedup.csv")
    assert (len(test), len(dedup)) == (3287, 3203)
    assert set(dedup) <= set(test)


def test_full_protocol_lists_keep_every_coral_test_file_out():
    train, valid = {r["file"] for r in _rows("full_train80.csv")}, {r["file"] for r in _rows("full_valid20.csv")}
    test = {r["file"] for r in _rows("utk_test.csv")}
    assert not train & valid and not (train | valid) & test
    assert len(train) == int(np.floor(0.8 * (len(train) + len(valid))))
    coral_train = {r["file"] for r in _rows("utk_train.csv")}
    assert len(coral_train - (train | valid)) > 0  # some CORAL train files are byte-duplicates of test files


def test_sources_md_names_the_origin_of_the_coral_files():
    text = (SPLITS_DIR / "SOURCES.md").read_text()
    for fact in ("Raschka-research-group/coral-cnn", "8116ed8a", "datasets/train-test-csv", "MIT", "| 3203 |"):
        assert fact in text


# ---------------------------------------------------------------- the real UTKFace (skips without ../shared)

def test_make_splits_reproduces_every_shipped_file(utk_dir):
    r = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "make_splits.py"), "--data", str(SHARED_DATA),
                        "--check"], capture_output=True, text=True, timeout=600)  # hashes 23k files: slow on a busy CPU
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all protocol files match" in r.stdout


def test_coral_protocol_on_utkface_counts_its_defects(utk_dir):
    s = load_utkface("coral", utk_dir)
    assert (len(s.train), len(s.valid), len(s.test)) == (10516, 2630, 3287)
    assert s.skipped == {"bad name: no race field": 1}
    assert s.repaired == {"space before .jpg": 1, "missing dot before jpg": 1, "18-digit date": 2}
    assert all(21 <= x.targets["age"] <= 60 for x in s.train + s.valid + s.test)
    assert len(load_utkface("coral", utk_dir, test_split="test_dedup").test) == 3203


def test_dedup_drops_exactly_the_test_files_that_are_byte_identical_to_training_files(utk_dir):
    coral_train = [r["file"] for r in _rows("utk_train.csv")]
    test, _, _ = load_utkface_part("coral", utk_dir, "test")
    crossing = crossing_duplicates([x.file for x in test], coral_train, utk_dir)
    assert len(crossing) == 84
    for f in sorted(crossing)[:5]:
        twins = [t for t in coral_train if (utk_dir / t).read_bytes() == (utk_dir / f).read_bytes()]
        assert twins
    dedup = dedup_test(test, coral_train, utk_dir)
    assert [x.file for x in dedup] == [r["file"] for r in _rows("coral_test_dedup.csv")]


def test_full_protocol_has_all_ages_and_no_test_file_in_training(utk_dir):
    s = load_utkface("full", utk_dir)
    ages = [x.targets["age"] for x in s.train]
    assert min(ages) < 21 and max(ages) > 60
    assert not {x.file for x in s.train + s.valid} & {x.file for x in s.test}
    test_ages = np.array([x.targets["age"] for x in s.test])
    for lo, hi in ((0, 12), (13, 20), (21, 40), (41, 60), (61, 116)):  # every band of the evaluation
        assert ((test_ages >= lo) & (test_ages <= hi)).sum() >= 100, (lo, hi)
    coral_test = {r["file"] for r in _rows("utk_test.csv")}
    assert coral_test <= {x.file for x in s.test}  # the CORAL test stays whole inside it
    assert s.skipped == {"bad name: no race field": 3}


# ---------------------------------------------------------------- the tiny dataset

def test_tiny_protocol_skips_bad_names_and_keeps_the_rest(tiny):
    s = load_utkface("coral", tiny.images, tiny.splits)
    assert [x.file for x in s.train] == [tiny.names[i] for i in TRAIN_IDX]
    assert [x.file for x in s.valid] == [tiny.names[i] for i in VALID_IDX]
    assert s.skipped == {"bad name: not <age>_<gender>_<race>_<date>.jpg.chip.jpg": 1, "bad name: no race field": 1}
    assert len(s.test) == len(TEST_IDX) + 3  # + no-face photo, broken JPEG, duplicate: the loader reads names only
    first = s.train[0]
    age, gender, race = LABELS[TRAIN_IDX[0]]
    assert dict(first.targets) == {"gender": gender, "race": race, "age": age}
    dedup = load_utkface("coral", tiny.images, tiny.splits, test_split="test_dedup").test
    assert {x.file for x in s.test} - {x.file for x in dedup} == {tiny.test_duplicate}
    assert dedup_test(s.test, [x.file for x in s.train], tiny.images) == dedup


def test_files_listed_but_absent_are_counted(tiny, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in TRAIN_IDX[:3]:
        (images / tiny.names[i]).write_bytes((tiny.images / tiny.names[i]).read_bytes())
    s = load_utkface("coral", images, tiny.splits)
    assert len(s.train) == 3
    assert s.skipped["file missing from image folder"] == 3 + 2 + 1 + 6  # train rest, bad names, valid, test


def test_empty_missing_and_wrong_folders_give_one_clear_sentence(tiny, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty: no images in this folder"):
        load_utkface("coral", empty, tiny.splits)
    with pytest.raises(DataError, match=r"nowhere: image folder not found"):
        load_utkface("coral", tmp_path / "nowhere", tiny.splits)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"none of the 8 training files .* is this the UTKFace folder"):
        load_utkface("coral", other, tiny.splits)


def test_missing_split_file_is_named(tiny, tmp_path):
    with pytest.raises(DataError, match=r"nosplits/coral_train80.csv: split file missing"):
        load_utkface("coral", tiny.images, tmp_path / "nosplits")
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("coral_train80.csv", "coral_valid20.csv", "utk_test.csv"):
        (bad / name).write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a split file"):
        load_utkface("coral", tiny.images, bad)


def test_csv_age_that_disagrees_with_the_name_is_skipped(tiny, tmp_path):
    splits = tmp_path / "splits"
    splits.mkdir()
    for name in ("coral_valid20.csv", "utk_test.csv"):
        (splits / name).write_text((tiny.splits / name).read_text())
    good = tiny.names[0]  # age 25 -> CORAL code 4
    (splits / "coral_train80.csv").write_text(f",file,age\n0,{good},4\n1,{tiny.names[1]},0\n")
    s = load_utkface("coral", tiny.images, splits)
    assert [x.file for x in s.train] == [good]
    assert s.skipped == {"CSV age disagrees with the name": 1}


# ---------------------------------------------------------------- chip dataset

def test_chip_dataset_gives_uint8_chips_and_scaled_targets(tiny, tiny_cache):
    s = load_utkface("coral", tiny.images, tiny.splits)
    ds = ChipDataset(tiny_cache, s.test, s.tasks)
    assert len(ds) == len(s.test) - 2
    assert ds.dropped == 2 and ds.dropped_reasons == {"no_face": 1, "unreadable": 1}
    chip, targets = ds[0]
    assert chip.dtype == torch.uint8 and chip.shape == (150, 150, 3)
    assert torch.equal(chip, torch.from_numpy(np.array(tiny_cache.chips[tiny_cache.row_of[ds.samples[0].file]])))
    age = ds.samples[0].targets["age"]
    assert targets["age"].item() == pytest.approx((age - 21) / 39)
    assert targets["gender"].item() == ds.samples[0].targets["gender"]
    assert targets["race"].dtype == torch.float32


def test_flip_mirrors_about_half_of_the_draws(tiny, tiny_cache):
    s = load_utkface("coral", tiny.images, tiny.splits)
    ds = ChipDataset(tiny_cache, s.train[:1], s.tasks, flip=True)
    plain = np.array(tiny_cache.chips[ds.rows[0]])
    mirrored = plain[:, ::-1]
    torch.manual_seed(0)
    draws = [ds[0][0].numpy() for _ in range(200)]
    flipped = sum(np.array_equal(d, mirrored) for d in draws)
    assert sum(np.array_equal(d, plain) for d in draws) + flipped == 200
    assert 70 < flipped < 130


def test_chip_dataset_without_any_chip_says_why(tiny, tiny_cache):
    lost = [Sample(tiny.no_face, {"gender": 0.0, "race": 0.0, "age": 30.0}),
            Sample(tiny.broken, {"gender": 1.0, "race": 1.0, "age": 31.0}),
            Sample("not_cached.jpg", {"gender": 1.0, "race": 1.0, "age": 31.0})]
    with pytest.raises(DataError, match=r"none of the 3 samples has a chip in this cache "
                                        r"\(no_face: 1, not in cache: 1, unreadable: 1\)"):
        ChipDataset(tiny_cache, lost, UTK_TASKS)


def test_chip_dataset_marks_a_missing_label_nan_and_counts_the_labels(tiny, tiny_cache):
    ds = ChipDataset(tiny_cache, [Sample(tiny.names[0], {"gender": 1.0, "age": 25.0}),
                                  Sample(tiny.names[1], {"gender": 0.0, "race": 2.0, "age": 40.0})], UTK_TASKS)
    assert np.isnan(ds.targets["race"][0]) and ds.targets["race"][1] == 2.0
    assert ds.labelled == {"gender": 2, "race": 1, "age": 2}


# ---------------------------------------------------------------- CelebA

ATTRS = ("5_o_Clock_Shadow", "Male", "Smiling", "Young")
CELEB_ROWS = {  # name: (values per ATTRS, partition)
    "000001.jpg": ((-1, -1, 1, 1), 0), "000002.jpg": ((-1, 1, 1, -1), 0), "000003.jpg": ((1, 1, -1, 1), 0),
    "000004.jpg": ((-1, -1, -1, 1), 1), "000005.jpg": ((1, 1, 1, -1), 2), "000006.jpg": ((-1, -1, 1, -1), 2),
}


def _write_celeba(root: Path, layout: str = "flat", rows=CELEB_ROWS, count: int | None = None,
                  partition_skip: tuple[str, ...] = ()) -> Path:
    from skimage import data

    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    crop = face_crop(data.astronaut(), 160, 0, 0, False, 1.0)
    for name in rows:
        cv2.imwrite(str(images / name), crop)
    anno = root / "Anno" if layout == "official" else root
    ev = root / "Eval" if layout == "official" else root
    anno.mkdir(exist_ok=True)
    ev.mkdir(exist_ok=True)
    lines = [str(len(rows) if count is None else count), " ".join(ATTRS) + " "]
    lines += [f"{name} " + " ".join(f"{v:2d}" for v in values) for name, (values, _) in rows.items()]
    (anno / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (ev / "list_eval_partition.txt").write_text(
        "".join(f"{n} {p}\n" for n, (_, p) in rows.items() if n not in partition_skip))
    return root


@pytest.mark.parametrize("layout", ["flat", "official"])
def test_celeba_loader_reads_the_official_formats(tmp_path, layout):
    s = load_celeba(_write_celeba(tmp_path / "celeba", layout), ("Male", "Young"))
    assert [x.file for x in s.train] == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert [x.file for x in s.valid] == ["000004.jpg"]
    assert [x.file for x in s.test] == ["000005.jpg", "000006.jpg"]
    assert dict(s.train[1].targets) == {"male": 1.0, "young": 0.0}
    assert dict(s.test[0].targets) == {"male": 1.0, "young": 0.0}
    assert [(t.name, t.kind, t.labels) for t in s.tasks] == [("male", "binary", ("female", "male")),
                                                              ("young", "binary", ("old", "young"))]
    other = load_celeba(tmp_path / "celeba", ("Smiling",))
    assert other.tasks[0].labels == ("not smiling", "smiling")
    assert [x.targets["smiling"] for x in other.train] == [1.0, 1.0, 0.0]


def test_celeba_counts_images_without_partition_or_file(tmp_path):
    root = _write_celeba(tmp_path / "c", partition_skip=("000002.jpg",))
    (root / "img_align_celeba" / "000003.jpg").unlink()
    s = load_celeba(root)
    assert [x.file for x in s.train] == ["000001.jpg"]
    assert s.skipped == {"no partition entry": 1, "file missing from image folder": 1}


def test_celeba_format_errors_name_file_and_line(tmp_path):
    with pytest.raises(DataError, match=r"unknown attribute\(s\) \['Bald'\]"):
        load_celeba(_write_celeba(tmp_path / "a"), ("Male", "Bald"))
    with pytest.raises(DataError, match="line 1 says 7 images, the file lists 6"):
        load_celeba(_write_celeba(tmp_path / "b", count=7))
    root = _write_celeba(tmp_path / "c")
    path = root / "list_attr_celeba.txt"
    path.write_text(path.read_text().replace("000004.jpg -1 -1 -1  1", "000004.jpg -1 -1 0  1"))
    with pytest.raises(DataError, match=r"list_attr_celeba.txt, line 6: attribute values must be 1 or -1"):
        load_celeba(root)
    with pytest.raises(DataError, match=r"list_eval_partition.txt not found"):
        (root / "list_eval_partition.txt").unlink()
        load_celeba(root)
    with pytest.raises(DataError, match="CelebA folder not found"):
        load_celeba(tmp_path / "none")
