"""Temperature scaling: the fit on synthetic logits with known temperatures, ECE, partial labels
(NaN targets skipped), and python -m training.calibrate end to end on a tiny checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.training.tiny_utk import make_tiny_checkpoint
from tests.training.training_fixtures import make_tiny_utkface
from training.calibrate import (CalibrationError, calibrate_task, class_logits, ece, fit_temperature, log_probs,
                                main, read_calibration)
from training.chips import ChipCache


def binary_data(true_t: float, n: int = 20000, seed: int = 0):
    """Logits z and labels drawn from sigmoid(z / true_t): the right temperature is true_t."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 4.0, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-z / true_t))).astype(np.float64)
    return z, labels


def multiclass_data(true_t: float, n: int = 20000, classes: int = 5, seed: int = 1):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n, classes))
    p = np.exp(z / true_t)
    p /= p.sum(1, keepdims=True)
    labels = (rng.random((n, 1)) > p.cumsum(1)).sum(1).astype(np.float64)
    return z, labels


@pytest.mark.parametrize("true_t", [2.0, 0.5])
def test_binary_fit_recovers_the_temperature_labels_were_drawn_with(true_t):
    z, labels = binary_data(true_t)
    t = fit_temperature(class_logits("binary", z[None]), labels.astype(np.int64))
    assert t == pytest.approx(true_t, rel=0.1)


def test_multiclass_fit_recovers_the_temperature():
    z, labels = multiclass_data(0.6)
    assert fit_temperature(class_logits("multiclass", z[None]), labels.astype(np.int64)) == pytest.approx(0.6, rel=0.1)


def test_binary_as_two_classes_gives_the_sigmoid():
    z = np.array([-3.0, 0.0, 0.7, 5.0])
    p = np.exp(log_probs(class_logits("binary", z[None]), 2.0))
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-z / 2.0)), rtol=1e-12)
    np.testing.assert_allclose(p.sum(1), 1.0)


def test_scaling_lowers_ece_and_nll_on_overconfident_logits():
    z, labels = binary_data(2.0)  # the logits are twice as sure as the labels justify
    r = calibrate_task("binary", z[None], labels)
    assert r.n == len(z) and r.temperature == pytest.approx(2.0, rel=0.1)
    assert r.ece_before > 0.05 and r.ece_after < 0.015 and r.ece_after < r.ece_before / 4
    assert r.nll_after < r.nll_before
    z, labels = multiclass_data(0.5)  # under-confident logits: T < 1 sharpens them
    r = calibrate_task("multiclass", z[None], labels)
    assert r.temperature < 1 and r.ece_after < r.ece_before / 4 and r.nll_after < r.nll_before


def test_ece_of_a_perfectly_calibrated_and_of_an_always_wrong_model():
    probs = np.array([[0.2, 0.8]] * 10)
    labels = np.array([1] * 8 + [0] * 2)
    assert ece(probs, labels) == pytest.approx(0.0)
    assert ece(np.array([[0.1, 0.9]] * 4), np.zeros(4, int)) == pytest.approx(0.9)


def test_unlabelled_samples_are_skipped():
    z, labels = binary_data(2.0, n=4000)
    rng = np.random.default_rng(5)
    masked = rng.random(len(z)) < 0.4  # e.g. UTKFace faces in the smile task: no label
    with_nan = labels.copy()
    with_nan[masked] = np.nan
    z_noisy = z.copy()
    z_noisy[masked] = 50.0  # what the net says about them must not count
    r = calibrate_task("binary", z_noisy[None], with_nan)
    alone = calibrate_task("binary", z[~masked][None], labels[~masked])
    assert r == alone and r.n == int((~masked).sum())
    assert calibrate_task("binary", z[None], np.full(len(z), np.nan)) is None


def test_flip_views_are_averaged_after_scaling():
    """With two views the fit is for the mean of the calibrated probabilities (a flip-TTA graph)."""
    z, labels = binary_data(2.0)
    views = np.stack([z, z])  # two identical views: the same temperature as one
    assert fit_temperature(class_logits("binary", views), labels.astype(np.int64)) == pytest.approx(
        fit_temperature(class_logits("binary", z[None]), labels.astype(np.int64)), rel=1e-3)
    zv = class_logits("binary", np.stack([z, -z]))
    p = np.exp(log_probs(zv, 3.0))[:, 1]
    np.testing.assert_allclose(p, 0.5, atol=1e-12)  # a view and its opposite average to 0.5


# -- end to end ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny UTKFace set (16 validation faces) and a checkpoint whose config names its splits."""
    root = tmp_path_factory.mktemp("calib")
    tiny = make_tiny_utkface(root / "utk", n_train=2, n_valid=16)
    ckpt_path = make_tiny_checkpoint(root / "best.pt", chips=np.array(ChipCache.open(tiny["chips"]).chips))
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["config"]["data"]["splits_dir"] = str(tiny["splits"])
    torch.save(ckpt, ckpt_path)
    return tiny, ckpt_path


def test_calibrate_writes_the_json_and_prints_a_table(run, tmp_path, capsys):
    tiny, ckpt = run
    out = tmp_path / "calibration.json"
    assert main([str(ckpt), "--out", str(out), "--data", str(tiny["images"]), "--chips", str(tiny["chips"]),
                 "--batch", "5"]) == 0
    doc = json.loads(out.read_text())
    assert (doc["method"], doc["split"], doc["ece_bins"], doc["flip_tta"]) == ("temperature scaling", "valid", 15, False)
    assert set(doc["tasks"]) == {"gender", "race"} and "age" in doc["uncalibrated"]
    for name, r in doc["tasks"].items():
        assert r["n"] == 16 and r["temperature"] > 0
        assert r["nll_after"] <= r["nll_before"] + 1e-9
        assert 0 <= r["ece_after"] <= 1 and 0 <= r["ece_before"] <= 1
    assert doc["checkpoint"]["epoch"] == 3 and doc["checkpoint"]["date"] == "2026-11-23T12:00:00+00:00"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["16", "validation", "chips"]
    assert any(line.startswith("gender") and "binary" in line and " -> " in line for line in lines)
    assert any(line.startswith("age") and "not calibrated" in line for line in lines)
    cal = read_calibration(out, torch.load(ckpt, weights_only=True))
    assert set(cal.temperatures) == {"gender", "race"} and cal.description["tasks"]["race"]["n"] == 16


def test_missing_checkpoint_and_data_are_one_line_errors(run, tmp_path, capsys):
    tiny, ckpt = run
    out = tmp_path / "c.json"
    assert main([str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.pt: checkpoint not found" in err
    assert main([str(ckpt), "--out", str(out), "--data", str(tiny["images"]), "--chips", str(tmp_path / "nocache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nocache: no chip cache here" in err
    assert main([str(ckpt), "--out", str(out), "--data", str(tmp_path / "noimages"), "--chips", str(tiny["chips"])]) == 2
    assert "noimages: image folder not found" in capsys.readouterr().err
    assert not out.exists()


def test_a_calibration_of_another_checkpoint_is_refused(run, tmp_path):
    _, ckpt = run
    doc = {"method": "temperature scaling", "tasks": {"gender": {"temperature": 1.5, "ece_before": 0.1, "ece_after": 0.02,
                                                                 "nll_before": 0.5, "nll_after": 0.4, "n": 10}},
           "checkpoint": {"epoch": 3, "date": "2020-01-01T00:00:00+00:00"}}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match="made for another checkpoint"):
        read_calibration(tmp_path / "c.json", torch.load(ckpt, weights_only=True))
    doc["tasks"]["gender"]["ece_after"] = None
    del doc["checkpoint"]
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match="tasks.gender lacks a finite number for ece_after"):
        read_calibration(tmp_path / "c.json", {})
