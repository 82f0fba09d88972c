"""Playback in the window (real Qt offscreen, real model, real files): seek bar, frame
steps, position kept across a back-end change, the status line's truth, no display."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from tests.app.conftest import FRAME_TIMEOUT_MS, wait_frames

REPO_ROOT = Path(__file__).resolve().parents[2]


def frame_of(path: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    for _ in range(index + 1):
        ok, image = cap.read()
        assert ok
    cap.release()
    return image


def wait_index(qtbot, window, index: int) -> None:
    qtbot.waitUntil(lambda: window.last_shown is not None and window.last_shown.result.frame.index == index
                    and window.is_paused(), timeout=FRAME_TIMEOUT_MS)


def test_seeking_shows_the_frame_asked_for_and_steps_go_one_frame_either_way(make_window, qtbot, short_clip):
    window = make_window(source=str(short_clip))
    wait_frames(qtbot, window, 2)
    assert window.seekbar.seekable() and window.seekbar.slider.maximum() == 29
    window.seek(17, paused=True)
    wait_index(qtbot, window, 17)
    assert np.array_equal(window.last_shown.result.frame.image_bgr, frame_of(short_clip, 17))
    assert window.seekbar.slider.value() == 17 and window.seekbar.time_label.text().startswith("0:00.")
    window.step_forward()
    wait_index(qtbot, window, 18)
    window.step_back()
    wait_index(qtbot, window, 17)
    assert np.array_equal(window.last_shown.result.frame.image_bgr, frame_of(short_clip, 17))
    assert "fps" not in window.stats_label.text()  # paused: no frame rate is claimed


def test_changing_the_backend_keeps_the_position(make_window, qtbot, short_clip):
    window = make_window(source=str(short_clip))
    wait_frames(qtbot, window, 1)
    window.seek(12, paused=True)
    wait_index(qtbot, window, 12)
    pipeline, shown = window.pipeline, window.last_shown
    window.set_backend("auto")
    qtbot.waitUntil(lambda: window.pipeline is not pipeline and window.last_shown is not shown, timeout=FRAME_TIMEOUT_MS)
    wait_index(qtbot, window, 12)  # the same frame again, drawn by the new pipeline, still paused
    assert window.settings.backend == "auto"


def test_a_folder_is_browsed_image_by_image(make_window, qtbot, photo_folder):
    window = make_window(source=str(photo_folder))
    wait_frames(qtbot, window, 1)
    window.seek(2, paused=True)
    wait_index(qtbot, window, 2)
    assert window.last_shown.result.frame.source_id.endswith("photo-2.jpg")
    assert window.seekbar.time_label.text() == "image 3 of 3"
    window.step_back()
    wait_index(qtbot, window, 1)
    assert window.last_shown.result.frame.source_id.endswith("photo-1.jpg")


def test_resuming_says_playing_again_and_speed_is_remembered(make_window, qtbot, sample_path):
    window = make_window(source="sample")
    wait_frames(qtbot, window, 1)
    window.pause()
    assert window.message() == "Paused"
    window.play()
    assert window.message().startswith("Playing ")
    window.change_speed(+1)
    assert window.settings.speed == 1.5 and window._run.worker.speed == 1.5
    assert window.seekbar.speed_label.text() == "1.5×"
    from app.settings import load_settings, open_qsettings
    assert load_settings(open_qsettings()).speed == 1.5


def test_an_opened_file_is_added_to_recent_files(make_window, qtbot, short_clip):
    window = make_window(source="sample")
    wait_frames(qtbot, window, 1)
    window.open_file(short_clip)
    qtbot.waitUntil(lambda: window.last_shown.result.frame.source_id == str(short_clip), timeout=FRAME_TIMEOUT_MS)
    assert window.settings.recent[0] == str(short_clip)
    assert [a.toolTip() for a in window.menus.recent_menu.actions()] == [str(short_clip)]


def test_without_a_display_the_app_says_so_and_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["FACEATTR_SETTINGS"] = str(tmp_path / "settings.ini")
    done = subprocess.run([sys.executable, "-m", "app"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0]
    assert "xvfb-run" in lines[0] and "QT_QPA_PLATFORM=offscreen" in lines[0]
    assert not (tmp_path / "settings.ini").exists()  # nothing started
