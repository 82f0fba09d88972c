"""The composed HD videos and their truth, the event scoring, and the live_hd benchmark
section end to end on a tiny clip (real engine, real dlib, real video files; the numbers of
a quick run are not checked, only that they are there)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from benchmarks.composed_videos import FACE_PX, VIDEOS, layout, render, truth_path, write_video
from benchmarks.live_hd import HD_VARIANTS, face_events
from engine.detect import HogDetector
from engine.track import greedy_match, iou_matrix


@pytest.fixture(scope="module")
def hd_frames(faces_pd_dir):
    """The first frames of the 720p, 5-face video, with their truth (rendered, not encoded)."""
    actors = layout((1280, 720), 5, seconds=10.0, seed=0)
    frames = []
    for k, item in enumerate(render((1280, 720), actors, 300)):
        if k % 60 == 0:
            frames.append(item)
        if k >= 240:
            break
    return actors, frames


def test_the_cast_spans_the_face_sizes_and_the_truth_boxes_are_what_hog_finds(hd_frames):
    actors, frames = hd_frames
    widths = sorted(float(a.card.face_xyxy[2] - a.card.face_xyxy[0]) for a in actors)
    assert len({a.card.name for a in actors}) == 5
    assert widths[0] == pytest.approx(FACE_PX[0], abs=2) and widths[-1] == pytest.approx(FACE_PX[1], abs=2)
    image, faces = frames[1]
    assert image.shape == (720, 1280, 3)
    full = np.array([f["xyxy"] for f in faces if f["inside"] >= 1.0], np.float32)
    assert len(full) >= 3
    found = HogDetector(min_face=60)(image)
    assert len(greedy_match(iou_matrix(full, found.xyxy), 0.5)) == len(full)  # the truth is in HOG's convention


def test_ids_are_per_appearance_and_inside_is_the_visible_part(hd_frames):
    actors, _ = hd_frames
    seen_ids, last = set(), {}
    for k, (_, faces) in enumerate(render((1280, 720), actors, 300)):
        for f in faces:
            assert 0 < f["inside"] <= 1.0
            seen_ids.add(f["id"])
            if f["id"] in last:
                assert last[f["id"]] == k - 1  # an id is never seen again after a gap
            last[f["id"]] = k
    assert len(seen_ids) > 5  # faces left and came back (as new appearances) within 10 s


def test_the_script_writes_a_video_and_a_truth_line_per_frame(faces_pd_dir, tmp_path):
    path = write_video(tmp_path / "clip.mp4", (640, 360), 3, 1.0, face_px=(70, 110))
    cap = cv2.VideoCapture(str(path))
    count = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        assert image.shape == (360, 640, 3)
        count += 1
    cap.release()
    rows = [json.loads(line) for line in truth_path(path).read_text().splitlines()]
    assert count == len(rows) == 30 and [r["frame"] for r in rows] == list(range(30))
    assert all({"id", "portrait", "xyxy", "inside"} <= set(f) for r in rows for f in r["faces"])
    assert set(VIDEOS) == {"720p-5", "720p-10", "1080p-5", "1080p-10"}


def test_face_events_count_delays_and_id_switches():
    box = [100.0, 100.0, 200.0, 200.0]
    # face 1 all along; face 2 from frame 12 to 29 (then gone), 40 frames in all
    truth = [[{"id": 1, "xyxy": box, "inside": 1.0}]
             + ([{"id": 2, "xyxy": [400.0, 100.0, 500.0, 200.0], "inside": 1.0}] if 12 <= k < 30 else [])
             for k in range(40)]
    seen = []
    for k in range(40):
        boxes = [box] + ([[400.0, 100.0, 500.0, 200.0]] if 14 <= k < 32 else [])  # 2 late, 2 lingering
        ids = [1 if k < 20 else 3] + ([2] if 14 <= k < 32 else [])  # face 1 changes id once
        seen.append((k, np.array(boxes, np.float32), np.array(ids)))
    ev = face_events(truth, seen)
    assert ev["appear"] == {"events": 1, "never": 0, "within_3_frames": 1.0, "p95_frames": 2.0, "max_frames": 2}
    assert ev["drop"]["max_frames"] == 2 and ev["drop"]["within_3_frames"] == 1.0
    assert ev["id_switches"] == 1


def test_the_matrix_covers_the_scan_interval_the_margin_and_background_detection():
    assert {v.detect_every for v in HD_VARIANTS if not v.background} >= {1, 2, 3}
    assert {v.region_margin for v in HD_VARIANTS} >= {None, 0.3, 0.5}
    assert {v.background for v in HD_VARIANTS} == {True, False}
    assert len({v.name for v in HD_VARIANTS}) == len(HD_VARIANTS)


def test_quick_live_hd_section_runs_and_reports(repo_root, tiny_model_path, faces_pd_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--quick", "--sections", "live_hd", "--model",
                           str(tiny_model_path), "--out", str(out)], cwd=repo_root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "load average" in proc.stdout and "usable cores" in proc.stdout
    sec = json.loads((out / "speed.json").read_text())["sections"]["live_hd"]
    (video,) = sec["videos"].values()
    assert video["variants"]
    for v in video["variants"]:
        assert v["results"] >= 1 and math.isfinite(v["delivered_fps"]) and math.isfinite(v["latency_ms"]["p95"])
        assert 0 <= v["recall_iou50"] <= 1 and v["id_switches"] >= 0
        assert {"appear", "drop", "loadavg_before", "loadavg_after", "region_margin"} <= set(v)
    report = subprocess.run([sys.executable, "-m", "benchmarks.report", "--speed", str(out / "speed.json"),
                             "--accuracy", str(out / "none.json"), "--calibration", str(out / "none.json"),
                             "--out", str(tmp_path / "report")], cwd=repo_root, env=env, capture_output=True,
                            text=True, timeout=120)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "Live pipeline, composed HD videos" in (tmp_path / "report" / "RESULTS.md").read_text()
