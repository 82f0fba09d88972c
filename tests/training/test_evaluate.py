"""Evaluation through the engine on a tiny real dataset, checked against numpy by hand."""
from __future__ import annotations

import json

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from tests.training.tiny_utk import make_tiny_checkpoint, make_tiny_utk
from training.chips import ChipCache, build_cache
from training.utkface import load_utkface_part
from training.evaluate import EvaluateError, evaluate, main
from training.export import export

RACES = ("white", "black", "asian", "indian", "other")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    tiny = make_tiny_utk(root / "data")
    build_cache(tiny.images, root / "cache", progress=False)
    ckpt = make_tiny_checkpoint(root / "tiny.pt", chips=np.array(ChipCache.open(root / "cache").chips))
    onnx_path = export(ckpt, root / "tiny.onnx", chips_dir=root / "cache").path
    return {"tiny": tiny, "cache": root / "cache", "ckpt": ckpt, "onnx": onnx_path, "root": root}


@pytest.fixture(scope="module")
def onnx_metrics(setup):
    out = setup["root"] / "report-onnx"
    evaluate(setup["onnx"], setup["tiny"].images, "coral", out, chips_dir=setup["cache"],
             splits_dir=setup["tiny"].splits, progress=False)
    return json.loads((out / "metrics.json").read_text()), out


def _by_hand(setup, split):
    """The split's metrics from plain onnxruntime + numpy, without training.evaluate."""
    samples, _, _ = load_utkface_part("coral", setup["tiny"].images, split, setup["tiny"].splits)
    cache = ChipCache.open(setup["cache"])
    have = [s for s in samples if s.file in cache.row_of]
    chips = np.stack([cache.chips[cache.row_of[s.file]] for s in have])
    session = ort.InferenceSession(str(setup["onnx"]), providers=["CPUExecutionProvider"])
    p_female, race_p, age = session.run(["gender", "race", "age"], {"chips": chips})
    g_true = np.array([s.targets["gender"] for s in have])
    r_true = np.array([s.targets["race"] for s in have])
    a_true = np.array([s.targets["age"] for s in have])
    g_pred, r_pred = (p_female > 0.5).astype(float), race_p.argmax(1)
    groups = {}
    for r in range(5):
        for g in range(2):
            m = (r_true == r) & (g_true == g)
            groups[(RACES[r], ("male", "female")[g])] = (
                int(m.sum()), (g_pred[m] == g_true[m]).mean() if m.any() else None,
                np.abs(age[m] - a_true[m]).mean() if m.any() else None)
    confusion = np.zeros((5, 5), int)
    for t, p in zip(r_true.astype(int), r_pred):
        confusion[t, p] += 1
    return {"n": len(have), "gender_acc": (g_pred == g_true).mean(), "race_acc": (r_pred == r_true).mean(),
            "age_mae": np.abs(age - a_true).mean(), "age_cs5": (np.abs(age - a_true) <= 5).mean(),
            "race_confusion": confusion, "groups": groups,
            "female_recall": (g_pred[g_true == 1] == 1).mean()}


@pytest.mark.parametrize("split", ["test", "test_dedup"])
def test_metrics_match_a_numpy_computation(setup, onnx_metrics, split):
    m = onnx_metrics[0]["splits"][split]
    want = _by_hand(setup, split)
    assert m["evaluated"] == want["n"]
    for key in ("gender_acc", "race_acc", "age_mae", "age_cs5"):
        assert m[key] == pytest.approx(want[key], abs=1e-6), key
    assert m["tasks"]["race"]["confusion"] == want["race_confusion"].tolist()
    assert m["tasks"]["gender"]["per_class"]["female"] == pytest.approx(want["female_recall"])
    assert m["tasks"]["age"]["mae"] == pytest.approx(want["age_mae"], abs=1e-6)
    got = {(g["race"], g["gender"]): g for g in m["groups"]}
    assert set(got) == set(want["groups"])
    for key, (n, acc, mae) in want["groups"].items():
        assert got[key]["n"] == n
        assert got[key]["gender_acc"] == (None if acc is None else pytest.approx(acc))
        assert got[key]["age_mae"] == (None if mae is None else pytest.approx(mae, abs=1e-5))


def test_every_listed_file_is_evaluated_or_counted(setup, onnx_metrics):
    splits = onnx_metrics[0]["splits"]
    assert splits["test"]["listed"] == 6 and splits["test_dedup"]["listed"] == 5
    for m in splits.values():
        assert m["skipped"] == {"no face found": 1, "unreadable image": 1}
        assert m["evaluated"] + sum(m["skipped"].values()) == m["listed"]
    assert onnx_metrics[0]["runtime"] == "onnxruntime through the engine (CPUExecutionProvider)"
    assert onnx_metrics[0]["reference"] == {"label": "thesis (seeds/003), CORAL test", "gender_acc": 0.9847,
                                            "race_acc": 0.8756, "age_mae": 4.68}


def test_report_has_tables_reference_row_and_readable_plots(onnx_metrics):
    metrics, out = onnx_metrics
    text = (out / "report.md").read_text()
    assert "| thesis (seeds/003), CORAL test | 98.47 % | 87.56 % | 4.68 |" in text
    m = metrics["splits"]["test"]
    assert f"| ours, test | {100 * m['gender_acc']:.2f} % | {100 * m['race_acc']:.2f} % | {m['age_mae']:.2f} |" in text
    assert "### By race x gender" in text and "| true \\ predicted | white | black | asian | indian | other |" in text
    for png in ("confusion_gender_test.png", "confusion_race_test_dedup.png", "age_error_test.png"):
        image = cv2.imread(str(out / png))
        assert image is not None and image.shape[0] > 200, png
        assert f"]({png})" in text
    rows = (out / "predictions_test.csv").read_text().splitlines()
    assert rows[0] == "file,gender_true,race_true,age_true,gender_pred,race_pred,age_pred"
    assert len(rows) == 1 + m["evaluated"]


def test_checkpoint_in_torch_scores_like_its_onnx_export(setup, onnx_metrics, tmp_path):
    metrics = evaluate(setup["ckpt"], setup["tiny"].images, "coral", tmp_path, chips_dir=setup["cache"],
                       splits_dir=setup["tiny"].splits, progress=False)
    assert metrics["runtime"] == "torch (checkpoint)"
    for split, m in metrics["splits"].items():
        ref = onnx_metrics[0]["splits"][split]
        assert (m["gender_acc"], m["race_acc"], m["evaluated"]) == (ref["gender_acc"], ref["race_acc"], ref["evaluated"])
        assert m["age_mae"] == pytest.approx(ref["age_mae"], abs=1e-4)


def test_from_images_runs_the_engine_and_counts_images_without_a_face(setup, onnx_metrics, tmp_path):
    """--from-images runs the app's still path (border, min_face scale); the training cache
    detects at the image's own size. Both find the same faces, and their chips (the same
    dlib alignment from landmarks found in slightly different boxes) stay close."""
    from training.chips import ChipCache

    metrics = evaluate(setup["onnx"], setup["tiny"].images, "coral", tmp_path, from_images=True,
                       splits_dir=setup["tiny"].splits, progress=False, save_chips=tmp_path / "engine")
    assert metrics["source"].startswith("images, engine detect (hog, upsample 0, still border)")
    for split, m in metrics["splits"].items():
        assert m["skipped"] == {"no face found": 1, "unreadable image": 1}
        assert m["evaluated"] == onnx_metrics[0]["splits"][split]["evaluated"]
    engine, cache = ChipCache.open(tmp_path / "engine"), ChipCache.open(setup["cache"])
    shared = [f for f in engine.row_of if engine.row_of[f] >= 0 and cache.row_of.get(f, -1) >= 0]
    assert shared
    for f in shared:
        a = engine.chips[engine.row_of[f]].astype(np.int16)
        b = cache.chips[cache.row_of[f]].astype(np.int16)
        assert np.abs(a - b).mean() < 8, f  # the same face aligned alike: 1.6-3.5 grey levels measured


def test_cli_writes_outputs_and_prints_the_headline(setup, tmp_path, capsys):
    rc = main([str(setup["onnx"]), "--data", str(setup["tiny"].images), "--protocol", "coral", "--chips",
               str(setup["cache"]), "--splits-dir", str(setup["tiny"].splits), "--split", "test_dedup",
               "-o", str(tmp_path / "r")])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.startswith("test_dedup: gender_acc ") and "(3 of 5 evaluated; skipped: no face found 1, unreadable image 1)" in text
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert list(metrics["splits"]) == ["test_dedup"]
    assert metrics["command"].startswith("python -m training.evaluate ")


def test_bad_inputs_give_one_clear_sentence(setup, tmp_path, capsys):
    tiny = setup["tiny"]
    args = ["--data", str(tiny.images), "--splits-dir", str(tiny.splits), "-o", str(tmp_path / "r")]
    assert main([str(tmp_path / "none.onnx"), "--chips", str(setup["cache"]), *args]) == 2
    assert "none.onnx: model file not found" in capsys.readouterr().err
    assert main([str(setup["onnx"]), *args]) == 2
    assert "give either --chips CACHE (cached chips) or --from-images" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(setup["onnx"]), "--chips", str(setup["cache"]), "--data", str(tmp_path / "empty"),
                 "--splits-dir", str(tiny.splits), "-o", str(tmp_path / "r")]) == 2
    assert "empty: no images in this folder" in capsys.readouterr().err
    assert main([str(setup["onnx"]), "--chips", str(tmp_path / "nocache"), *args]) == 2
    assert "nocache: no chip cache here" in capsys.readouterr().err
    (tmp_path / "fake.onnx").write_bytes(b"garbage")
    assert main([str(tmp_path / "fake.onnx"), "--chips", str(setup["cache"]), *args]) == 2
    assert "fake.onnx: not an ONNX model file" in capsys.readouterr().err
    with pytest.raises(EvaluateError, match="CelebA has no 'test_dedup' split"):
        evaluate(setup["onnx"], tmp_path, "celeba", tmp_path / "c", chips_dir=setup["cache"], splits=("test_dedup",))


def test_saved_engine_chips_read_back_as_a_cache_with_the_same_chips_and_skip_reasons(tmp_path):
    from training.samples import Sample
    from training.evaluate import Chips, cache_source, chips_from_cache, save_engine_chips

    rng = np.random.default_rng(0)
    a = Chips(rng.integers(0, 256, (2, 150, 150, 3), dtype=np.uint8), (Sample("a.jpg", {}), Sample("b.jpg", {})),
              {"c.jpg": "no face found"})
    b = Chips(rng.integers(0, 256, (1, 150, 150, 3), dtype=np.uint8), (Sample("d.jpg", {}),), {"e.jpg": "unreadable image"})
    save_engine_chips(tmp_path / "engine", [a, b], "images, engine detect (hog)")
    samples = [Sample(f, {}) for f in ("d.jpg", "c.jpg", "a.jpg", "e.jpg", "b.jpg")]
    back = chips_from_cache(tmp_path / "engine", samples)
    assert [s.file for s in back.samples] == ["d.jpg", "a.jpg", "b.jpg"]
    assert np.array_equal(back.chips, np.concatenate([b.chips, a.chips]))
    assert back.skipped == {"c.jpg": "no face found", "e.jpg": "unreadable image"}
    assert cache_source(tmp_path / "engine").endswith("from: images, engine detect (hog)")


def test_an_age_distribution_model_has_its_spread_scored_and_written(setup, tmp_path):
    """The engine states a spread for an age distribution: evaluate scores how often the truth
    lies within it (against numpy on the graph's own distribution) and writes it per face."""
    ckpt = make_tiny_checkpoint(tmp_path / "dist.pt", age_kind="expectation",
                                chips=np.array(ChipCache.open(setup["cache"]).chips))
    onnx_path = export(ckpt, tmp_path / "dist.onnx", chips_dir=setup["cache"]).path
    out = tmp_path / "report"
    evaluate(onnx_path, setup["tiny"].images, "coral", out, chips_dir=setup["cache"],
             splits_dir=setup["tiny"].splits, progress=False)
    age = json.loads((out / "metrics.json").read_text())["splits"]["test"]["tasks"]["age"]
    samples, _, _ = load_utkface_part("coral", setup["tiny"].images, "test", setup["tiny"].splits)
    cache = ChipCache.open(setup["cache"])
    have = [s for s in samples if s.file in cache.row_of]
    chips = np.stack([cache.chips[cache.row_of[s.file]] for s in have])
    (probs,) = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(["age"], {"chips": chips})
    bins = np.arange(21, 61, dtype=np.float64)
    mean = probs @ bins
    sd = np.sqrt(probs @ bins ** 2 - mean ** 2)
    err = np.abs(mean - np.array([s.targets["age"] for s in have]))
    assert age["within_1_spread"] == pytest.approx((err <= sd).mean())
    assert age["within_2_spread"] == pytest.approx((err <= 2 * sd).mean())
    assert age["spread_median"] == pytest.approx(np.median(sd), rel=1e-4)
    with (out / "predictions_test.csv").open() as f:
        header, first = f.readline().strip().split(","), f.readline().strip().split(",")
    assert header[-1] == "age_spread" and float(first[-1]) == pytest.approx(sd[0], rel=1e-3)
