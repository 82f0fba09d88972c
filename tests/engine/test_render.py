"""Renderer: boxes and labels drawn on a copy, placed so that no label covers a face or
another label, legible and inside the frame at any size; what is shown follows its fields.

Expectations are independent of the renderer's own helpers: texts are rebuilt from the
model's probabilities, and drawing is checked in pixels.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.model import FaceAttrModel
from engine.render import FONT, Renderer, track_color_bgr, value_text
from engine.types import Faces, Frame
from tests.conftest import build_tiny_model
from tests.engine.scenes import FACES_PD, portrait_photos


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


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _share(patch: np.ndarray, colour, tol: int) -> float:
    d = np.abs(patch.reshape(-1, 3).astype(int) - np.array(colour)).max(axis=1)
    return float((d <= tol).mean())


def group_photo(people: int = 7, height: int = 300) -> np.ndarray:
    """Portraits packed shoulder to shoulder in a row (the public-domain set when present,
    else the astronaut and her mirror image), on a wide frame with a margin above and below."""
    names = sorted(p.name for p in FACES_PD.glob("*.jpg"))[:people] if FACES_PD.is_dir() else []
    photos = [cv2.imread(str(FACES_PD / n)) for n in names] if len(names) == people else portrait_photos(people)
    row = []
    for photo in photos:
        h, w = photo.shape[:2]
        photo = photo[:, int(w * 0.12):int(w * 0.88)]  # cut the shoulders: the faces nearly touch
        row.append(cv2.resize(photo, (round(photo.shape[1] * height / h), height)))
    strip = np.concatenate(row, axis=1)
    frame = np.full((height + 2 * (height // 3), strip.shape[1] + 40, 3), 90, np.uint8)
    frame[height // 3:height // 3 + height, 20:20 + strip.shape[1]] = strip
    return frame


def test_draws_the_box_on_a_copy_and_leaves_the_input_alone(model, astronaut_bgr):
    before = astronaut_bgr.copy()
    faces = _faces(model, [[180, 80, 270, 170]], [3])
    out = Renderer()(astronaut_bgr, faces)
    assert np.array_equal(astronaut_bgr, before) and out is not astronaut_bgr
    colour = np.array(track_color_bgr(3))
    for y, x in ((125, 180), (125, 270), (80, 225), (170, 225)):  # middle of each edge
        assert np.abs(out[y, x].astype(int) - colour).max() <= 40, (y, x, out[y, x])
    assert np.array_equal(out[100:150, 200:250], before[100:150, 200:250])  # the face itself stays visible


def test_label_says_track_id_and_every_task_from_the_models_probabilities(model):
    faces = _faces(model, [[100, 100, 180, 180]], [12])
    expected = ["#12"]
    for task in model.spec.tasks:
        pred = faces.tasks[task.name]
        if task.kind in ("binary", "multiclass"):
            k = int(np.argmax(pred.probs[0]))
            expected.append(f"{task.labels[k]} {round(float(pred.probs[0, k]) * 100)}%")
        elif task.kind == "expectation":  # whole years ± one standard deviation of the distribution
            bins = np.array(task.bins)
            mean = float(pred.probs[0] @ bins)
            std = float(np.sqrt(pred.probs[0] @ (bins - mean) ** 2))
            expected.append(f"{mean:.0f}±{std:.0f} y")
        else:  # regression without a spread output: whole years
            expected.append(f"{float(pred.value[0]):.0f} y")
    assert Renderer().label_lines(faces, 0) == expected


def test_value_below_the_minimum_confidence_shows_as_a_question_mark(model):
    faces = _faces(model, [[100, 100, 180, 180]], [1])
    gender = faces.tasks["gender"]
    conf = float(gender.confidence[0])
    assert value_text(gender, 0, min_confidence=conf + 0.01) == "?"
    assert value_text(gender, 0, min_confidence=conf - 0.01).endswith("%")


def test_age_shows_its_spread_when_the_model_gives_one(tmp_path):
    spread_model = FaceAttrModel.load(build_tiny_model(tmp_path / "spread.onnx", spread=True), backend="cpu")
    faces = _faces(spread_model, [[100, 100, 180, 180]], [1])
    pred = faces.tasks["age"]
    spread = 1.0 / float(pred.confidence[0]) - 1.0  # the engine's confidence is 1 / (1 + spread)
    assert float(pred.spread[0]) == pytest.approx(spread, rel=1e-4)
    assert value_text(pred, 0) == f"{float(pred.value[0]):.0f}±{spread:.0f} y"


def test_label_pixels_are_drawn_in_the_track_colour(model):
    image = np.full((480, 640, 3), 30, np.uint8)
    faces = _faces(model, [[250, 200, 330, 280]], [5])
    (label,) = Renderer().layout((640, 480), faces)
    out = Renderer()(image, faces)
    x0, y0, x1, y1 = label.rect
    patch = out[y0:y1, x0:x1]
    assert _share(patch, track_color_bgr(5), 10) > 0.5 and 1 - _share(patch, track_color_bgr(5), 60) > 0.03


@pytest.mark.parametrize("size_wh", [(320, 240), (1920, 1080), (3840, 2160)])
def test_labels_stay_inside_the_frame_at_any_size(model, size_wh):
    w, h = size_wh
    s = h / 5
    corners = [[0, 0, s, s], [w - s, 0, w, s], [0, h - s, s, h], [w - s, h - s, w, h],
               [w / 2 - s / 2, h / 2 - s / 2, w / 2 + s / 2, h / 2 + s / 2]]
    faces = _faces(model, corners, [1, 2, 3, 4, 5])
    labels = Renderer().layout(size_wh, faces)
    assert len(labels) == 5
    for label in labels:
        x0, y0, x1, y1 = label.rect
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, label
        assert y1 - y0 >= len(label.lines) * label.text_height


def test_text_grows_with_the_frame(model):
    renderer = Renderer()
    small = renderer.layout((320, 240), _faces(model, [[100, 100, 160, 160]], [1]))[0]
    large = renderer.layout((1920, 1080), _faces(model, [[600, 400, 960, 760]], [1]))[0]
    assert small.text_height >= renderer.min_text_px
    assert large.text_height / small.text_height == pytest.approx(1080 / 240, rel=0.35)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_on_a_group_photo_no_label_covers_a_face_or_another_label(pipeline, scale):
    image = group_photo()
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    result = pipeline.process(Frame(image, 0, 0.0, "group.jpg", still=True))
    faces = result.faces
    assert len(faces) >= 5, f"the detector found {len(faces)} faces on the group photo"
    renderer = Renderer()
    labels = renderer.layout((image.shape[1], image.shape[0]), faces)
    assert sorted(lb.face_index for lb in labels) == list(range(len(faces)))
    boxes = [tuple(float(v) for v in b) for b in faces.xyxy]
    for a in labels:
        for j, box in enumerate(boxes):
            assert not _overlap(a.rect, box), f"label of face {a.face_index} covers face {j}"
        for b in labels:
            assert a is b or not _overlap(a.rect, b.rect), (a.rect, b.rect)
    out = renderer(image, faces)  # and the renderer draws exactly those rectangles
    for label in labels:
        x0, y0, x1, y1 = label.rect
        assert _share(out[y0:y1, x0:x1], label.color_bgr, 10) > 0.4, label


def test_hidden_tasks_are_not_drawn(model):
    image = np.full((480, 640, 3), 30, np.uint8)
    faces = _faces(model, [[250, 200, 330, 280]], [5])
    colour = track_color_bgr(5)

    def ink_width(renderer: Renderer) -> int:
        out = renderer(image, faces)
        (label,) = renderer.layout((640, 480), faces)
        x0, y0, x1, y1 = label.rect
        ink = np.abs(out[y0:y1, x0:x1].astype(int) - np.array(colour)).max(axis=2) > 60
        cols = np.flatnonzero(ink.any(axis=0))
        return int(cols[-1] - cols[0])

    all_shown = ink_width(Renderer())
    race = value_text(faces.tasks["race"], 0)
    scale, thickness, _, _ = Renderer().sizes(480)
    race_w = cv2.getTextSize(" · " + race, FONT, scale, thickness)[0][0]
    assert all_shown - ink_width(Renderer(hidden_tasks=frozenset({"race"}))) >= 0.8 * race_w
    # nothing hidden-only: with every task and the id hidden, only the box is drawn
    bare = Renderer(hidden_tasks=frozenset(t.name for t in model.spec.tasks), show_track_ids=False)
    out = bare(image, faces)
    outside = np.ones((480, 640), bool)
    outside[195:286, 245:336] = False
    assert np.array_equal(out[outside], image[outside])


def test_boxes_off_and_blurred_faces(model, astronaut_bgr):
    faces = _faces(model, [[180, 80, 270, 170]], [3])
    quiet = Renderer(show_boxes=False, show_track_ids=False, hidden_tasks=frozenset(t.name for t in model.spec.tasks))
    assert np.array_equal(quiet(astronaut_bgr, faces), astronaut_bgr)
    blurred = Renderer(blur_faces=True, show_boxes=False, show_track_ids=False,
                       hidden_tasks=frozenset(t.name for t in model.spec.tasks))(astronaut_bgr, faces)
    face, original = blurred[85:165, 185:265].astype(float), astronaut_bgr[85:165, 185:265].astype(float)
    detail = lambda a: np.abs(np.diff(a, axis=1)).mean()  # noqa: E731
    assert detail(face) < 0.5 * detail(original)  # the face is no longer recognisable
    assert np.array_equal(blurred[:70], astronaut_bgr[:70])  # the rest is untouched


def test_colours_are_stable_and_differ_between_tracks():
    assert track_color_bgr(4) == track_color_bgr(4)
    colours = {track_color_bgr(i) for i in range(1, 13)}
    assert len(colours) == 12
    assert track_color_bgr(-1) != track_color_bgr(1)


def test_no_faces_draws_nothing(model, astronaut_bgr):
    out = Renderer()(astronaut_bgr, Faces())
    assert np.array_equal(out, astronaut_bgr) and out is not astronaut_bgr
