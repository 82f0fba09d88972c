"""engine/track.py: stable ids by IoU, on real detections and on hand-made box sequences."""
from __future__ import annotations

import cv2
import numpy as np

from engine.detect import HogDetector
from engine.track import IouTracker, greedy_match, iou_matrix
from engine.types import Faces


def boxes(*xyxy) -> Faces:
    return Faces.from_boxes(np.array(xyxy, np.float32).reshape(-1, 4), np.ones(len(xyxy), np.float32))


def test_iou_matrix_values():
    a = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [50, 50, 60, 60]], np.float32)
    iou = iou_matrix(a, b)
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_greedy_match_takes_best_pairs_first_and_respects_threshold():
    iou = np.array([[0.9, 0.8], [0.85, 0.1]], np.float32)
    assert greedy_match(iou, 0.3) == [(0, 0)]  # (1, 0) loses to (0, 0); (1, 1) is below 0.3
    assert sorted(greedy_match(iou, 0.05)) == [(0, 0), (1, 1)]


def test_ids_stay_stable_through_small_motion_on_real_detections(astronaut_bgr):
    """The astronaut photo drifts 2 px right and 1 px down per frame for 20 frames."""
    detector, tracker = HogDetector(), IouTracker()
    portrait = astronaut_bgr[:320]  # the head; HOG also fires on the badge lower down
    h, w = portrait.shape[:2]
    ids, lefts = [], []
    for k in range(20):
        shift = np.float32([[1, 0, 2 * k], [0, 1, k]])
        frame = cv2.warpAffine(portrait, shift, (w, h), borderMode=cv2.BORDER_REFLECT)
        faces = tracker(detector(frame))
        assert len(faces) == 1, f"frame {k}: {len(faces)} faces"
        ids.append(int(faces.track_id[0]))
        lefts.append(float(faces.xyxy[0, 0]))
    assert ids == [1] * 20
    assert lefts[-1] - lefts[0] > 20  # the box really moved (38 px of shift in all)


def test_two_faces_keep_their_ids_whatever_order_the_detector_lists_them():
    tracker = IouTracker()
    first = tracker(boxes([0, 0, 100, 100], [300, 0, 400, 100]))
    assert first.track_id.tolist() == [1, 2]
    for k in range(1, 10):
        a, b = [3 * k, 0, 100 + 3 * k, 100], [300 - 3 * k, 0, 400 - 3 * k, 100]
        out = tracker(boxes(b, a) if k % 2 else boxes(a, b))
        assert out.track_id.tolist() == ([2, 1] if k % 2 else [1, 2])


def test_a_face_appearing_elsewhere_gets_a_new_id():
    tracker = IouTracker()
    tracker(boxes([0, 0, 100, 100]))
    out = tracker(boxes([2, 0, 102, 100], [400, 300, 480, 380]))
    assert out.track_id.tolist() == [1, 2]


def test_track_survives_max_missed_frames_unseen_then_ends():
    tracker = IouTracker(max_missed=5)
    face = [100, 100, 200, 200]
    assert tracker(boxes(face)).track_id.tolist() == [1]
    for _ in range(5):
        assert len(tracker(Faces())) == 0
    assert tracker(boxes(face)).track_id.tolist() == [1]  # back after 5 frames: same track
    for _ in range(6):
        tracker(Faces())
    assert tracker.active_ids.tolist() == []
    assert tracker(boxes(face)).track_id.tolist() == [2]  # gone 6 frames: a new face


def test_ids_are_never_reused_within_a_source_after_a_cut_or_an_end():
    tracker = IouTracker(max_missed=0)
    seen = []
    for k in range(6):  # a face jumping far away each frame is a new face each time
        seen += tracker(boxes([k * 150, 0, k * 150 + 100, 100])).track_id.tolist()
    tracker.cut()  # a shot cut or the next photo of a folder: same output, new ids
    seen += tracker(boxes([0, 0, 100, 100])).track_id.tolist()
    assert seen == [1, 2, 3, 4, 5, 6, 7]


def test_ids_start_again_at_one_for_a_new_source():
    tracker = IouTracker()
    tracker(boxes([0, 0, 100, 100], [200, 0, 300, 100]))
    tracker.reset()
    assert tracker(boxes([0, 0, 100, 100])).track_id.tolist() == [1]


def test_a_box_match_is_refused_when_the_face_is_someone_else():
    tracker = IouTracker()
    rng = np.random.default_rng(0)
    a, b = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 64)).astype(np.float32))
    same_place = boxes([0, 0, 100, 100])
    assert tracker(same_place, a[None]).track_id.tolist() == [1]
    assert tracker(same_place, a[None]).track_id.tolist() == [1]  # same face: kept
    assert tracker(same_place, b[None]).track_id.tolist() == [2]  # other face, same box: new track
    assert tracker.refused == 1


def test_predict_returns_the_last_tracked_faces():
    tracker = IouTracker()
    assert len(tracker.predict()) == 0
    out = tracker(boxes([0, 0, 100, 100], [200, 0, 300, 100]))
    predicted = tracker.predict()
    assert predicted.track_id.tolist() == [1, 2]
    np.testing.assert_array_equal(predicted.xyxy, out.xyxy)


def test_tracker_does_not_mutate_its_input():
    faces = boxes([0, 0, 100, 100])
    out = IouTracker()(faces)
    assert faces.track_id.tolist() == [-1] and out.track_id.tolist() == [1]
