"""Detection in a thread of its own while every frame is tracked: faces come and go in time."""
from __future__ import annotations

import numpy as np
import pytest

from engine.background_detect import BackgroundDetector, merge_detections
from engine.detect import HogDetector
from engine.pipeline import Pipeline, PipelineConfig
from engine.sources import open_source
from engine.types import Faces
from tests.engine.scenes import portrait_photos, write_video

ENTER, LEAVE, FRAMES = 10, 30, 42


def _comings_and_goings(path):
    """A still face on the left all along; a second face on the right from ENTER to LEAVE."""
    left, right = portrait_photos(2)
    h, w = left.shape[:2]
    frames = []
    for k in range(FRAMES):
        img = np.full((480, 640, 3), (70, 90, 80), np.uint8)
        img[100:100 + h, 40 + k:40 + k + w] = left  # drifting a pixel a frame
        if ENTER <= k < LEAVE:
            img[100:100 + h, 380:380 + w] = right
        frames.append(img)
    return write_video(path, frames)


@pytest.fixture(scope="module")
def background_pipeline(tiny_model_path):
    pipe = Pipeline.create(PipelineConfig(tiny_model_path, backend="cpu", min_face=70, background_detect=True))
    yield pipe
    pipe.close()


def test_a_face_shows_and_drops_within_3_frames_and_the_other_keeps_its_id(background_pipeline, tmp_path):
    video = _comings_and_goings(tmp_path / "come-and-go.mp4")
    results = list(background_pipeline.run(open_source(video), live=False))
    assert len(results) == FRAMES
    right = [any(b[0] > 320 for b in r.faces.xyxy) for r in results]
    shown = right.index(True)
    assert ENTER <= shown <= ENTER + 3, right
    dropped = next(k for k in range(shown, FRAMES) if not right[k])
    assert LEAVE <= dropped <= LEAVE + 3, right
    assert not any(right[dropped:])
    left_ids = {int(t) for r in results for b, t in zip(r.faces.xyxy, r.faces.track_id) if b[0] < 320}
    assert left_ids == {1}  # refitted every frame, the drifting face keeps its track
    assert sum(r.detected for r in results) < FRAMES  # most frames were tracked, not detected


def test_merge_keeps_confirmed_tracks_adds_new_faces_and_ends_the_rest():
    tracked = Faces.from_boxes(np.array([[0, 0, 100, 100], [300, 0, 400, 100]]), np.ones(2)).replace(
        track_id=np.array([1, 2]), landmarks_xy=np.zeros((2, 5, 2), np.float32))
    detected = Faces.from_boxes(np.array([[5, 0, 105, 100], [600, 0, 700, 100]]), np.ones(2))
    merged = merge_detections(tracked, detected)
    assert merged.track_id.tolist() == [1, -1]  # 1 confirmed, 2 not found (gone), one new face
    assert merged.xyxy[1].tolist() == [600, 0, 700, 100] and np.isnan(merged.landmarks_xy[1]).all()


def test_the_detector_thread_hands_back_the_frame_it_took(astronaut_bgr):
    bg = BackgroundDetector(lambda: HogDetector(min_face=70), max_lag_frames=1)
    try:
        assert bg.submit(7, astronaut_bgr)
        assert not bg.submit(8, astronaut_bgr)  # busy: the newest frame waits for the next turn
        index, faces = bg.take(current_index=9)  # two frames late: waited for
        assert index == 7 and len(faces) == 1
        assert bg.take(current_index=9) is None  # handed back once
    finally:
        bg.close()
