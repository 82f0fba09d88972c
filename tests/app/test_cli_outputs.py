"""`annotate` reports done only what was done: whole outputs, named errors, signals, locks.

Real files, the real engine, real subprocesses for signals, a real tmpfs for a full disk.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from tests.app.app_checks import count_frames

from app.__main__ import main
from engine.outdir import OutputFolderLock

REPO_ROOT = Path(__file__).resolve().parents[2]


def model_args(path) -> list[str]:
    return ["--model", str(path), "--backend", "cpu"]


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: a real full disk. Skips where mounting is not allowed (not root)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_fails_the_input_naming_the_output_and_calls_nothing_complete(
        sample_path, app_model_path, small_disk, capsys):
    out = small_disk / "out"
    rc = main(["annotate", str(sample_path), "-o", str(out), "--jsonl", *model_args(app_model_path)])
    stdout, stderr = capsys.readouterr()
    assert rc == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("faceattr: error:")]
    assert len(errors) == 1 and str(out / "sample.mp4.") in errors[0], errors  # names the output, not the input
    assert "space" in errors[0]
    assert "0 of 1 file(s) annotated, 1 failed" in stdout
    assert not (out / "sample.mp4.annotated.mp4").exists() and not (out / "sample.mp4.jsonl").exists()
    kept = out / "sample.mp4.part.jsonl"
    if kept.exists():  # what was written ends on a whole line
        text = kept.read_text()
        assert text == "" or text.endswith("\n")
        for line in text.splitlines():
            json.loads(line)


def test_sigterm_finishes_the_video_playable_and_exits_143(sample_path, app_model_path, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "app", "annotate", str(sample_path), "-o", str(out), "--jsonl",
                             *model_args(app_model_path)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = out / "sample.mp4.part.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (part.exists() and part.stat().st_size > 2000):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "faceattr: error: interrupted by SIGTERM in " in stderr and "Traceback" not in stderr
    assert "sample.mp4.annotated.part.mp4" in stderr  # says where the partial outputs are
    frames, size = count_frames(out / "sample.mp4.annotated.part.mp4")
    assert frames > 0 and size == (640, 480)  # finished: playable
    lines = part.read_text().splitlines()
    assert lines and all(json.loads(x)["source"] == str(sample_path) for x in lines)
    assert not (out / "sample.mp4.annotated.mp4").exists()  # nothing called complete


def test_a_second_run_into_a_folder_in_use_is_refused(short_clip, app_model_path, tmp_path, capsys):
    out = tmp_path / "out"
    with OutputFolderLock(out):
        rc = main(["annotate", str(short_clip), "-o", str(out), "--jsonl", *model_args(app_model_path)])
    stderr = capsys.readouterr().err
    assert rc == 2
    assert stderr.strip() == (f"faceattr: error: {out}: another faceattr run is writing into this folder "
                              f"(process {os.getpid()}); wait for it to end or choose another output folder")
    assert sorted(p.name for p in out.iterdir()) == [".faceattr.lock"]
    rc = main(["annotate", str(short_clip), "-o", str(out), "--jsonl", *model_args(app_model_path)])
    assert rc == 0  # released: the next run goes


def test_inputs_of_the_same_stem_or_name_get_outputs_of_their_own(short_clip, astronaut_bgr, app_model_path,
                                                                   tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    photo = a / "sample-30.jpg"  # same stem as the clip
    cv2.imwrite(str(photo), astronaut_bgr)
    cv2.imwrite(str(b / "sample-30.jpg"), astronaut_bgr[:, ::-1])  # same name, another folder
    out = tmp_path / "out"
    rc = main(["annotate", str(short_clip), str(photo), str(b / "sample-30.jpg"), "-o", str(out), "--jsonl",
               *model_args(app_model_path)])
    assert rc == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == ["sample-30-2.jpg.annotated.jpg", "sample-30-2.jpg.jsonl", "sample-30.jpg.annotated.jpg",
                     "sample-30.jpg.jsonl", "sample-30.mp4.annotated.mp4", "sample-30.mp4.jsonl"]
    record = json.loads((out / "sample-30-2.jpg.jsonl").read_text().splitlines()[0])
    assert record["source"] == str(b / "sample-30.jpg")


def test_a_folder_with_an_unreadable_image_exits_1_naming_it(astronaut_bgr, app_model_path, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), astronaut_bgr)
    (photos / "b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    rc = main(["annotate", str(photos), "-o", str(tmp_path / "out"), "--jsonl", *model_args(app_model_path)])
    stdout, stderr = capsys.readouterr()
    assert rc == 1
    assert f"faceattr: error: {photos}: 1 of 2 images could not be read (b.jpg)" in stderr
    assert "0 of 1 file(s) annotated, 1 failed" in stdout and "(kept: " in stdout


def test_a_newline_in_a_file_name_keeps_the_summary_one_line_per_file(short_clip, app_model_path, tmp_path, capsys):
    odd = tmp_path / "two\nlines.mp4"
    odd.write_bytes(short_clip.read_bytes())
    rc = main(["annotate", str(odd), "-o", str(tmp_path / "out"), "--jsonl", *model_args(app_model_path)])
    stdout = capsys.readouterr().out
    assert rc == 0
    lines = stdout.splitlines()
    assert len(lines) == 3 and "two\\nlines.mp4" in lines[1]  # header, the file, the count


def test_an_audio_only_file_is_called_that(app_model_path, tmp_path, capsys):
    import wave

    song = tmp_path / "song.wav"
    with wave.open(str(song), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes((np.sin(np.arange(8000) / 5) * 8000).astype(np.int16).tobytes())
    rc = main(["annotate", str(song), "-o", str(tmp_path / "out"), "--jsonl", *model_args(app_model_path)])
    assert rc == 1
    assert "no video stream" in capsys.readouterr().err


def test_exit_statuses_are_documented_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["annotate", "--help"])
    text = capsys.readouterr().out
    for status in ("0 ", "1 ", "2 ", "130", "143"):
        assert f"\n  {status}" in text
