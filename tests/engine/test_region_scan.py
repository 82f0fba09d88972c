"""Region scans between full scans, on composed videos of real portraits with a truth file:
new faces show and gone faces drop within 3 frames, ids survive the per-frame landmark
refits, and a face that moved is found where it is now. Real dlib, real ONNX Runtime, real
video files (benchmarks/composed_videos.py writes them)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.composed_videos import Actor, make_card, truth_path, write_actors
from engine.detect import HogDetector, create_detector
from engine.pipeline import Pipeline, PipelineConfig
from engine.region_scan import RegionScanner, regions_around
from engine.sources import open_source
from engine.track import iou_matrix
from engine.types import Faces

SIZE_WH = (640, 360)
FRAMES, ENTER, LEAVE = 36, 9, 24
PEOPLE = ("B000287.jpg", "C001079.jpg", "D000622.jpg")


@pytest.fixture(scope="module")
def cards(faces_pd_dir):
    return [make_card(faces_pd_dir / name, px) for name, px in zip(PEOPLE, (90, 90, 80))]


@pytest.fixture(scope="module")
def come_and_go(cards, tmp_path_factory):
    """A face moving right 4 px a frame all along, one that appears at ENTER, one that
    vanishes at LEAVE (in place: no partial faces at a border to blur the frame counts)."""
    moving, entering, leaving = cards
    actors = [Actor.at(moving, 20, 15, speed_px=4.0), Actor.at(entering, 460, 15, hidden=(0, ENTER)),
              Actor.at(leaving, 250, 190, hidden=(LEAVE, 10 ** 6))]
    path = write_actors(tmp_path_factory.mktemp("regions") / "come-and-go.mp4", SIZE_WH, actors, FRAMES)
    return path, [json.loads(line) for line in truth_path(path).read_text().splitlines()]


def _run(model_path, video, **config):
    """Region searches unless the test asks for the detector's own checks (``region_confirm``)."""
    config = {"region_confirm": False, **config}
    pipe = Pipeline.create(PipelineConfig(model_path, backend="cpu", min_face=70, **config))
    try:
        return list(pipe.run(open_source(video), live=False))
    finally:
        pipe.close()


def _found(result, box_xyxy, iou_min=0.5) -> bool:
    return bool(len(result.faces) and iou_matrix(np.asarray([box_xyxy]), result.faces.xyxy).max() >= iou_min)


def _truth_box(truth, frame, portrait):
    return next((f["xyxy"] for f in truth[frame]["faces"] if f["portrait"] == portrait), None)


@pytest.mark.parametrize("mode, enter_by", [
    ({"detect_every": 3}, ENTER + 2),  # a full scan on every 3rd frame: the face is in one of ENTER..ENTER+2
    ({"background_detect": True}, ENTER + 3),  # a scan at most 2 frames old, started at most a frame late
    ({"detect_every": 3, "region_confirm": True}, ENTER + 2),  # MTCNN's O-Net checks instead of region searches
    ({"background_detect": True, "region_confirm": True}, ENTER + 3),
    ({"detect_every": 3, "detector": "hog"}, ENTER + 2),
])
def test_a_new_face_shows_and_a_gone_face_drops_within_3_frames(tiny_model_path, come_and_go, mode, enter_by):
    video, truth = come_and_go
    results = _run(tiny_model_path, video, **mode)
    assert [r.frame.index for r in results] == list(range(FRAMES))
    entering = _truth_box(truth, ENTER, PEOPLE[1])
    shown = [_found(r, entering) for r in results]
    first = shown.index(True)
    assert ENTER <= first <= enter_by, shown
    assert all(shown[first:]), shown  # once found it stays
    leaving = _truth_box(truth, LEAVE - 1, PEOPLE[2])
    still = [_found(r, leaving, 0.3) for r in results]
    assert all(still[:LEAVE]), still
    gone_at = next(k for k in range(LEAVE, FRAMES) if not still[k])
    assert gone_at <= LEAVE + 2 and not any(still[gone_at:]), still  # dropped within 3 frames, for good
    for r in results:  # no box anywhere but on a face in view
        boxes = np.array([f["xyxy"] for f in truth[r.frame.index]["faces"]], np.float32).reshape(-1, 4)
        for b in r.faces.xyxy:
            if r.frame.index not in (LEAVE, LEAVE + 1):  # the forgiven frame of the face that left
                assert len(boxes) and iou_matrix(b[None], boxes).max() >= 0.3, (r.frame.index, b)
    assert any("regions" in r.timings_ms for r in results)


@pytest.mark.parametrize("mode", [{"detect_every": 1000}, {"background_detect": True},
                                  {"detect_every": 1000, "region_confirm": True},
                                  {"detect_every": 1000, "detector": "hog"}])
def test_ids_survive_per_frame_landmark_refits_and_region_scans(tiny_model_path, come_and_go, mode):
    """Full scans only on the first frame (or in the background): every other frame refits
    the landmarks in the tracked boxes and scans regions around them; the moving face keeps
    its id and its box stays on it."""
    video, truth = come_and_go
    results = _run(tiny_model_path, video, **mode)
    ids = set()
    for r in results:
        box = _truth_box(truth, r.frame.index, PEOPLE[0])
        iou = iou_matrix(np.asarray([box]), r.faces.xyxy)[0]
        k = int(np.argmax(iou))
        assert iou[k] >= 0.5, (r.frame.index, iou)
        ids.add(int(r.faces.track_id[k]))
    assert ids == {1}
    if "detect_every" in mode:
        assert [r.detected for r in results] == [True] + [False] * (FRAMES - 1)
        assert all("regions" in r.timings_ms and r.timings_ms["regions"] >= 0 for r in results[1:])
        assert "regions" not in results[0].timings_ms


def test_a_face_that_jumped_is_found_where_it_is_now(tiny_model_path, cards, tmp_path):
    """A face jumps 40 % of its width between two frames (faster than the landmarks follow):
    the region scan finds it there on that very frame, under the same id."""
    card = cards[0]
    jump = 0.4 * float(card.face_xyxy[2] - card.face_xyxy[0])
    actors = [Actor.at(card, 100, 40, hidden=(12, 10 ** 6)), Actor.at(card, 100 + jump, 40, hidden=(0, 12))]
    video = write_actors(tmp_path / "jump.mp4", SIZE_WH, actors, 20)
    truth = [json.loads(line) for line in truth_path(video).read_text().splitlines()]
    results = _run(tiny_model_path, video, detect_every=1000, shot_cuts=False, region_margin=0.5)
    for r in results:
        box = truth[r.frame.index]["faces"][0]["xyxy"]
        assert len(r.faces) == 1 and iou_matrix(np.asarray([box]), r.faces.xyxy)[0, 0] >= 0.5, r.frame.index
    assert {int(r.faces.track_id[0]) for r in results} == {1}
    assert not any(r.detected for r in results[1:])


def _one_face_moved(card, shift: float) -> tuple[np.ndarray, np.ndarray, Faces]:
    """(frame, the face's box in it, the face tracked at id 7 where it was a frame ago:
    ``shift`` of its width to the left)."""
    frame = np.full((SIZE_WH[1], SIZE_WH[0], 3), (70, 90, 80), np.uint8)
    ch, cw = card.image_bgr.shape[:2]
    frame[40:40 + ch, 200:200 + cw] = card.image_bgr
    face = card.face_xyxy + np.array([200, 40, 200, 40], np.float32)
    w = float(face[2] - face[0])
    moved = face + np.array([-shift * w, 0, -shift * w, 0], np.float32)
    tracked = Faces.from_boxes(moved[None], np.ones(1)).replace(
        track_id=np.array([7]), landmarks_xy=np.zeros((1, 5, 2), np.float32))
    return frame, face, tracked


def test_the_scanner_confirms_re_places_forgives_once_then_drops(cards):
    frame, face, tracked = _one_face_moved(cards[0], 0.45)
    scanner = RegionScanner(HogDetector(min_face=70), min_face=70, margin=0.7)
    out = scanner(frame, tracked)
    assert out.track_id.tolist() == [7] and iou_matrix(face[None], out.xyxy)[0, 0] >= 0.5
    assert np.isnan(out.landmarks_xy).all()  # re-placed on the found box: landmarks are refitted
    assert scanner.settle(out.track_id).tolist() == [True]

    empty = np.full_like(frame, (70, 90, 80))
    gone = scanner(empty, out)
    assert gone.track_id.tolist() == [7]  # one miss forgiven (drop_after 2) ...
    assert scanner.settle(gone.track_id).tolist() == [True]
    assert len(scanner(empty, gone)) == 0  # ... the second drops it
    scanner.settle(np.zeros(0, np.int64))
    assert len(scanner(empty, out)) == 1  # forgiven again, but ...
    assert scanner.settle(np.array([8])).tolist() == [False]  # ... the tracker no longer sees that face: gone


def test_o_net_checks_re_place_a_moved_face_and_drop_a_gone_one(cards):
    """MTCNN's ``confirm`` instead of a region search: a face that moved a fifth of its width
    keeps its id on the box O-Net re-places; a face that left is forgiven once, then dropped."""
    frame, face, tracked = _one_face_moved(cards[0], 0.2)
    scanner = RegionScanner(create_detector("mtcnn", min_face=70), min_face=70, confirm_only=True)
    out = scanner(frame, tracked)
    assert out.track_id.tolist() == [7] and iou_matrix(face[None], out.xyxy)[0, 0] >= 0.6
    assert scanner.regions_last == 1 and scanner.settle(out.track_id).tolist() == [True]
    empty = np.full_like(frame, (70, 90, 80))
    gone = scanner(empty, out)
    assert gone.track_id.tolist() == [7]
    scanner.settle(gone.track_id)
    assert len(scanner(empty, gone)) == 0


def test_o_net_checks_need_a_detector_that_can_confirm(tiny_model_path):
    with pytest.raises(ValueError, match="region_confirm: the hog detector"):
        Pipeline.create(PipelineConfig(tiny_model_path, backend="cpu", detector="hog", region_confirm=True))
    pipe = Pipeline.create(PipelineConfig(tiny_model_path, backend="cpu", detector="hog"))  # None: searches
    assert pipe.regions is not None and not pipe.regions.confirm_only
    pipe.close()
    pipe = Pipeline.create(PipelineConfig(tiny_model_path, backend="cpu", detector="mtcnn"))  # None: O-Net checks
    assert pipe.regions.confirm_only
    pipe.close()


def test_regions_grow_by_the_margin_clip_to_the_frame_and_merge_when_cheaper():
    boxes = np.array([[100, 100, 200, 200], [110, 105, 210, 205], [600, 300, 640, 360], [-200, 0, -120, 50]],
                     np.float32)
    regions, widths = regions_around(boxes, 0.5, (640, 360))
    # the first two overlap almost wholly: one region; the third is clipped; the fourth is out of view
    assert regions.tolist() == [[50, 50, 260, 255], [580, 270, 640, 360]]
    assert widths.tolist() == [100.0, 40.0]
    apart, _ = regions_around(np.array([[100, 100, 200, 200], [240, 240, 340, 340]], np.float32), 0.5, (640, 480))
    assert len(apart) == 2  # overlapping at a corner: searched apart (their union would cost more)


def test_bad_region_settings_are_refused_with_their_name(tiny_model_path):
    with pytest.raises(ValueError, match="region_margin"):
        Pipeline.create(PipelineConfig(tiny_model_path, backend="cpu", region_margin=-1))
    with pytest.raises(ValueError, match="region_drop_after"):
        Pipeline.create(PipelineConfig(tiny_model_path, backend="cpu", region_drop_after=0))
