"""The command line: annotate, info and --self-test, with real files and a real model."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tests.app.app_checks import count_frames

from app.__main__ import main
from engine.assets import default_model_path, sample_video_path
from engine.model import FaceAttrModel, available_providers


def model_args(path) -> list[str]:
    return ["--model", str(path), "--backend", "cpu"]


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_annotate_writes_the_video_and_records_in_the_schema(short_clip, app_model_path, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["annotate", str(short_clip), "-o", str(out), "--jsonl", "--csv", *model_args(app_model_path)])
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    assert "1 of 1 file(s) annotated" in stdout and str(short_clip) in stdout
    frames, size = count_frames(out / "sample-30.mp4.annotated.mp4")
    assert frames == 30 and size == (640, 480)
    spec = FaceAttrModel.load(app_model_path, backend="cpu").spec
    records = [json.loads(line) for line in (out / "sample-30.mp4.jsonl").read_text().splitlines()]
    assert records
    keys = ["source", "frame", "time_s", "track_id", "box_xyxy", "score"]
    for t in spec.tasks:
        keys += [t.name, f"{t.name}_confidence"] + ([f"{t.name}_spread"] if t.kind in ("regression", "expectation") else [])
    truth_path = sample_video_path().with_name("sample_truth.jsonl")
    truth = [json.loads(line) for line in truth_path.read_text().splitlines()] if truth_path.is_file() else None
    for r in records:
        assert list(r) == keys
        assert 0 <= r["frame"] < 30 and r["track_id"] >= 0 and len(r["box_xyxy"]) == 4
        for t in spec.tasks:
            if t.kind in ("binary", "multiclass"):
                assert r[t.name] in t.labels and 0.0 <= r[f"{t.name}_confidence"] <= 1.0
            elif t.kind in ("regression", "expectation"):
                assert isinstance(r[t.name], float)
                assert t.kind != "expectation" or r[f"{t.name}_spread"] > 0  # a distribution has a spread
        if truth is not None:  # each face found lies where the sample put a face
            boxes = [f["xyxy"] for f in truth[r["frame"]]["faces"]]
            assert max(iou(r["box_xyxy"], b) for b in boxes) > 0.4
    header = (out / "sample-30.mp4.csv").read_text().splitlines()[0].split(",")
    assert header[:9] == ["source", "frame", "time_s", "track_id", "box_x0", "box_y0", "box_x1", "box_y1", "score"]


def test_one_bad_file_fails_alone_with_one_line_naming_it(short_clip, text_named_mp4, app_model_path,
                                                          tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["annotate", str(text_named_mp4), str(short_clip), "-o", str(out), "--jsonl",
               *model_args(app_model_path)])
    stdout, stderr = capsys.readouterr()
    assert rc == 1
    errors = [line for line in stderr.splitlines() if line.startswith("faceattr: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"faceattr: error: {text_named_mp4}: not a readable video (")
    assert "Traceback" not in stderr
    assert (out / "sample-30.mp4.annotated.mp4").is_file() and (out / "sample-30.mp4.jsonl").stat().st_size > 0
    assert not list(out.glob("not-a-video*"))
    assert "1 of 2 file(s) annotated, 1 failed" in stdout and "FAILED:" in stdout


def test_annotate_with_a_model_without_description_fails_in_one_line(short_clip, model_without_description,
                                                                     tmp_path, capsys):
    rc = main(["annotate", str(short_clip), "-o", str(tmp_path), *model_args(model_without_description)])
    _, stderr = capsys.readouterr()
    assert rc == 1
    assert stderr.strip().splitlines() == [
        f"faceattr: error: {model_without_description}: no FaceAttr description (ONNX metadata key 'faceattr' "
        "is missing); export models with `python -m training.export`"]


def test_annotate_refuses_to_write_nothing(short_clip, tmp_path, capsys):
    assert main(["annotate", str(short_clip), "-o", str(tmp_path), "--no-video"]) == 2
    assert capsys.readouterr().err.startswith("faceattr: error: nothing to write")


def test_info_prints_versions_providers_cameras_and_the_model_description(tiny_model_path, capsys):
    rc = main(["info", *model_args(tiny_model_path)])
    stdout, _ = capsys.readouterr()
    assert rc == 0
    lines = dict(line.split(":", 1) for line in stdout.splitlines() if line[:1].isalpha() and ":" in line)
    for name in ("faceattr", "numpy", "opencv", "dlib", "onnxruntime", "PySide6", "cameras"):
        assert lines[name].strip() and "not installed" not in lines[name]
    assert [p.strip() for p in lines["providers"].split(",")] == available_providers()
    assert "provider in use: CPUExecutionProvider" in stdout
    description = json.loads(stdout[stdout.index("description:\n") + 13:stdout.index("\ntasks:")])
    assert description["name"] == "tiny-test-fixture"
    assert [t["name"] for t in description["tasks"]] == ["gender", "race", "age", "age_bins"]


def test_info_with_a_missing_model_says_so_in_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.onnx"
    assert main(["info", "--model", str(missing)]) == 1
    assert capsys.readouterr().err.strip() == f"faceattr: error: {missing}: model file not found"


def test_self_test_runs_headless_on_the_sample_and_exits_0(repo_root, app_model_path, sample_path):
    args = [] if app_model_path == default_model_path() else ["--model", str(app_model_path)]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-m", "app", "--self-test", "--frames", "30", *args],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.strip()
    assert line.startswith("faceattr self-test: OK: 30 frames of sample.mp4") and "\n" not in line
    assert " fps on CPUExecutionProvider" in line or "ExecutionProvider" in line


def test_self_test_fails_with_the_reason_and_exit_1(model_without_description, capsys):
    assert main(["--self-test", "--model", str(model_without_description)]) == 1
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"faceattr self-test: FAILED: {model_without_description}: no FaceAttr description")


@pytest.mark.skipif("CUDAExecutionProvider" in available_providers(), reason="this machine has CUDA")
def test_info_names_a_missing_cuda_backend(tiny_model_path, capsys):
    assert main(["info", "--model", str(tiny_model_path), "--backend", "cuda"]) == 1
    assert "the CUDA backend was requested" in capsys.readouterr().err


def test_a_truncated_video_keeps_its_annotated_frames_and_fails(truncated_clip, app_model_path, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["annotate", str(truncated_clip), "-o", str(out), "--jsonl", *model_args(app_model_path)])
    stdout, stderr = capsys.readouterr()
    assert rc == 1
    assert f"faceattr: error: {truncated_clip}: ended early at frame " in stderr
    frames, _ = count_frames(out / "truncated.mp4.annotated.mp4")
    assert 0 < frames < 40  # what was annotated before the break is kept
    assert "(kept: " in stdout


def test_info_piped_into_a_reader_that_stops_early_prints_no_traceback(repo_root):
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "app", "info"], cwd=repo_root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()  # read one line, then leave like `| head -1`
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in stderr
