"""Renderer: boxes and labels drawn on a copy, legible and inside the frame at any size."""
from __future__ import annotations

import numpy as np
import pytest

from engine.model import FaceAttrModel, format_value
from engine.render import Renderer, track_color_bgr
from engine.types import Faces


@pytest.fixture(scope="module")
def model(tiny_model_path) -> FaceAttrModel:
    return FaceAttrModel.load(tiny_model_path, backend="cpu")


def _faces(model, xyxy, track_ids) -> Faces:
    """Faces at ``xyxy`` with the tiny model's real predictions on random-but-real chips."""
    n = len(xyxy)
    chips = np.random.default_rng(1).integers(0, 255, (n, 150, 150, 3), dtype=np.uint8)
    faces = Faces.from_boxes(np.asarray(xyxy, np.float32), np.ones(n, np.float32))
    faces = faces.replace(track_id=np.asarray(track_ids, np.int64))
    return model(faces, chips)


def test_draws_the_box_on_a_copy_and_leaves_the_input_alone(model, astronaut_bgr):
    before = astronaut_bgr.copy()
    faces = _faces(model, [[180, 80, 270, 170]], [3])
    out = Renderer()(astronaut_bgr, faces, model.spec)
    assert np.array_equal(astronaut_bgr, before) and out is not astronaut_bgr
    colour = np.array(track_color_bgr(3))
    for y, x in ((125, 180), (125, 270), (80, 225), (170, 225)):  # middle of each edge
        assert np.abs(out[y, x].astype(int) - colour).max() <= 40, (y, x, out[y, x])
    assert np.array_equal(out[100:150, 200:250], before[100:150, 200:250])  # the face itself stays visible


def test_label_says_track_id_and_every_task(model):
    faces = _faces(model, [[100, 100, 180, 180]], [12])
    lines = Renderer().label_lines(faces, model.spec, 0)
    expected = [format_value(t, faces.tasks[t.name], 0) for t in model.spec.tasks]
    assert lines == ["#12", *expected]
    assert any(s.endswith("%") for s in expected) and any(s.endswith(" y") for s in expected)


def test_label_pixels_are_drawn_in_the_track_colour(model):
    image = np.full((480, 640, 3), 30, np.uint8)
    faces = _faces(model, [[250, 200, 330, 280]], [5])
    (label,) = Renderer().layout((640, 480), faces, model.spec)
    out = Renderer()(image, faces, model.spec)
    x0, y0, x1, y1 = label.rect
    patch = out[y0:y1, x0:x1].reshape(-1, 3).astype(int)
    colour = np.array(track_color_bgr(5))
    share_bg = (np.abs(patch - colour).max(axis=1) <= 10).mean()
    share_ink = (np.abs(patch - colour).max(axis=1) > 60).mean()
    assert share_bg > 0.5 and share_ink > 0.03  # a filled background with text on it


@pytest.mark.parametrize("size_wh", [(320, 240), (1920, 1080)])
def test_labels_stay_inside_the_frame_at_any_size(model, size_wh):
    w, h = size_wh
    s = h / 5
    corners = [[0, 0, s, s], [w - s, 0, w, s], [0, h - s, s, h], [w - s, h - s, w, h],
               [w / 2 - s / 2, h / 2 - s / 2, w / 2 + s / 2, h / 2 + s / 2]]
    faces = _faces(model, corners, [1, 2, 3, 4, 5])
    renderer = Renderer()
    labels = renderer.layout(size_wh, faces, model.spec)
    assert len(labels) == 5
    for label in labels:
        x0, y0, x1, y1 = label.rect
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, label
        assert y1 - y0 >= len(label.lines) * label.text_height
    out = renderer(np.zeros((h, w, 3), np.uint8), faces, model.spec)
    assert out.shape == (h, w, 3)


def test_text_grows_with_the_frame(model):
    renderer = Renderer()
    small = renderer.layout((320, 240), _faces(model, [[100, 100, 160, 160]], [1]), model.spec)[0]
    large = renderer.layout((1920, 1080), _faces(model, [[600, 400, 960, 760]], [1]), model.spec)[0]
    assert small.text_height >= renderer.min_text_px
    assert large.text_height / small.text_height == pytest.approx(1080 / 240, rel=0.35)


def test_colours_are_stable_and_differ_between_tracks():
    assert track_color_bgr(4) == track_color_bgr(4)
    colours = {track_color_bgr(i) for i in range(1, 13)}
    assert len(colours) == 12
    assert track_color_bgr(-1) != track_color_bgr(1)


def test_no_faces_draws_nothing(model, astronaut_bgr):
    out = Renderer()(astronaut_bgr, Faces(), model.spec)
    assert np.array_equal(out, astronaut_bgr) and out is not astronaut_bgr


def test_labels_of_neighbouring_faces_do_not_cover_each_other(model):
    """The sample's layout: one face low in the frame just below another one's box."""
    faces = _faces(model, [[300, 305, 400, 410], [315, 50, 440, 175], [80, 50, 205, 175]], [3, 2, 4])
    labels = Renderer().layout((640, 480), faces, model.spec)
    rects = [label.rect for label in labels]
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
