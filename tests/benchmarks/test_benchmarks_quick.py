"""The benchmark harness runs end to end on tiny sizes and writes JSON of the documented shape.

A smoke run (CI) so the harness never rots: ``python -m benchmarks.speed --quick`` and
``python -m benchmarks.accuracy --quick`` as a user types them, with the real engine, a
real (tiny, random-weight) ONNX model, real dlib and real video files; then the report.
The numbers of a quick run mean nothing and are not checked, only that they are there.
Peers take part when their venvs exist (``benchmarks/peers/setup.sh``), else the JSON
says they were skipped.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import SCHEMA
from benchmarks.peers import PEERS

STAGES = ("decode", "detect_hog_up0", "detect_hog_up1", "align", "network", "track", "smooth", "render", "encode")


def _run(repo_root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=repo_root, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_header(doc: dict, kind: str) -> None:
    assert doc["schema"] == SCHEMA and doc["kind"] == kind
    assert doc["command"].startswith(f"python -m benchmarks.{kind}")
    m = doc["machine"]
    for key in ("cpu", "logical_cores", "usable_cores", "python", "onnxruntime", "dlib", "opencv", "git_commit"):
        assert m[key] not in (None, ""), key
    assert len(m["loadavg_1_5_15"]) == 3


def _check_speed(doc: dict) -> None:
    _check_header(doc, "speed")
    assert doc["quick"] is True
    assert doc["model"]["kind"] == "given"
    s = doc["sections"]
    rows = s["stages"]["rows"]
    assert rows and all(r["faces_found"] == r["faces_placed"] for r in rows), "every placed face is detected"
    for r in rows:
        for stage in STAGES:
            e = r["stages"][stage]
            assert _num(e["median_ms"]) and e["median_ms"] >= 0 and e["n"] >= 1, (stage, e)
        assert _num(r["frame_total_hog_up0_ms"])
    net = s["network"]
    assert net["faces"] >= 1
    for v in net["faceattr"].values():
        assert all(_num(b["ms_per_face"]) and b["ms_per_face"] > 0 for b in v["batches"].values())
    for peer in PEERS:
        p = net["peers"][peer.name]
        if peer.missing():
            assert "skipped" in p
        else:
            assert "variants" in p, p
            assert any(r["peer"] == peer.name and _num(r["peer_over_faceattr"]) for r in net["ratios"])
    live = s["live"]
    assert live["variants"]
    for v in live["variants"]:
        assert v["results"] >= 1 and v["results"] + v["dropped"] == v["frames_released"]
        assert _num(v["delivered_fps"]) and _num(v["latency_ms"]["p95"])
        assert isinstance(v["meets_target"], bool)
    a = s["annotate"]
    assert a["frames"] >= 1 and _num(a["throughput_ratio"]) and a["throughput_ratio"] > 0
    start = s["startup"]  # the app launched as a process until its first labelled frame
    assert start["runs"] and all("error" not in r for r in start["runs"]), start["runs"]
    for r in start["runs"]:
        marks = [r[f"{m}_s"] for m in ("main", "window_shown", "first_frame", "first_labelled_frame")]
        assert 0 < marks[0] <= marks[1] <= marks[2] <= marks[3] and r["faces"] >= 1
    assert isinstance(start["meets_target"], bool)
    assert isinstance(doc["gpu"]["available"], bool)


def _scores(systems: dict) -> dict:
    return {name: {split: s[split] for split in ("test", "test_dedup") if split in s} for name, s in systems.items()}


def _check_accuracy(doc: dict) -> None:
    _check_header(doc, "accuracy")
    assert doc["reference"][0]["gender_acc"] == 0.9847  # the thesis row, as published
    assert "CelebA" in doc["celeba"]
    d = doc["dataset"]
    assert d["images"] == 50 and d["faces_found"] + d["no_face"] + d["unreadable"] == 50
    fa = doc["systems"]["faceattr"]
    for split in ("test", "test_dedup"):
        o = fa[split]["overall"]
        assert o["n"] >= 1
        for key in ("age_mae", "age_cs5", "gender_acc", "race_acc"):
            assert _num(o[key]), key
        groups = fa[split]["groups"]
        assert len(groups) == 10 and sum(g["n"] for g in groups) == o["n"]
    for peer in PEERS:
        p = doc["systems"][peer.name]
        if peer.missing():
            assert "skipped" in p
        else:
            o = p["test"]["overall"]
            assert _num(o["age_mae"]) and _num(o["gender_acc"]) and o["race_acc"] is None


def test_quick_speed_and_accuracy_runs_write_documented_json_and_report(repo_root, tiny_model_path, tmp_path):
    out = tmp_path / "out"
    _run(repo_root, "benchmarks.speed", "--quick", "--model", str(tiny_model_path), "--out", str(out), timeout=300)
    _check_speed(json.loads((out / "speed.json").read_text()))

    has_data = (repo_root.parent / "shared" / "data" / "utkface").is_dir()
    _run(repo_root, "benchmarks.accuracy", "--quick", "--model", str(tiny_model_path), "--out", str(out))
    acc = json.loads((out / "accuracy.json").read_text())
    if has_data:
        _check_accuracy(acc)
        # A rerun reuses the faces and peer predictions from <out>/cache and scores the same.
        again = _run(repo_root, "benchmarks.accuracy", "--quick", "--model", str(tiny_model_path), "--out", str(out))
        assert "reused from the cache" in again.stdout
        rerun = json.loads((out / "accuracy.json").read_text())["systems"]
        assert _scores(rerun) == _scores(acc["systems"])
    else:
        _check_header(acc, "accuracy")
        assert "does not exist" in acc["skipped"]

    report_dir = tmp_path / "report"
    _run(repo_root, "benchmarks.report", "--speed", str(out / "speed.json"), "--accuracy",
         str(out / "accuracy.json"), "--calibration", str(out / "none.json"), "--out", str(report_dir))
    text = (report_dir / "RESULTS.md").read_text()
    assert "## Speed" in text and "## Accuracy" in text and "smoke run" in text
    assert "### App start to first labelled frame" in text
    for png in ("scaling.png", "network.png"):
        assert (report_dir / "results" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (report_dir / "results" / "speed.json").is_file()


def test_accuracy_without_the_dataset_writes_a_skip_record_naming_the_folder(repo_root, tmp_path):
    missing = tmp_path / "no-utkface-here"
    proc = _run(repo_root, "benchmarks.accuracy", "--quick", "--data", str(missing), "--out", str(tmp_path))
    doc = json.loads((tmp_path / "accuracy.json").read_text())
    assert str(missing) in doc["skipped"] and "does not exist" in doc["skipped"]
    assert "skipped" in proc.stdout


def test_speed_with_a_missing_model_says_so_in_one_line(repo_root, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--quick", "--model", str(tmp_path / "nope.onnx"),
                           "--out", str(tmp_path)], cwd=repo_root, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "nope.onnx" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "speed.json").exists()


@pytest.mark.parametrize("n_faces", [1, 4])
def test_composed_frames_hold_faces_the_hog_detector_finds(n_faces):
    from benchmarks.common import compose_frame, face_crops
    from engine.detect import HogDetector

    crops, _ = face_crops(limit=4)
    frame = compose_frame((640, 480), n_faces, crops)
    assert frame.shape == (480, 640, 3)
    assert len(HogDetector(upsample=0, min_face=HogDetector.native_min_face_px)(frame)) == n_faces
