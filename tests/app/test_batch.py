"""Batch mode of `annotate` (--jobs): same records as one process, a manifest that resumes,
one merged table. Real videos of real faces (tests/engine/scenes.py), the real engine and
the tiny real ONNX model, real worker processes."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.engine.scenes import make_scene

from app.__main__ import main
from engine.batch import CRASH_ONCE_ENV, MANIFEST_NAME

VIDEOS = 4
FRAMES = 12
REPO_ROOT = Path(__file__).resolve().parents[2]


def make_videos(folder: Path) -> list[Path]:
    """4 short 320x240 videos of two real portraits, each drifting at its own speed."""
    folder.mkdir(parents=True, exist_ok=True)
    return [make_scene(folder / f"clip{i}.mp4", frames=FRAMES, size_wh=(320, 240), drift_px=1.0 + i).path
            for i in range(VIDEOS)]


def annotate(videos, out: Path, model: Path, *extra: str) -> int:
    return main(["annotate", *map(str, videos), "-o", str(out), "--jsonl", "--csv", "--model", str(model),
                 "--backend", "cpu", *extra])


def records(out: Path) -> list[dict]:
    """Every per-file JSONL record in OUTDIR, sorted by source, frame and track."""
    rows = [json.loads(line) for p in sorted(out.glob("*.jsonl")) if p.name != MANIFEST_NAME
            for line in p.read_text().splitlines()]
    return sorted(rows, key=lambda r: (r["source"], r["frame"], r["track_id"]))


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    return make_videos(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="module")
def jobs1_out(videos, tiny_model_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("jobs1") / "out"
    assert annotate(videos, out, tiny_model_path, "--jobs", "1") == 0
    return out


def test_jobs_2_writes_exactly_the_records_and_outputs_of_jobs_1(videos, jobs1_out, tiny_model_path, tmp_path,
                                                                   capsys):
    out = tmp_path / "out"
    rc = annotate(videos, out, tiny_model_path, "--jobs", "2")
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    reference = records(jobs1_out)
    assert len(reference) >= VIDEOS * FRAMES  # two faces per frame, nearly all found
    assert {r["source"] for r in reference} == {str(v.absolute()) for v in videos}
    assert records(out) == reference
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name for p in jobs1_out.iterdir() if not p.name.startswith("."))
    assert not list(out.glob("*.part*"))
    workers = {e["worker"].rsplit(":", 1)[1] for e in manifest_lines(out)}
    assert str(os.getpid()) not in workers  # annotated in the worker processes, not here
    assert "4 of 4 file(s) annotated" in stdout


def test_merged_records_read_back_with_the_csv_writers_columns_and_every_row(jobs1_out):
    pq = pytest.importorskip("pyarrow.parquet", reason="records.parquet needs pyarrow (the cluster extra)")
    per_file = records(jobs1_out)
    header = (jobs1_out / "clip0.mp4.csv").read_text().splitlines()[0].split(",")
    table = pq.read_table(jobs1_out / "records.parquet")
    assert table.column_names == header and table.num_rows == len(per_file)
    merged_csv = list(csv.DictReader((jobs1_out / "records.csv").open()))
    assert list(merged_csv[0]) == header and len(merged_csv) == len(per_file)
    rows = sorted(table.to_pylist(), key=lambda r: (r["source"], r["frame"], r["track_id"]))
    for row, rec in zip(rows, per_file):
        assert row["source"] == rec["source"] and row["frame"] == rec["frame"]
        assert [row["box_x0"], row["box_y0"], row["box_x1"], row["box_y1"]] == rec["box_xyxy"]
        assert row["gender"] == rec["gender"] and row["age"] == rec["age"]
    try:
        import pandas
    except ImportError:
        return
    frame = pandas.read_parquet(jobs1_out / "records.parquet")
    assert list(frame.columns) == header and len(frame) == len(per_file)


def test_a_rerun_skips_every_done_file_and_force_redoes_them(videos, tiny_model_path, tmp_path, capsys):
    out = tmp_path / "out"
    assert annotate(videos, out, tiny_model_path, "--jobs", "1") == 0
    first = records(out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("clip*")}
    capsys.readouterr()
    assert annotate(videos, out, tiny_model_path, "--jobs", "1") == 0
    stdout, stderr = capsys.readouterr()
    assert f"{VIDEOS} of {VIDEOS} input(s) already done" in stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("clip*")} == stamps  # nothing rewritten
    assert len(manifest_lines(out)) == VIDEOS and "4 of 4 file(s) annotated" in stdout
    assert records(out) == first
    assert annotate(videos, out, tiny_model_path, "--jobs", "1", "--force") == 0
    assert "already done" not in capsys.readouterr().err
    assert len(manifest_lines(out)) == 2 * VIDEOS and records(out) == first


def test_a_failed_input_is_retried_and_a_changed_input_redone(videos, tiny_model_path, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video\n")
    out = tmp_path / "out"
    inputs = [videos[0], videos[1], bad]
    assert annotate(inputs, out, tiny_model_path, "--jobs", "1") == 1
    stderr = capsys.readouterr().err
    assert [line for line in stderr.splitlines() if "error" in line] == [
        line for line in stderr.splitlines() if line.startswith(f"faceattr: error: {bad}: ")]
    st = videos[1].stat()
    os.utime(videos[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # "changed" since
    try:
        assert annotate(inputs, out, tiny_model_path, "--jobs", "1") == 1
    finally:
        os.utime(videos[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "1 of 3 input(s) already done" in capsys.readouterr().err
    runs = [Path(e["path"]).name for e in manifest_lines(out)]
    assert runs == ["clip0.mp4", "clip1.mp4", "broken.mp4", "clip1.mp4", "broken.mp4"]
    assert manifest_lines(out)[-1]["status"] == "failed" and "broken.mp4" in manifest_lines(out)[-1]["error"]


def test_a_dead_attempts_part_files_are_removed_and_its_records_not_kept(videos, jobs1_out, tiny_model_path,
                                                                         tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = json.dumps({"source": str(videos[0].absolute()), "frame": 0, "track_id": 99}) + "\n"
    (out / "clip0.mp4.part.jsonl").write_text(dead)  # what a worker killed mid-file leaves
    (out / "clip0.mp4.annotated.part.mp4").write_bytes(b"\0" * 100)
    assert annotate(videos[:1], out, tiny_model_path, "--jobs", "1") == 0
    assert not list(out.glob("*.part*"))
    assert records(out) == [r for r in records(jobs1_out) if r["source"] == str(videos[0].absolute())]


def test_cluster_without_ray_fails_in_one_line_naming_the_extra(videos, tiny_model_path, tmp_path, monkeypatch,
                                                                capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError, as when not installed
    rc = annotate(videos[:1], tmp_path / "out", tiny_model_path, "--cluster", "ray")
    stderr = capsys.readouterr().err
    assert rc == 1
    errors = [line for line in stderr.splitlines() if line.startswith("faceattr: error:")]
    assert len(errors) == 1 and "pip install -e '.[cluster]'" in errors[0], stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("extra", [["--cluster", "spark"], ["--cluster", "ray", "--jobs", "2"]])
def test_a_bad_cluster_option_is_a_usage_error(extra, tmp_path, capsys):
    rc = main(["annotate", "x.mp4", "-o", str(tmp_path / "out"), *extra])
    assert rc == 2
    assert capsys.readouterr().err.startswith("faceattr: error: --")
    assert not (tmp_path / "out").exists()


def test_sigterm_with_jobs_2_ends_both_running_files_as_part_outputs_and_exits_143(tiny_model_path, tmp_path):
    clips = [make_scene(tmp_path / f"long{i}.mp4", frames=150, size_wh=(320, 240), drift_px=0.5).path
             for i in range(2)]
    out = tmp_path / "out"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.Popen([sys.executable, "-m", "app", "annotate", *map(str, clips), "-o", str(out), "--jsonl",
                             "--jobs", "2", "--model", str(tiny_model_path), "--backend", "cpu"],
                            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parts = [out / f"long{i}.mp4.part.jsonl" for i in range(2)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(p.exists() and p.stat().st_size > 0 for p in parts):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("faceattr: error:")]
    assert len(errors) == 1 and errors[0].startswith("faceattr: error: interrupted by SIGTERM in ")
    for i, part in enumerate(parts):  # each worker finished its outputs as *.part.*: whole lines
        text = part.read_text()
        assert text.endswith("\n") and all(json.loads(line)["frame"] >= 0 for line in text.splitlines())
        assert (out / f"long{i}.mp4.annotated.part.mp4").is_file()
        assert not (out / f"long{i}.mp4.jsonl").exists()
    assert not (out / MANIFEST_NAME).exists() or all(e["status"] != "done" for e in manifest_lines(out))


def test_a_worker_process_killed_mid_file_is_retried_and_every_record_written_once(
        videos, jobs1_out, tiny_model_path, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "crash-once"
    marker.write_text("armed")  # the first worker to reach frame 3 of a file exits at once
    monkeypatch.setenv(CRASH_ONCE_ENV, str(marker))  # the spawned workers inherit it
    out = tmp_path / "out"
    rc = annotate(videos, out, tiny_model_path, "--jobs", "2")
    assert rc == 0, capsys.readouterr().err
    assert not marker.exists()  # the hook fired: a worker process really died mid-file
    assert records(out) == records(jobs1_out)
    assert not list(out.glob("*.part*"))
    assert sorted(Path(e["path"]).name for e in manifest_lines(out)) == [f"clip{i}.mp4" for i in range(VIDEOS)]
