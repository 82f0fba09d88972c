"""The status line's numbers and the source specs the picker remembers."""
from __future__ import annotations

import pytest

from app.settings import SAMPLE_SOURCE
from app.source_picker import is_available, resolve_spec
from app.status import LiveStats, window_words
from engine.assets import sample_video_path
from engine.sources import CameraInfo


def test_stats_give_rate_smoothed_latency_and_dropped_frames():
    stats = LiveStats()
    assert stats.fps is None
    for k in range(11):  # 11 results 0.1 s apart: 10 fps
        stats.add({"detect": 40.0 if k < 10 else 90.0, "model": 10.0}, dropped=1 if k == 5 else 0, now_s=k * 0.1)
    assert stats.fps == pytest.approx(10.0)
    assert stats.stage_ms["model"] == pytest.approx(10.0)
    assert stats.stage_ms["detect"] == pytest.approx(0.8 * 40 + 0.2 * 90)  # one slow frame moves it a little
    assert stats.text("CPUExecutionProvider", live=True) == \
        "10.0 fps  ·  detect 50 model 10 ms  ·  dropped 1  ·  CPU"
    stats.reset()
    assert stats.text(None, live=True) == "dropped 0"


def test_stats_say_only_what_is_true_now():
    stats = LiveStats()
    for k in range(5):
        stats.add({"model": 10.0}, dropped=0, now_s=k * 0.1)
    assert stats.text("CPUExecutionProvider") == "10.0 fps  ·  model 10 ms  ·  CPU"  # a file: no dropped count
    assert stats.text("CPUExecutionProvider", playing=False) == "model 10 ms  ·  CPU"  # paused, ended, a still
    assert stats.text(None, recording_s=72.4).startswith("● REC 1:12  ·  ")


def test_source_specs_resolve_to_what_open_source_takes(tmp_path):
    cams = [CameraInfo(2, "HD Webcam"), CameraInfo(4, "HD Webcam"), CameraInfo(6, "Capture Card")]
    assert resolve_spec(SAMPLE_SOURCE, cams) == (sample_video_path(), True)  # the sample loops
    assert resolve_spec("camera:Capture Card", cams) == (6, False)
    assert resolve_spec("camera:HD Webcam", cams) == (2, False)
    assert resolve_spec("camera:Gone", cams) == ("camera:Gone", False)  # open_source says it is missing
    video = tmp_path / "clip.mp4"
    assert resolve_spec(str(video), cams) == (video, False)
    assert not is_available(str(video), cams)
    video.write_bytes(b"x")
    assert is_available(str(video), cams) and is_available("camera:HD Webcam", cams)
    assert not is_available("camera:Gone", cams) and not is_available("", cams)


def test_command_line_advice_is_said_in_the_windows_words():
    assert window_words("no CUDA here; install onnxruntime-gpu or choose --backend cpu") == \
        "no CUDA here; install onnxruntime-gpu or choose Backend ▸ CPU"
    assert window_words("camera 0: no such camera") == "camera 0: no such camera"
