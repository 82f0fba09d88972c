"""Runs with ``overlap_network``: frame N+1 located on a thread of its own while frame N goes
through the network and smoothing. The records are those of the plain run, frame for frame (scene
cuts, stills, region checks, pipelined detection); a network error is the run's error in its
frame's place; ending a run early joins the locate thread."""
from __future__ import annotations

import itertools
import threading

import cv2
import numpy as np
import pytest

from engine.pipeline import EndReason, Pipeline
from engine.records import face_records
from engine.sources import open_source
from tests.engine.scenes import BLANK_FRAMES, SAMPLE_FRAMES, read_all_frames, twin, write_video


@pytest.fixture(scope="module")
def cut_clip(clip, tmp_path_factory):
    """The clip's faces, then a hard cut to the same frames mirrored, rolled and in other colours: tracks end mid-run."""
    frames = read_all_frames(clip)[BLANK_FRAMES:]
    mirrored = [np.ascontiguousarray(np.roll(f[:, ::-1, ::-1], f.shape[0] // 3, axis=0)) for f in frames[:12]]
    return write_video(tmp_path_factory.mktemp("cut") / "cut.mp4", frames[:12] + mirrored)


def _records(pipe: Pipeline, path, **run) -> tuple[list, list]:
    results = list(pipe.run(open_source(path), **run))
    return [face_records(r, pipe.spec) for r in results], [(r.frame.index, r.detected, r.new_scene) for r in results]


@pytest.mark.parametrize("settings", [dict(detect_every=1), dict(detect_every=3)], ids=["every frame", "every 3rd"])
def test_a_file_gets_the_plain_runs_records_frame_for_frame(pipeline, clip, settings):
    plain, overlapped = twin(pipeline, **settings), twin(pipeline, overlap_network=True, **settings)
    want, want_frames = _records(plain, clip)
    got, got_frames = _records(overlapped, clip)
    assert got_frames == want_frames and len(got_frames) == BLANK_FRAMES + len(SAMPLE_FRAMES)
    assert got == want and sum(map(len, want)) > 2 * len(SAMPLE_FRAMES)
    assert not all(detected for _, detected, _ in want_frames) or settings["detect_every"] == 1


def test_smoothed_labels_restart_at_a_shot_cut_as_in_the_plain_run(pipeline, cut_clip):
    want, want_frames = _records(twin(pipeline, smoothing=0.9), cut_clip)
    got, got_frames = _records(twin(pipeline, smoothing=0.9, overlap_network=True), cut_clip)
    assert [i for i, _, new in want_frames if new] == [0, 12]  # the cut is in it
    assert got_frames == want_frames and got == want


def test_pipelined_detection_and_the_overlap_together_give_the_same_records(pipeline, clip):
    want, _ = _records(twin(pipeline), clip)
    got, _ = _records(twin(pipeline, overlap_network=True), clip, pipelined=True)
    assert got == want


def test_photos_of_a_folder_each_start_afresh(pipeline, astronaut_bgr, tmp_path):
    for name, image in (("a.png", astronaut_bgr), ("b.png", np.ascontiguousarray(astronaut_bgr[:, ::-1])),
                        ("c.png", astronaut_bgr)):
        cv2.imwrite(str(tmp_path / name), image)
    want, _ = _records(twin(pipeline), tmp_path)
    got, frames = _records(twin(pipeline, overlap_network=True), tmp_path)
    assert got == want and all(len(r) == 1 for r in got) and all(new for _, _, new in frames)


class BreakingModel:
    """The pipeline's model, failing at its ``fail_at``-th call."""

    def __init__(self, model, fail_at: int) -> None:
        self.model, self.calls, self.fail_at = model, itertools.count(), fail_at
        self.spec = model.spec

    def __call__(self, faces, chips):
        if next(self.calls) == self.fail_at:
            raise RuntimeError("network broke")
        return self.model(faces, chips)


def test_a_network_error_ends_the_run_in_its_frames_place_and_joins_every_thread(pipeline, clip):
    pipe = twin(pipeline, overlap_network=True)
    pipe.model = BreakingModel(pipeline.model, fail_at=10)
    baseline = threading.active_count()
    source = open_source(clip)
    got = []
    run = pipe.run(source)
    with pytest.raises(RuntimeError, match="^network broke$"):
        for r in run:
            got.append(r.frame.index)
    assert got == list(range(10))  # every frame before the broken one, in order
    assert threading.active_count() == baseline and source.closed
    assert run.outcome.reason is EndReason.FAILED and run.outcome.detail == "RuntimeError: network broke"


def test_closing_the_run_early_joins_the_locate_thread(pipeline, clip):
    baseline = threading.active_count()
    source = open_source(clip)
    run = twin(pipeline, overlap_network=True).run(source)
    assert [r.frame.index for r in itertools.islice(run, 6)] == list(range(6))
    assert any(t.name.startswith("faceattr-locate") for t in threading.enumerate())
    run.close()
    assert threading.active_count() == baseline and source.closed
    assert run.outcome.reason is EndReason.STOPPED and run.outcome.frames == 6


class BreakingDetector:
    """The pipeline's detector, failing at its ``fail_at``-th call."""

    def __init__(self, detector, fail_at: int) -> None:
        self.detector, self.calls, self.fail_at = detector, itertools.count(), fail_at

    def __call__(self, image_bgr, pad: float = 0.0):
        if next(self.calls) == self.fail_at:
            raise RuntimeError("detector broke")
        return self.detector(image_bgr, pad=pad)


def test_an_error_on_the_locate_thread_ends_the_run_after_the_frames_before_it(pipeline, clip):
    pipe = twin(pipeline, overlap_network=True)
    pipe.detector = BreakingDetector(pipeline.detector, fail_at=7)
    baseline = threading.active_count()
    source = open_source(clip)
    run = pipe.run(source)
    got = []
    with pytest.raises(RuntimeError, match="^detector broke$"):
        for r in run:
            got.append(r.frame.index)
    assert got == list(range(7))
    assert threading.active_count() == baseline and source.closed
    assert run.outcome.reason is EndReason.FAILED and run.outcome.detail == "RuntimeError: detector broke"
