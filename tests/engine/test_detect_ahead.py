"""Pipelined file runs (engine/detect_ahead.py, annotate's writer thread): the same records,
byte for byte, as the sequential path; errors in a detector or writer thread are the run's
error (no hang); stopping mid-file joins every thread."""
from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.annotate import annotate_file, render_and_write_behind
from engine.detect_ahead import Plan
from engine.pipeline import EndReason, Pipeline
from engine.records import face_records
from engine.sources import open_source
from engine.types import Faces, Frame
from engine.write import WriteError
from tests.engine.scenes import BLANK_FRAMES, SAMPLE_FRAMES, make_scene, read_all_frames, twin


def _annotate_both(pipe: Pipeline, clip: Path, tmp_path: Path, video: bool) -> tuple[Path, Path]:
    outs = []
    for mode, pipelined in (("sequential", False), ("pipelined", True)):
        baseline = threading.active_count()
        summary = annotate_file(clip, tmp_path / mode, pipe, jsonl=True, csv=True, video=video, pipelined=pipelined)
        assert summary.ok and summary.frames == BLANK_FRAMES + len(SAMPLE_FRAMES), summary
        assert threading.active_count() == baseline  # capture, detector and writer threads joined
        outs.append(tmp_path / mode)
    return outs[0], outs[1]


def test_pipelined_annotation_writes_the_sequential_records_byte_for_byte(pipeline, clip, tmp_path):
    seq, pipe = _annotate_both(pipeline, clip, tmp_path, video=True)
    jsonl = (seq / "clip.mp4.jsonl").read_bytes()
    assert jsonl.count(b"\n") > 2 * len(SAMPLE_FRAMES)  # faces were found on the sample frames
    assert (pipe / "clip.mp4.jsonl").read_bytes() == jsonl
    assert (pipe / "clip.mp4.csv").read_bytes() == (seq / "clip.mp4.csv").read_bytes()
    drawn_seq, drawn_pipe = (read_all_frames(d / "clip.mp4.annotated.mp4") for d in (seq, pipe))
    assert len(drawn_pipe) == len(drawn_seq) == BLANK_FRAMES + len(SAMPLE_FRAMES)
    assert all(np.array_equal(a, b) for a, b in zip(drawn_seq, drawn_pipe))


def test_with_detection_every_3rd_frame_the_records_are_the_same_too(pipeline, clip):
    every3 = twin(pipeline, detect_every=3)
    runs = [list(every3.run(open_source(clip), pipelined=p)) for p in (False, True)]
    records = [[face_records(r, every3.spec) for r in run] for run in runs]
    assert records[1] == records[0] and sum(map(len, records[0])) > 2 * len(SAMPLE_FRAMES)
    # the frames scanned in full are the same (planned ahead, the plan corrected by the pipeline)
    assert [r.detected for r in runs[1]] == [r.detected for r in runs[0]]
    assert not all(r.detected for r in runs[0])  # and frames without a full scan were there


def test_photos_of_a_folder_get_the_same_records(pipeline, astronaut_bgr, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), astronaut_bgr)
    cv2.imwrite(str(photos / "b.png"), np.ascontiguousarray(astronaut_bgr[:, ::-1]))
    texts = [annotate_file(photos, tmp_path / m, pipeline, video=False, pipelined=m == "p") for m in "sp"]
    assert all(s.ok and s.faces > 0 for s in texts)
    assert (tmp_path / "p" / "photos.jsonl").read_bytes() == (tmp_path / "s" / "photos.jsonl").read_bytes()


def test_the_plan_guesses_the_scans_and_follows_what_the_pipeline_did():
    grey = np.zeros((24, 32, 3), np.uint8)
    plan = Plan(detect_every=3, shot_cuts=False)
    assert [plan.wants(Frame(grey, i, 0.0, "x")) for i in range(7)] == [True, False, False, True, False, False, True]
    plan.note(4, since_detect=0, tracking=True)  # the pipeline scanned frame 4 (not 3: a face was lost)
    assert [plan.wants(Frame(grey, i, 0.0, "x")) for i in range(7, 10)] == [True, False, False]
    plan.note(5, since_detect=1, tracking=False)  # nothing tracked: it scans every frame
    assert [plan.wants(Frame(grey, i, 0.0, "x")) for i in range(10, 12)] == [True, True]
    assert all(Plan(1, True).wants(Frame(grey, i, 0.0, "x")) for i in range(5))


class FailingDetector:
    """Finds nothing, and fails at the ``fail_at``-th call shared by all its copies."""

    def __init__(self, calls, fail_at: int, delay_s: float = 0.0) -> None:
        self.calls, self.fail_at, self.delay_s = calls, fail_at, delay_s

    def __call__(self, image_bgr, pad: float = 0.0, scale: float | None = None) -> Faces:
        time.sleep(self.delay_s)
        if next(self.calls) == self.fail_at:
            raise RuntimeError("detector broke")
        return Faces()


def _failing(pipeline: Pipeline, fail_at: int, delay_s: float = 0.0, **config) -> Pipeline:
    calls = itertools.count()
    pipe = twin(pipeline, **config)
    pipe.detector = FailingDetector(itertools.count(), -1)  # the pipeline's own never fails
    pipe.make_detector = lambda: FailingDetector(calls, fail_at, delay_s)  # the detector threads'
    return pipe


def test_a_detector_thread_error_ends_the_run_in_its_frames_place_and_joins_the_threads(pipeline, clip):
    pipe = _failing(pipeline, fail_at=8)
    baseline = threading.active_count()
    source = open_source(clip)
    got = []
    run = pipe.run(source, pipelined=True)
    with pytest.raises(RuntimeError, match="^detector broke$"):
        for r in run:
            got.append(r.frame.index)
    # in order, up to the frame that failed (about the 9th: two threads may swap neighbours' calls)
    assert got == list(range(len(got))) and 4 <= len(got) <= 12 < BLANK_FRAMES + len(SAMPLE_FRAMES)
    assert threading.active_count() == baseline and source.closed
    assert run.outcome.reason is EndReason.FAILED and run.outcome.detail == "RuntimeError: detector broke"


def test_annotate_raises_a_detector_thread_error_instead_of_hanging(pipeline, clip, tmp_path):
    pipe = _failing(pipeline, fail_at=3)
    baseline = threading.active_count()
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="^detector broke$"):
        annotate_file(clip, tmp_path, pipe, jsonl=True)
    assert time.perf_counter() - t0 < 30 and threading.active_count() == baseline


def test_a_slow_detection_is_not_a_stalled_source(pipeline, tmp_path):
    scene = make_scene(tmp_path / "four.mp4", frames=4)
    pipe = _failing(pipeline, fail_at=-1, delay_s=0.6, stall_timeout_s=0.3, detect_threads=1)
    run = pipe.run(open_source(scene.path), pipelined=True)
    assert len(list(run)) == 4 and run.outcome.reason is EndReason.FINISHED


def test_stopping_mid_file_joins_the_detector_and_capture_threads(pipeline, clip):
    baseline = threading.active_count()
    source = open_source(clip)
    run = pipeline.run(source, pipelined=True)
    next(run)
    assert threading.active_count() == baseline + 1 + pipeline.config.detect_threads
    run.close()
    assert threading.active_count() == baseline and source.closed
    assert run.outcome.reason is EndReason.STOPPED


def test_a_stop_mid_file_finishes_what_was_computed_and_joins_every_thread(pipeline, clip, tmp_path):
    stop = threading.Event()
    baseline = threading.active_count()
    summary = annotate_file(clip, tmp_path, pipeline, jsonl=True,
                            progress=lambda done, total: stop.set() if done == 3 else None, stop=stop)
    assert summary.interrupted and 3 <= summary.frames < BLANK_FRAMES + len(SAMPLE_FRAMES)
    assert threading.active_count() == baseline
    assert len(read_all_frames(tmp_path / "clip.mp4.annotated.part.mp4")) == summary.frames


class RecordingSink:
    visual = False

    def __init__(self, fail_at: int | None = None) -> None:
        self.got, self.fail_at, self.thread = [], fail_at, None

    def write(self, result, image_bgr=None) -> None:
        self.thread = threading.current_thread().name
        if len(self.got) == self.fail_at:
            raise WriteError("out.jsonl: cannot write (no space left on device)")
        self.got.append(result)


def test_the_writer_thread_writes_every_result_in_order_even_when_inference_fails():
    def results():
        yield from range(7)
        raise ValueError("inference failed")

    sink = RecordingSink()
    with pytest.raises(ValueError, match="inference failed"):
        render_and_write_behind(results(), [sink], None)
    assert sink.got == list(range(7)) and sink.thread == "faceattr-write"


def test_a_writer_thread_error_stops_the_run_and_is_raised():
    taken = []

    def results():
        for i in itertools.count():
            taken.append(i)
            yield i

    baseline = threading.active_count()
    sink = RecordingSink(fail_at=3)
    with pytest.raises(WriteError, match="no space left"):
        render_and_write_behind(results(), [sink], None, depth=2)
    assert sink.got == [0, 1, 2] and len(taken) < 10  # stopped within the queue's depth
    assert threading.active_count() == baseline
