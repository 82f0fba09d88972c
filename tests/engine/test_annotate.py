"""annotate_file: a playable annotated video with every frame plus per-face records; bad
inputs give a summary with the reason (never an exception) and keep partial outputs."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine import assets
from engine.annotate import AnnotateSummary, annotate_file
from engine.pipeline import Pipeline, PipelineConfig
from engine.write import move_index_to_front
from tests.engine.scenes import centre_inside, make_scene, read_all_frames


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("in") / "walk.mp4", frames=16)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_gets_an_annotated_copy_and_records_for_every_face(pipeline, scene, tmp_path):
    progress = []
    summary = annotate_file(scene.path, tmp_path / "out", pipeline, jsonl=True, csv=True,
                            progress=lambda done, total: progress.append((done, total)))
    out = tmp_path / "out"
    assert isinstance(summary, AnnotateSummary) and summary.ok and summary.end_reason is None
    assert summary.outputs == [out / "walk.mp4.annotated.mp4", out / "walk.mp4.jsonl", out / "walk.mp4.csv"]
    assert summary.frames == scene.frames and summary.faces == 2 * scene.frames
    assert progress == [(k, scene.frames) for k in range(1, scene.frames + 1)]
    assert summary.seconds > 0 and summary.fps > 0

    original, annotated = read_all_frames(scene.path), read_all_frames(out / "walk.mp4.annotated.mp4")
    assert len(annotated) == scene.frames and annotated[0].shape == original[0].shape
    changed = np.abs(annotated[0].astype(int) - original[0]).max(axis=2) > 60
    assert changed.mean() > 0.005  # boxes and labels are there ...
    for x0, y0, x1, y1 in scene.photo_xyxy[0].astype(int):  # ... and drawn on the photos
        assert changed[y0:y1, x0:x1].any()

    records = _jsonl(out / "walk.mp4.jsonl")
    assert len(records) == summary.faces
    assert sorted({r["frame"] for r in records}) == list(range(scene.frames))
    for r in records:
        assert r["source"] == str(scene.path)
        assert set(r) == {"source", "frame", "time_s", "track_id", "box_xyxy", "score", "gender", "gender_confidence",
                          "race", "race_confidence", "age", "age_confidence", "age_spread", "age_bins",
                          "age_bins_confidence", "age_bins_spread"}
        assert any(centre_inside(r["box_xyxy"], reg) for reg in scene.photo_xyxy[r["frame"]])
        assert r["time_s"] == pytest.approx(r["frame"] / scene.fps, abs=1e-3)
    with open(out / "walk.mp4.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["frame"]), int(r["track_id"])) for r in rows] == [(r["frame"], r["track_id"]) for r in records]


def test_only_the_asked_outputs_are_written(pipeline, scene, tmp_path):
    summary = annotate_file(scene.path, tmp_path, pipeline, jsonl=False, csv=True, video=False)
    assert summary.ok and summary.outputs == [tmp_path / "walk.mp4.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.mp4.csv"]


def test_missing_file_gives_a_summary_with_the_reason(pipeline, tmp_path):
    missing = tmp_path / "gone.mp4"
    summary = annotate_file(missing, tmp_path / "out", pipeline)
    assert summary.error == f"{missing}: no such file or folder"
    assert summary.frames == 0 and summary.outputs == [] and not (tmp_path / "out").exists()


def test_text_file_named_mp4_gives_a_summary_with_the_reason(pipeline, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("hello\n" * 100)
    summary = annotate_file(fake, tmp_path / "out", pipeline)
    assert summary.error.startswith(f"{fake}: not a readable video") and summary.outputs == []


def test_truncated_video_keeps_the_partial_outputs_and_says_why(pipeline, scene, tmp_path):
    whole = Path(shutil.copy(scene.path, tmp_path / "whole.mp4"))
    assert move_index_to_front(whole)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    summary = annotate_file(cut, tmp_path / "out", pipeline)
    assert summary.ok  # a truncated file is annotated as far as it goes
    assert 0 < summary.frames < scene.frames
    assert summary.end_reason == (f"{cut}: ended early at frame {summary.frames} of {scene.frames}: "
                                  "the file is truncated or damaged")
    assert len(read_all_frames(tmp_path / "out" / "cut.mp4.annotated.mp4")) == summary.frames
    assert max(r["frame"] for r in _jsonl(tmp_path / "out" / "cut.mp4.jsonl")) == summary.frames - 1


def test_unwritable_output_folder_gives_a_summary_with_the_reason(pipeline, scene, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    summary = annotate_file(scene.path, blocker / "out", pipeline)
    assert summary.error and str(blocker / "out") in summary.error and summary.outputs == []


def test_image_file_gets_an_annotated_image(pipeline, astronaut_bgr, tmp_path):
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut_bgr)
    summary = annotate_file(photo, tmp_path / "out", pipeline)
    out = tmp_path / "out"
    assert summary.ok and summary.frames == 1 and summary.faces == 1
    assert summary.outputs == [out / "astronaut.png.annotated.png", out / "astronaut.png.jsonl"]
    drawn = cv2.imread(str(out / "astronaut.png.annotated.png"))
    assert drawn.shape == astronaut_bgr.shape and not np.array_equal(drawn, astronaut_bgr)


def test_one_pipeline_serves_many_files(pipeline, scene, astronaut_bgr, tmp_path):
    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), astronaut_bgr)
    model = pipeline.model
    summaries = [annotate_file(p, tmp_path / "out", pipeline) for p in (photo, tmp_path / "nope.mp4", scene.path)]
    assert [s.ok for s in summaries] == [True, False, True]
    assert pipeline.model is model  # loaded once
    assert summaries[2].frames == scene.frames


@pytest.mark.slow
def test_sample_video_end_to_end(pipeline, tmp_path):
    sample = assets.sample_video_path()
    truth_path = sample.with_name("sample_truth.jsonl")
    if not (sample.is_file() and truth_path.is_file()):
        pytest.skip(f"{sample} or its truth file is not there yet")
    fast = Pipeline(PipelineConfig(pipeline.config.model_path, detect_every=3), pipeline.model,
                    pipeline.detector, pipeline.aligner)  # same model; detection every 3rd frame
    summary = annotate_file(sample, tmp_path, fast, jsonl=True)
    truth = [json.loads(line) for line in truth_path.read_text().splitlines()]
    assert summary.ok and summary.end_reason is None and summary.frames == len(truth)
    assert len(read_all_frames(tmp_path / "sample.mp4.annotated.mp4")) == len(truth)
    records = _jsonl(tmp_path / "sample.mp4.jsonl")
    assert len(records) == summary.faces
    matched = 0
    full = [(row["frame"], f) for row in truth for f in row["faces"] if f["inside"] >= 1.0]
    by_frame: dict[int, list] = {}
    for r in records:
        by_frame.setdefault(r["frame"], []).append(r["box_xyxy"])
    for frame, face in full:
        matched += any(centre_inside(b, face["xyxy"]) for b in by_frame.get(frame, []))
    assert matched >= 0.9 * len(full), (matched, len(full))


def test_default_model_annotates_the_sample(default_model_path, tmp_path):
    sample = assets.sample_video_path()
    if not sample.is_file():
        pytest.skip(f"{sample} is not there yet")
    pipe = Pipeline.create(PipelineConfig(default_model_path, backend="cpu", detect_every=3))
    summary = annotate_file(sample, tmp_path, pipe, jsonl=True)
    assert summary.ok and summary.faces > 0
    records = _jsonl(tmp_path / "sample.mp4.jsonl")
    for task in pipe.spec.tasks:
        if task.kind in ("binary", "multiclass"):
            assert {r[task.name] for r in records} <= set(task.labels)


def test_folder_of_images_gets_a_folder_of_annotated_images(pipeline, astronaut_bgr, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), astronaut_bgr)
    cv2.imwrite(str(photos / "b.png"), np.ascontiguousarray(astronaut_bgr[:, ::-1]))
    (photos / "c.jpg").write_text("not an image")
    (photos / "d.jpg").write_bytes(cv2.imencode(".jpg", astronaut_bgr)[1].tobytes())
    summary = annotate_file(photos, tmp_path / "out", pipeline)
    out = tmp_path / "out"
    assert not summary.ok and summary.frames == 3  # one image unreadable: the input is not all done
    assert summary.error == f"{photos}: 1 of 4 images could not be read (c.jpg)"
    assert summary.unreadable == (photos / "c.jpg",)
    assert summary.outputs == [out / "photos.annotated", out / "photos.jsonl"]  # the readable ones, complete
    assert sorted(p.name for p in (out / "photos.annotated").iterdir()) == ["a.jpg", "b.png", "d.jpg"]
    assert summary.warnings == (f"{photos / 'c.jpg'}: not a readable image, skipped",)
    records = _jsonl(out / "photos.jsonl")
    assert len(records) == summary.faces
    # each record names its image; the index is the image's place, so c.jpg shifts nothing
    assert {(r["source"], r["frame"]) for r in records} == {
        (str(photos / "a.jpg"), 0), (str(photos / "b.png"), 1), (str(photos / "d.jpg"), 3)}
    her_face = {0: (179, 83, 266, 170), 1: (512 - 266, 83, 512 - 179, 170)}  # b.png is mirrored
    for frame, region in her_face.items():
        assert any(centre_inside(r["box_xyxy"], region) for r in records if r["frame"] == frame)
    assert cv2.imread(str(out / "photos.annotated" / "b.png")).shape == astronaut_bgr.shape


def test_a_stop_from_another_thread_ends_the_input_like_ctrl_c(pipeline, scene, tmp_path):
    import threading

    stop = threading.Event()
    summary = annotate_file(scene.path, tmp_path / "out", pipeline, jsonl=True,
                            progress=lambda done, total: stop.set() if done == 3 else None, stop=stop)
    assert summary.interrupted and not summary.ok and 3 <= summary.frames < scene.frames
    out = tmp_path / "out"
    assert summary.outputs == [out / "walk.mp4.annotated.part.mp4", out / "walk.mp4.part.jsonl"]
    assert len(read_all_frames(out / "walk.mp4.annotated.part.mp4")) == summary.frames  # finished, playable
    assert not (out / "walk.mp4.jsonl").exists()
