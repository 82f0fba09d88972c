"""Sources in the window: no silent fallback, the remembered source kept, folders as photos.

Real Qt (offscreen), the real engine and model, real files; the command-line cases run
``python -m app`` as a real process.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QFileDialog

from app.main_window import MainWindow
from app.settings import load_settings, open_qsettings
from app.source_picker import is_available
from engine.sources import list_cameras
from tests.app.conftest import FRAME_TIMEOUT_MS, wait_frames

REPO_ROOT = Path(__file__).resolve().parents[2]


def remember_source(ini: Path, source: str) -> bytes:
    """Store ``source`` as the remembered one in the INI at ``ini``; its bytes afterwards."""
    store = QSettings(str(ini), QSettings.Format.IniFormat)
    store.setValue("source", source)
    store.sync()
    return ini.read_bytes()


def run_app(args: list[str], ini: Path, cwd: Path, timeout_s: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "FACEATTR_SETTINGS": str(ini),
           "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout_s)


# -- the command line ---------------------------------------------------------------------

def _unreadable_file(tmp_path: Path) -> str:
    path = tmp_path / "not-a-video.mp4"
    path.write_text("this is not a video, just text\n" * 20)
    return str(path)


@pytest.mark.parametrize("source, reason", [
    ("missing.mp4", "missing.mp4: no such file or folder"),
    ("camera:NOPE", "camera 'NOPE': no such camera"),
    ("camera:0", "camera '0': no such camera"),
    (_unreadable_file, "{}: not a readable video ("),
], ids=["missing-file", "unknown-camera", "camera-0", "unreadable-file"])
def test_a_source_that_cannot_be_opened_exits_2_with_one_line_and_keeps_the_remembered_one(
        source, reason, tmp_path, short_clip):
    if source == "camera:0" and list_cameras():
        pytest.skip("this machine has a camera")
    if callable(source):
        source = source(tmp_path)
        reason = reason.format(source)
    ini = tmp_path / "settings.ini"
    before = remember_source(ini, str(short_clip))
    done = run_app(["--source", source], ini, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"faceattr: error: {reason}"), done.stderr
    assert ini.read_bytes() == before  # no window ran: nothing saved, the source still remembered
    assert load_settings(QSettings(str(ini), QSettings.Format.IniFormat)).source == str(short_clip)


def test_source_folder_on_the_command_line_plays_each_photo_as_its_own_scene(qapp, app_model_path, photo_folder):
    """``faceattr --source FOLDER``: the folder's photos (not the sample), none tracked into the next."""
    from app.__main__ import main

    seen: dict = {"results": []}
    deadline = time.monotonic() + 60

    def check() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if windows:
            window = windows[0]
            shown = window.last_shown
            if shown is not None and all(shown.result is not r for r in seen["results"]):
                seen["results"].append(shown.result)
            if window.message().startswith("Finished") or time.monotonic() > deadline:
                seen.update(spec=window.picker.current_spec(), entry=window.picker.currentText(),
                            message=window.message())
                window.close()
                return
        elif time.monotonic() > deadline:
            qapp.quit()
            return
        QTimer.singleShot(20, check)

    QTimer.singleShot(20, check)
    assert main(["--model", str(app_model_path), "--backend", "cpu", "--source", str(photo_folder)]) == 0
    assert seen["spec"] == str(photo_folder) and seen["entry"] == f"Folder: {photo_folder.name}"
    assert seen["message"] == f"Finished: end of {photo_folder}"
    results = seen["results"]
    photos = sorted(str(p) for p in photo_folder.iterdir())
    assert [r.frame.source_id for r in results] == photos  # each photo once, in name order
    assert all(r.frame.still and r.new_scene for r in results)
    ids = [int(t) for r in results for t in r.faces.track_id]
    assert len(ids) >= len(photos) and len(set(ids)) == len(ids)  # no face carried to the next photo
    assert load_settings(open_qsettings()).source == str(photo_folder)  # it opened: remembered


# -- at start -----------------------------------------------------------------------------

@pytest.mark.parametrize("remembered, why", [
    ("{tmp}/deleted.mp4", "{tmp}/deleted.mp4 no longer exists"),
    ("camera:HD Webcam", "camera 'HD Webcam' is not connected"),
], ids=["file-deleted", "camera-unplugged"])
def test_a_remembered_source_that_is_gone_falls_back_to_the_sample_says_so_and_stays_remembered(
        make_window, qtbot, tmp_path, remembered, why):
    remembered, why = remembered.format(tmp=tmp_path), why.format(tmp=tmp_path)
    window = make_window(source=remembered)
    assert window.picker.current_spec() == "sample"
    qtbot.waitUntil(lambda: window.message().startswith(f"{why}; playing "), timeout=FRAME_TIMEOUT_MS)
    assert "sample.mp4 (" in window.message() and window.message().endswith(" instead")
    wait_frames(qtbot, window, 2)
    assert window.last_shown.result.frame.source_id.endswith("sample.mp4")
    assert load_settings(open_qsettings()).source == remembered
    window.close()
    assert load_settings(open_qsettings()).source == remembered


# -- while the window runs ----------------------------------------------------------------

def test_a_source_that_fails_to_open_is_an_error_in_the_window_and_the_remembered_one_stays(
        make_window, qtbot, short_clip, text_named_mp4):
    window = make_window(source=str(short_clip))
    wait_frames(qtbot, window, 1)
    assert load_settings(open_qsettings()).source == str(short_clip)
    window.open_file(text_named_mp4)
    qtbot.waitUntil(lambda: window.message_label.is_error(), timeout=10_000)
    assert window.message().startswith(f"{text_named_mp4}: not a readable video (")
    assert window.error_box is not None and window.error_box.isVisible()
    assert window.error_box.windowModality() == Qt.WindowModality.NonModal
    assert load_settings(open_qsettings()).source == str(short_clip)
    window.picker.activated.emit(window.picker.findData("sample"))  # the window is still usable
    wait_frames(qtbot, window, 2)
    assert load_settings(open_qsettings()).source == "sample"  # chosen and opened: now remembered


def test_open_folder_plays_the_folders_photos_each_on_its_own(make_window, qtbot, photo_folder, monkeypatch):
    window = make_window(source="sample")
    wait_frames(qtbot, window, 1)
    action = window.open_folder_action
    assert action.shortcut() == QKeySequence("Ctrl+Shift+O")
    assert action in window.menuBar().actions()[0].menu().actions()  # in the File menu
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(photo_folder))
    action.trigger()
    assert window.picker.current_spec() == str(photo_folder)
    assert window.picker.currentText() == f"Folder: {photo_folder.name}"
    qtbot.waitUntil(lambda: window.message() == f"Finished: end of {photo_folder}", timeout=FRAME_TIMEOUT_MS)
    shown = window.last_shown.result
    assert shown.frame.source_id == str(photo_folder / "photo-2.jpg") and shown.frame.still and shown.new_scene


def test_dropping_a_folder_on_the_window_plays_its_photos(make_window, qtbot, photo_folder):
    window = make_window(source="sample")
    wait_frames(qtbot, window, 1)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(photo_folder))])
    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(window, QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime,
                                              Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
    assert window.picker.currentText() == f"Folder: {photo_folder.name}"
    qtbot.waitUntil(lambda: window.last_shown is not None
                    and window.last_shown.result.frame.source_id.startswith(str(photo_folder)),
                    timeout=FRAME_TIMEOUT_MS)
    assert window.last_shown.result.frame.still


def test_existing_folders_are_available_sources(photo_folder, tmp_path):
    assert is_available(str(photo_folder), [])
    assert not is_available(str(tmp_path / "gone"), [])


def test_a_remembered_folder_plays_at_start_and_its_unreadable_photos_are_named(make_window, qtbot, photo_folder,
                                                                               tmp_path):
    import shutil

    folder = tmp_path / "some unreadable"
    shutil.copytree(photo_folder, folder)
    (folder / "photo-1.jpg").write_bytes(b"not a jpeg")
    window = make_window(source=str(folder))
    assert window.picker.currentText() == f"Folder: {folder.name}"
    qtbot.waitUntil(lambda: window.message().startswith("Finished"), timeout=FRAME_TIMEOUT_MS)
    assert window.message() == f"Finished: end of {folder}; {folder / 'photo-1.jpg'}: not a readable image, skipped"
    assert window.last_shown.result.frame.source_id == str(folder / "photo-2.jpg")
