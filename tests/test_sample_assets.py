"""The bundled sample video: present, decodable, as documented, and faces where the truth says.

The truth file (assets/samples/sample_truth.jsonl) lists, per frame, the face box of every
portrait placed by tools/make_sample_video.py, in dlib HOG's box convention.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine import assets
from engine.detect import HogDetector

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "assets" / "samples"
WIDTH, HEIGHT, FPS, FRAMES = 640, 480, 30.0, 300  # as assets/samples/SOURCES.md says


def load_truth(path: Path = SAMPLES / "sample_truth.jsonl") -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def decode_frames(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames, i = {}, 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        if i in indices:
            frames[i] = image
        i += 1
    cap.release()
    return frames


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_sample_video_is_where_the_engine_looks_and_small():
    path = assets.sample_video_path()
    assert path == SAMPLES / "sample.mp4"
    assert path.is_file()
    assert path.stat().st_size < 3_000_000


def test_sample_video_decodes_with_documented_size_fps_and_frame_count():
    cap = cv2.VideoCapture(str(assets.sample_video_path()))
    assert cap.isOpened()
    assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == WIDTH
    assert int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == HEIGHT
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS, abs=0.01)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    decoded = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
        decoded += 1
    cap.release()
    assert decoded == FRAMES


def test_sources_document_the_video_as_built():
    text = (SAMPLES / "SOURCES.md").read_text(encoding="utf-8")
    assert f"{WIDTH}x{HEIGHT}, {int(FPS)} fps, {FRAMES} frames" in text
    assert "public domain" in text
    assert "python tools/make_sample_video.py" in text
    for portrait in {f["portrait"] for row in load_truth() for f in row["faces"]}:
        assert f"| {portrait} |" in text, f"{portrait} is in the video but not in SOURCES.md"


def test_truth_has_one_row_per_frame_and_one_to_six_faces_in_view():
    rows = load_truth()
    assert [r["frame"] for r in rows] == list(range(FRAMES))
    full_counts = [sum(f["inside"] >= 1.0 for f in r["faces"]) for r in rows]
    assert min(full_counts) == 1 and max(full_counts) == 6
    assert full_counts[0] == 1  # the video opens on a single face
    for row in rows:
        for face in row["faces"]:
            x0, y0, x1, y1 = face["xyxy"]
            assert 90 <= y1 - y0 <= 140, f"frame {row['frame']}: face {y1 - y0:.0f} px tall"


def test_truth_faces_never_overlap():
    for row in load_truth():
        boxes = [np.array(f["xyxy"]) for f in row["faces"]]
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert iou(boxes[i], boxes[j]) == 0.0, f"frame {row['frame']}: faces overlap"


def test_hog_finds_the_faces_where_the_truth_says():
    """dlib HOG (upsample 0, 640 px) on every 15th frame: recall >= 0.8, few false positives."""
    rows = load_truth()
    indices = set(range(0, FRAMES, 15))
    frames = decode_frames(assets.sample_video_path(), indices)
    assert set(frames) == indices
    detector = HogDetector(upsample=0, min_face=HogDetector.native_min_face_px)  # the 640-wide frame as it is
    found = total = false_positives = detections = 0
    for i in sorted(indices):
        dets = detector(frames[i]).xyxy
        detections += len(dets)
        matched: set[int] = set()
        for face in rows[i]["faces"]:
            truth = np.array(face["xyxy"], np.float32)
            candidates = [(iou(truth, d), k) for k, d in enumerate(dets) if k not in matched]
            best_iou, best_k = max(candidates, default=(0.0, -1))
            if best_iou >= 0.5:
                matched.add(best_k)
            if face["inside"] >= 1.0:
                total += 1
                found += best_iou >= 0.5
        false_positives += len(dets) - len(matched)
    assert total >= 60
    assert found / total >= 0.8, f"HOG found {found} of {total} faces in view"
    assert false_positives <= 0.1 * max(1, detections)


def test_generator_rebuilds_the_committed_sample(tmp_path, faces_pd_dir):
    """tools/make_sample_video.py is deterministic: same truth, same pictures as committed."""
    subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "make_sample_video.py"),
                    "--no-check", "--faces-dir", str(faces_pd_dir), "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    assert load_truth(tmp_path / "sample_truth.jsonl") == load_truth()
    indices = {0, 150, 299}
    rebuilt = decode_frames(tmp_path / "sample.mp4", indices)
    committed = decode_frames(assets.sample_video_path(), indices)
    for i in indices:
        diff = np.abs(rebuilt[i].astype(np.int16) - committed[i].astype(np.int16))
        assert diff.mean() < 3.0, f"frame {i} differs from the committed sample"
