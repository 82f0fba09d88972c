"""Writers: JSONL/CSV schema and values round-trip, flushed per frame; the mp4 plays back."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from engine.pipeline import Pipeline, PipelineConfig
from engine.types import Faces, Frame, FrameResult
from engine.write import (CsvWriter, JsonlWriter, VideoWriter, WriteError, face_records,
                          move_index_to_front, part_path)
from tests.engine.scenes import read_all_frames


@pytest.fixture(scope="module")
def pipeline(tiny_model_path) -> Pipeline:
    return Pipeline.create(PipelineConfig(tiny_model_path, backend="cpu"))


@pytest.fixture(scope="module")
def result(pipeline) -> FrameResult:
    """A real result: the astronaut, detected, aligned and run through the tiny model."""
    from skimage import data

    image = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    res = pipeline.process(Frame(image, 7, 0.23333, "astronaut"))
    assert len(res.faces) == 1
    return res


def _empty_result(index: int) -> FrameResult:
    return FrameResult(Frame(np.zeros((48, 64, 3), np.uint8), index, index / 30, "blank"), Faces())


def _expected_record(result: FrameResult, spec) -> dict:
    faces = result.faces
    rec = {"source": "astronaut", "frame": 7, "time_s": 0.233, "track_id": int(faces.track_id[0]),
           "box_xyxy": [round(float(v), 1) for v in faces.xyxy[0]], "score": round(float(faces.score[0]), 3)}
    for t in spec.tasks:
        p = faces.tasks[t.name]
        if t.kind in ("binary", "multiclass"):
            rec[t.name] = t.labels[int(p.value[0])]
        else:
            rec[t.name] = round(float(p.value[0]), 2)
        c = float(p.confidence[0])
        rec[f"{t.name}_confidence"] = None if math.isnan(c) else round(c, 3)
        if t.kind in ("regression", "expectation"):  # value tasks also write their spread (± one std)
            rec[f"{t.name}_spread"] = None if p.spread is None else round(float(p.spread[0]), 2)
    return rec


def test_records_carry_every_task_with_labels_as_strings_and_nan_as_null(result, pipeline):
    records = face_records(result, pipeline.spec)
    assert records == [_expected_record(result, pipeline.spec)]
    rec = records[0]
    assert rec["gender"] in ("male", "female") and rec["race"] in pipeline.spec.task("race").labels
    assert rec["age_confidence"] is None and rec["age_spread"] is None  # the tiny model's age has no spread output
    bins = np.asarray(pipeline.spec.task("age_bins").bins)  # an expectation: the std of its distribution
    probs = result.faces.tasks["age_bins"].probs[0]
    std = np.sqrt(probs @ (bins - probs @ bins) ** 2)
    assert rec["age_bins_spread"] == pytest.approx(std, abs=0.01) and rec["age_bins_spread"] > 0
    assert rec["age_bins_confidence"] == pytest.approx(1 / (1 + std), abs=1e-3)


def test_jsonl_round_trips_and_skips_frames_without_faces(tmp_path, result, pipeline):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path, pipeline.spec) as w:
        w.write(_empty_result(6))
        w.write(result)
        w.write(_empty_result(8))
        w.write(result)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and w.faces_written == 2
    assert [json.loads(line) for line in lines] == [_expected_record(result, pipeline.spec)] * 2
    assert "NaN" not in lines[0]


def test_jsonl_is_flushed_after_every_frame(tmp_path, result, pipeline):
    """A process killed mid-run keeps every finished frame: write, then die without closing."""
    path = tmp_path / "killed.jsonl"
    w = JsonlWriter(path, pipeline.spec)
    w.write(result)
    assert len(part_path(path).read_text().splitlines()) == 1  # visible before close, under the temporary name
    assert not path.exists()  # the final name only once complete
    assert w.close() == [path] and len(path.read_text().splitlines()) == 1 and not part_path(path).exists()


def test_jsonl_survives_a_killed_process(tmp_path, repo_root, tiny_model_path):
    script = textwrap.dedent(f"""
        import os, sys, numpy as np
        sys.path.insert(0, {str(repo_root)!r})
        from skimage import data
        from engine.pipeline import Pipeline, PipelineConfig
        from engine.types import Frame
        from engine.write import JsonlWriter
        p = Pipeline.create(PipelineConfig({str(tiny_model_path)!r}, backend="cpu"))
        img = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
        w = JsonlWriter({str(tmp_path / "k.jsonl")!r}, p.spec)
        for i in range(3):
            w.write(p.process(Frame(img, i, i / 30, "a")))
        os._exit(9)  # no close, no flush at exit
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert not (tmp_path / "k.jsonl").exists()  # never closed: not called complete
    lines = (tmp_path / "k.part.jsonl").read_text().splitlines()
    assert [json.loads(x)["frame"] for x in lines] == [0, 1, 2]


def test_csv_has_the_same_values_as_jsonl(tmp_path, result, pipeline):
    path = tmp_path / "out.csv"
    with CsvWriter(path, pipeline.spec) as w:
        w.write(result)
        w.write(_empty_result(8))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    row = rows[0]
    expected = _expected_record(result, pipeline.spec)
    assert list(row) == ["source", "frame", "time_s", "track_id", "box_x0", "box_y0", "box_x1", "box_y1", "score",
                         "gender", "gender_confidence", "race", "race_confidence", "age", "age_confidence",
                         "age_spread", "age_bins", "age_bins_confidence", "age_bins_spread"]
    assert [float(row[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1")] == expected["box_xyxy"]
    assert row["gender"] == expected["gender"] and row["race"] == expected["race"]
    assert float(row["age"]) == expected["age"] and row["age_confidence"] == "" and row["age_spread"] == ""
    assert float(row["age_bins_spread"]) == expected["age_bins_spread"]
    assert int(row["frame"]) == 7 and float(row["time_s"]) == 0.233


def test_text_writer_in_a_folder_that_cannot_exist_names_the_file(tmp_path, pipeline):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WriteError, match=r"out.jsonl: cannot write"):
        JsonlWriter(blocker / "out.jsonl", pipeline.spec)


def _frames(n, size_wh=(160, 120)):
    w, h = size_wh
    out = []
    for k in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        cv2.rectangle(img, (5 + 4 * k, 20), (45 + 4 * k, 60), (0, 200, 255), -1)
        out.append(img)
    return out


def test_video_plays_back_with_every_frame(tmp_path):
    path = tmp_path / "v.mp4"
    frames = _frames(15)
    with VideoWriter(path, 30, (160, 120)) as w:
        for f in frames:
            w.write(f)
        assert w.part_path.exists() and not path.exists()  # a half file never has the final name
    assert path.exists() and not w.part_path.exists() and w.frames_written == 15
    back = read_all_frames(path)
    assert len(back) == 15 and back[0].shape == (120, 160, 3)
    assert all(np.abs(a.astype(int) - b).mean() < 8 for a, b in zip(frames, back))
    assert path.read_bytes()[4:8] == b"ftyp" and b"moov" in path.read_bytes()[:2048]  # index first


def test_video_keeps_what_was_written_when_the_writer_fails_under_its_temporary_name(tmp_path):
    path = tmp_path / "crash.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(path, 30, (160, 120)) as w:
            for f in _frames(6):
                w.write(f)
            raise RuntimeError("inference failed")
    assert not path.exists()  # not complete: never under the final name
    assert len(read_all_frames(tmp_path / "crash.part.mp4")) == 6  # but playable, every frame


def test_video_letterboxes_frames_of_another_size(tmp_path):
    path = tmp_path / "mixed.mp4"
    with VideoWriter(path, 10, (160, 120)) as w:
        w.write(np.full((240, 160, 3), 255, np.uint8))  # tall white frame
    (back,) = read_all_frames(path)
    assert back.shape == (120, 160, 3)
    assert back[60, 80].mean() > 200 and back[60, 5].mean() < 40  # white centre, black bars


def test_video_writer_refuses_a_folder_it_cannot_write(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WriteError, match=r"v.mp4: cannot write"):
        VideoWriter(blocker / "v.mp4", 30, (160, 120))


def test_moving_the_index_to_the_front_keeps_every_frame(tmp_path):
    path = tmp_path / "plain.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (160, 120))
    for f in _frames(10):
        writer.write(f)
    writer.release()
    before = read_all_frames(path)
    assert move_index_to_front(path) is True
    assert move_index_to_front(path) is False  # already in front
    after = read_all_frames(path)
    assert len(after) == 10 and all(np.array_equal(a, b) for a, b in zip(before, after))


def test_video_is_h264_that_opencv_reads_back(tmp_path):
    pytest.importorskip("av", reason="PyAV (a dependency) brings the H.264 encoder")
    path = tmp_path / "h264.mp4"
    with VideoWriter(path, 30, (161, 121)) as w:  # odd sides: H.264 needs even ones (letterboxed)
        for f in _frames(5, size_wh=(161, 121)):
            w.write(f)
    assert w.codec.startswith("H.264") and w.size_wh == (162, 122)
    cap = cv2.VideoCapture(str(path))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode().lower()
    cap.release()
    assert fourcc in ("avc1", "h264")
    assert len(read_all_frames(path)) == 5
    assert path.read_bytes()[4:8] == b"ftyp" and b"moov" in path.read_bytes()[:4096]  # index in front
