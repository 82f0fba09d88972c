"""MTCNN through ONNX Runtime: finds real faces, places boxes as HOG does, keeps the detector contract."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine import assets, mtcnn
from engine.align import align_chips, load_shape_predictor
from engine.detect import DETECTORS, STILL_PAD, create_detector
from engine.track import iou_matrix


@pytest.fixture(scope="module")
def detector():
    return create_detector("mtcnn", min_face=40)


def _eye_distance(landmarks_xy: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks_xy[0:2].mean(0) - landmarks_xy[2:4].mean(0)))


def test_mtcnn_is_a_registered_detector_beside_hog():
    assert "mtcnn" in DETECTORS and "hog" in DETECTORS


def test_finds_the_astronauts_face_where_hog_puts_its_box(detector, astronaut_bgr):
    ours = detector(astronaut_bgr)
    hog = create_detector("hog", min_face=40)(astronaut_bgr)
    assert len(ours) == 1 and len(hog) == 1
    assert iou_matrix(ours.xyxy, hog.xyxy)[0, 0] >= 0.75
    assert 0.9 <= ours.score[0] <= 1.0  # O-Net's face probability


def test_landmarks_in_its_box_match_those_in_hogs_box(detector, astronaut_bgr):
    """The chip's alignment comes from dlib's 5 points; MTCNN's HOG-like box must not move them."""
    predictor = load_shape_predictor()
    _, ours = align_chips(astronaut_bgr, detector(astronaut_bgr).xyxy, predictor)
    _, hogs = align_chips(astronaut_bgr, create_detector("hog", min_face=40)(astronaut_bgr).xyxy, predictor)
    error = np.linalg.norm(ours[0] - hogs[0], axis=1).mean() / _eye_distance(hogs[0])
    assert error < 0.03


@pytest.mark.parametrize("face_px", [30, 60])
def test_finds_a_face_of_min_face_pixels_in_a_1280x720_frame(astronaut_bgr, face_px):
    hog_box = create_detector("hog", min_face=40)(astronaut_bgr).xyxy[0]
    s = face_px / float(hog_box[2] - hog_box[0])
    small = cv2.resize(astronaut_bgr, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[300:300 + small.shape[0], 700:700 + small.shape[1]] = small
    found = create_detector("mtcnn", min_face=face_px)(frame)
    truth = hog_box[None] * s + np.array([700, 300, 700, 300], np.float32)
    assert len(found) >= 1 and iou_matrix(truth, found.xyxy).max() >= 0.6


def test_a_face_smaller_than_min_face_is_not_searched_for(astronaut_bgr):
    small = cv2.resize(astronaut_bgr, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)  # face ~21 px
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[100:100 + small.shape[0], 100:100 + small.shape[1]] = small
    assert len(create_detector("mtcnn", min_face=20)(frame)) == 1
    assert len(create_detector("mtcnn", min_face=80)(frame)) == 0


def test_no_faces_in_a_flat_or_noisy_frame(detector):
    rng = np.random.default_rng(0)
    assert len(detector(np.full((480, 640, 3), 127, np.uint8))) == 0
    assert len(detector(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))) == 0


def test_a_tight_crop_is_found_with_the_still_border(detector, astronaut_bgr):
    crop = astronaut_bgr[60:190, 165:280]  # the face touching the borders
    found = detector(crop, pad=STILL_PAD)
    assert len(found) == 1
    x1, y1, x2, y2 = found.xyxy[0]
    assert -10 <= x1 and -10 <= y1 and x2 <= crop.shape[1] + 10 and y2 <= crop.shape[0] + 10


def test_an_explicit_scale_searches_a_region_as_hog_does(detector, astronaut_bgr):
    """Region scans call the detector with their own scale (``native_min_face_px / face px``)."""
    region = astronaut_bgr[20:260, 120:330]
    found = detector(region, scale=detector.native_min_face_px / 60.0)
    assert len(found) == 1


def test_nms_by_the_smaller_box_drops_a_box_inside_a_bigger_one():
    xyxy = np.array([[0, 0, 100, 100], [10, 10, 40, 40], [200, 200, 260, 260]], np.float32)
    scores = np.array([0.9, 0.95, 0.8], np.float32)
    assert sorted(mtcnn.nms_keep(xyxy, scores, 0.7).tolist()) == [0, 1, 2]  # IoU 0.09: both kept
    assert sorted(mtcnn.nms_keep(xyxy, scores, 0.7, by_min=True).tolist()) == [1, 2]  # inside: 1.0


def test_a_missing_network_file_names_itself(monkeypatch, tmp_path):
    monkeypatch.setattr(assets, "bundle_root", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="mtcnn_pnet.onnx"):
        create_detector("mtcnn")


def test_confirm_re_places_a_shifted_box_and_rejects_a_box_on_no_face(detector, astronaut_bgr):
    face = detector(astronaut_bgr).xyxy
    w = float(face[0, 2] - face[0, 0])
    shifted = face + np.array([0.15 * w, 0.1 * w, 0.15 * w, 0.1 * w], np.float32)
    back = detector.confirm(astronaut_bgr, shifted)
    assert len(back) == 1 and iou_matrix(face, back.xyxy)[0, 0] > iou_matrix(face, shifted)[0, 0]
    assert iou_matrix(face, back.xyxy)[0, 0] >= 0.8
    assert len(detector.confirm(astronaut_bgr, np.array([[10, 300, 90, 380]], np.float32))) == 0  # sleeve, no face
    assert len(detector.confirm(astronaut_bgr, np.zeros((0, 4), np.float32))) == 0


def test_from_hog_like_inverts_hog_like():
    boxes = np.array([[10, 20, 110, 130], [300, 40, 360, 100]], np.float32)
    square = mtcnn.from_hog_like(mtcnn.hog_like(boxes))
    again = mtcnn.hog_like(square)
    assert np.allclose(again, mtcnn.hog_like(boxes), atol=1e-3)
