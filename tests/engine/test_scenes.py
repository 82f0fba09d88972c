"""A label belongs to the face it is drawn on: scenes, cuts, appearance, any resolution.

On media composed from the public-domain portraits (tests/engine/composed.py) through the
real pipeline (dlib HOG, dlib alignment, ONNX Runtime) and the shipped default model.
"""
from __future__ import annotations

import itertools
import threading
import numpy as np
import pytest

from engine import assets
from engine.detect import HogDetector
from engine.pipeline import Pipeline, PipelineConfig
from engine.scenes import SAME_FACE_MIN, ShotCutDetector, chip_signatures
from engine.sources import ImageSource, Source, SourceError, open_source
from engine.track import iou_matrix
from engine.types import Frame
from tests.engine import composed

needs_portraits = pytest.mark.skipif(not composed.have_portraits(),
                                     reason="needs ../shared/data/faces-pd (40 different people)")


@pytest.fixture(scope="module")
def real_pipeline(default_model_path) -> Pipeline:
    return Pipeline.create(PipelineConfig(default_model_path, backend="cpu"))


def _labels(result) -> list[tuple]:
    faces = result.faces
    return [tuple(round(float(faces.tasks[name].value[i]), 4) for name in sorted(faces.tasks))
            for i in range(len(faces))]


@needs_portraits
def test_each_photo_of_a_folder_is_labelled_as_if_it_were_alone(real_pipeline):
    """The 40 portraits as one folder vs one by one: the same labels to the last digit."""
    folder = open_source(composed.FACES_PD)
    assert isinstance(folder, ImageSource)
    together = list(real_pipeline.run(folder))
    assert len(together) == 40 and all(r.new_scene and r.frame.still for r in together)
    for r in together:
        alone = list(real_pipeline.run(open_source(r.frame.source_id)))
        assert _labels(alone[0]) == _labels(r), r.frame.source_id
    assert [r.frame.index for r in together] == list(range(40))


@needs_portraits
def test_no_face_carries_labels_from_another_person_across_cuts_and_fades(real_pipeline, tmp_path):
    people = list(range(0, 24, 2))  # 12 portraits, alternating hard cuts and cross-fades
    frames, truth = composed.slideshow(people, hold=12, fade=10)
    video = composed.write_frames(tmp_path / "slideshow.mp4", frames)
    results = list(real_pipeline.run(open_source(video)))
    assert len(results) == len(truth)
    history: dict[int, set[int]] = {}  # track id -> the people it has shown (faces of one clear person)
    first_seen: dict[int, int] = {}
    wrong = []
    for k, (r, t) in enumerate(zip(results, truth)):
        if t.shown[0][1] == 1.0:  # a frame of one person alone: exactly one face
            assert len(r.faces) == 1, f"frame {k}: {len(r.faces)} faces"
        for box, tid in zip(r.faces.xyxy, r.faces.track_id.tolist()):
            first_seen.setdefault(tid, k)
            person = t.person_at(box)
            shown = history.setdefault(tid, set())
            if person is not None:
                if shown - {person}:
                    wrong.append((k, tid, person, sorted(shown)))
                shown.add(person)
            if t.cut:  # the first frame after a hard cut: a new track, labelled from itself alone
                assert first_seen[tid] == k, f"frame {k} after a cut kept track {tid}"
    assert wrong == [], f"frames labelled with another person's track: {wrong[:5]}"
    assert len(history) >= len(people)  # every person got a track of their own


def test_the_sample_video_keeps_its_tracks(real_pipeline):
    """The appearance test and the cut test break no track of the sample (faces that move,
    enter and leave)."""
    results = list(itertools.islice(real_pipeline.run(open_source(assets.sample_video_path())), 150))
    assert sum(r.new_scene for r in results) == 1  # only the first frame
    assert real_pipeline.tracker.refused == 0


def test_shot_cut_detector_fires_at_a_cut_and_not_for_motion_or_light(astronaut_bgr):
    cuts = ShotCutDetector()
    shifted = np.roll(astronaut_bgr, 6, axis=1)  # the camera pans a little
    brighter = np.clip(astronaut_bgr.astype(int) + 40, 0, 255).astype(np.uint8)  # a lamp goes on
    other = np.ascontiguousarray(astronaut_bgr[::-1, ::-1])  # another shot
    assert [cuts(f) for f in (astronaut_bgr, shifted, brighter, other)] == [False, False, False, True]


@needs_portraits
def test_signatures_tell_people_apart_and_keep_one_person_together():
    from engine.align import Aligner

    aligner, detector = Aligner.create(), HogDetector()
    chips = []
    for _, image, _ in composed.portraits()[:12]:
        _, c = aligner(image, detector(image, pad=0.2).largest())
        _, c2 = aligner(np.clip(image.astype(int) * 1.2 - 10, 0, 255).astype(np.uint8),
                        detector(image, pad=0.2).largest())  # the same photo, brighter
        chips.append((c[0], c2[0]))
    a = chip_signatures(np.stack([c for c, _ in chips]))
    b = chip_signatures(np.stack([c for _, c in chips]))
    sim = a @ b.T
    assert np.diag(sim).min() >= SAME_FACE_MIN
    assert (sim[~np.eye(len(sim), dtype=bool)] < SAME_FACE_MIN).all()


@needs_portraits
@pytest.mark.parametrize("size_wh, face_px", [((1280, 720), [40, 48, 56, 64, 72, 80, 90, 100]),
                                              ((1920, 1080), [40, 50, 60, 70, 80, 90, 100, 110])])
def test_faces_from_40_px_are_found_in_hd_frames(size_wh, face_px):
    detector = HogDetector(min_face=40)
    found = total = 0
    for seed in range(3):
        frame, truth = composed.crowd_frame(size_wh, face_px, seed=seed)
        faces = detector(frame)
        iou = iou_matrix(truth, faces.xyxy)
        found += int((iou.max(axis=1, initial=0) >= 0.4).sum())
        total += len(truth)
        assert len(faces) <= len(truth) + 1  # no flood of false faces
    assert found / total >= 0.98, f"{found} of {total}"


@needs_portraits
def test_tight_crops_are_found_once_padded():
    detector = HogDetector()
    crops = composed.tight_crops(shrink=0.1)
    padded = sum(len(detector(c, pad=0.2)) == 1 for _, c in crops)
    bare = sum(len(detector(c)) >= 1 for _, c in crops)
    assert padded / len(crops) >= 0.98, f"{padded} of {len(crops)}"
    assert bare < padded  # the padding is what finds them


def test_a_still_is_detected_with_padding(real_pipeline, astronaut_bgr):
    """The face cut so it touches the border is still found in a photo (a still frame)."""
    crop = astronaut_bgr[95:165, 190:255]  # her face, cut inside the hair line and the chin
    crop = np.ascontiguousarray(np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1))
    result = real_pipeline.process(Frame(crop, 0, 0.0, "crop.png", still=True))
    assert len(result.faces) == 1


def test_a_frame_without_faces_goes_through(real_pipeline):
    blank = np.full((240, 320, 3), 90, np.uint8)
    result = real_pipeline.process(Frame(blank, 0, 0.0, "blank"))
    assert len(result.faces) == 0


class _Stalling(Source):
    """A real source whose frames stop coming after two (a camera hung in its driver)."""

    is_live = True
    source_id = "stalling camera"

    def __init__(self, image_bgr) -> None:
        super().__init__()
        self._image = image_bgr
        self.release = threading.Event()

    def __iter__(self):
        for i in range(2):
            yield Frame(self._image, i, i / 30, self.source_id)
        self.release.wait(30)  # blocks like a hung read


def test_a_source_that_stops_delivering_frames_ends_the_run_with_its_name(tiny_model_path, astronaut_bgr):
    pipe = Pipeline.create(PipelineConfig(tiny_model_path, backend="cpu", stall_timeout_s=0.5))
    source = _Stalling(astronaut_bgr)
    got = []
    with pytest.raises(SourceError, match=r"^stalling camera: stopped delivering frames \(none for \d+ s\)"):
        for r in pipe.run(source):
            got.append(r)
    source.release.set()
    assert 1 <= len(got) <= 2  # live: a frame may be dropped for a newer one
