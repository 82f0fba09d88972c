"""The GUI on real Qt (offscreen), a real model, the real sample video."""
from __future__ import annotations

import time

import numpy as np
import pytest
from tests.app.app_checks import colour_share, count_frames
from tests.app.conftest import FRAME_TIMEOUT_MS, wait_frames
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from app.main_window import MainWindow
from app.settings import load_settings, open_qsettings
from app.video_view import qimage_to_bgr
from engine.model import available_providers, format_value
from engine.render import Renderer

def wait_faces(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.last_shown is not None and len(window.last_shown.result.faces) > 0,
                    timeout=FRAME_TIMEOUT_MS)


def test_without_a_camera_the_window_starts_on_the_sample_and_frames_arrive(make_window, qtbot):
    window = make_window()
    assert window.picker.current_spec() == "sample"
    wait_frames(qtbot, window, 5)
    assert window.is_running()
    assert window.last_shown.result.frame.source_id.endswith("sample.mp4")
    # The status line refreshes at most every STATUS_EVERY_S, not on every frame.
    qtbot.waitUntil(lambda: "fps" in window.stats_label.text(), timeout=FRAME_TIMEOUT_MS)
    stats = window.stats_label.text()
    assert "fps" in stats and "detect" in stats and "model" in stats and " ms" in stats
    assert "CPU" in stats and "dropped" not in stats  # a file plays every frame: nothing is dropped


def test_labels_are_drawn_on_the_faces_in_the_view(make_window, qtbot):
    window = make_window(source="sample")
    wait_faces(qtbot, window)
    shown = window.last_shown  # what the view paints now (no event is processed before grab)
    grabbed = qimage_to_bgr(window.view.grab().toImage())
    assert window.last_shown is shown
    faces = shown.result.faces
    fh, fw = shown.image_bgr.shape[:2]
    r = window.view.image_rect()
    s = r.width() / fw
    assert abs(r.height() / fh - s) < 0.01  # aspect ratio kept
    raw = shown.result.frame.image_bgr
    labels = Renderer().layout((fw, fh), faces)
    assert len(labels) == len(faces) > 0
    for i, label in enumerate(labels):
        x0, y0, x1, y1 = label.rect
        inner = grabbed[r.y() + round(y0 * s) + 2:r.y() + round(y1 * s) - 2,
                        r.x() + round(x0 * s) + 2:r.x() + round(x1 * s) - 2]
        assert colour_share(inner, label.color_bgr) > 0.4, f"label {i} not painted in its track colour"
        assert colour_share(raw[y0:y1, x0:x1], label.color_bgr) < 0.2  # the colour is ours, not the photo's
        bx0, by0, _, by1 = faces.xyxy[i]  # the box's left edge, below its label
        strip = grabbed[r.y() + round(by0 * s) + 4:r.y() + round(by1 * s) - 4,
                        r.x() + round(bx0 * s) - 2:r.x() + round(bx0 * s) + 3]
        assert colour_share(strip, label.color_bgr) > 0.15, f"box {i} edge not drawn"


def test_side_panel_lists_each_face_with_every_task(make_window, qtbot):
    window = make_window(source="sample")
    wait_faces(qtbot, window)
    faces, spec = window.last_shown.result.faces, window.pipeline.spec
    rows = window.face_panel.texts()
    assert len(rows) == len(faces)
    header = [window.face_panel.horizontalHeaderItem(c).text() for c in range(window.face_panel.columnCount())]
    assert header == ["face"] + [t.name for t in spec.tasks]
    for i, row in enumerate(rows):
        assert row[0] == f"#{int(faces.track_id[i])}"
        assert row[1:] == [format_value(t, faces.tasks[t.name], i) for t in spec.tasks]


def test_recording_writes_a_playable_annotated_video(make_window, qtbot, tmp_path):
    record_dir = tmp_path / "recordings"
    window = make_window(source="sample", record_dir=str(record_dir))
    wait_frames(qtbot, window, 2)
    window.record_action.trigger()
    assert window.record_action.isChecked()
    assert "Recording to" in window.message()
    # the recording starts with the worker's next frame: frames already on their way to the
    # window when the button was pressed are shown but not recorded, so count from its start
    qtbot.waitUntil(lambda: window._recording_since is not None, timeout=10_000)
    wait_frames(qtbot, window, 8)
    window.record_action.trigger()
    qtbot.waitUntil(lambda: window.last_recording is not None, timeout=10_000)
    path = window.last_recording
    assert path.parent == record_dir and path.suffix == ".mp4"
    assert f"Saved recording: {path}" in window.message()
    frames, size = count_frames(path)
    assert frames >= 8
    assert size == window.last_shown.result.frame.size_wh
    assert not window.record_action.isChecked()
    assert not list(record_dir.glob("*.part.mp4"))


def test_a_text_file_named_mp4_shows_the_error_and_the_window_stays_usable(make_window, qtbot, text_named_mp4):
    window = make_window(source="sample")
    wait_frames(qtbot, window, 1)
    window.open_file(text_named_mp4)
    qtbot.waitUntil(lambda: "not a readable video" in window.message(), timeout=10_000)
    assert window.message().startswith(str(text_named_mp4))
    assert window.error_box is not None and window.error_box.isVisible()
    assert str(text_named_mp4) in window.error_box.text()
    qtbot.waitUntil(lambda: not window.is_running(), timeout=5_000)
    window.error_box.close()
    window.picker.activated.emit(window.picker.findData("sample"))  # as if picked in the combo
    wait_frames(qtbot, window, 3)
    assert window.last_shown.result.frame.source_id.endswith("sample.mp4")


@pytest.mark.skipif("CUDAExecutionProvider" in available_providers(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_says_so_and_keeps_cpu(make_window, qtbot):
    window = make_window(source="sample", backend="cpu")
    wait_frames(qtbot, window, 1)
    before = window.pipeline
    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this onnxruntime has CUDA")
    assert not window.backend_actions["cuda"].isEnabled()  # the menu does not offer it ...
    window.set_backend("cuda")  # ... but a remembered or typed choice still gets the window's sentence
    qtbot.waitUntil(lambda: not window.is_loading() and window.error_box is not None, timeout=15_000)
    assert "the CUDA backend was requested but this onnxruntime has no CUDAExecutionProvider" in window.message()
    assert "choose Backend ▸ CPU" in window.message() and "--backend" not in window.message()  # the window's words
    assert window.pipeline is before and window.pipeline.provider == "CPUExecutionProvider"
    assert window.settings.backend == "cpu"
    assert window.backend_actions["cpu"].isChecked() and not window.backend_actions["cuda"].isChecked()
    assert load_settings(open_qsettings()).backend == "cpu"
    wait_frames(qtbot, window, 2)  # still playing on the old pipeline


def test_a_bad_model_is_refused_and_a_good_one_swapped_in(make_window, qtbot, model_without_description,
                                                         tiny_model_path):
    window = make_window(source="sample")
    wait_frames(qtbot, window, 1)
    before = window.pipeline
    window.load_model(model_without_description)
    qtbot.waitUntil(lambda: not window.is_loading() and window.error_box is not None, timeout=15_000)
    assert "no FaceAttr description" in window.message() and str(model_without_description) in window.message()
    assert window.pipeline is before
    window.load_model(tiny_model_path)
    qtbot.waitUntil(lambda: window.pipeline is not before, timeout=15_000)
    assert window.pipeline.spec.name == "tiny-test-fixture"
    assert window.settings.model_path == str(tiny_model_path)
    wait_frames(qtbot, window, 2)  # the source restarted on the new model


def test_pause_holds_the_picture_and_stop_joins_the_thread(make_window, qtbot):
    window = make_window(source="sample")
    wait_frames(qtbot, window, 2)
    window.pause()
    qtbot.wait(400)  # frames already in flight land
    held = window.frames_shown
    qtbot.wait(600)
    assert window.frames_shown == held
    assert window.play_action.isEnabled() and not window.pause_action.isEnabled()
    window.play()
    wait_frames(qtbot, window, 2)
    thread = window._run.thread
    window.stop()
    assert not thread.isRunning() and not window.is_running()
    assert window.play_action.isEnabled() and not window.stop_action.isEnabled()


def test_dropping_a_file_on_the_window_plays_it(make_window, qtbot, short_clip):
    window = make_window(source="sample")
    wait_frames(qtbot, window, 1)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(short_clip))])
    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, drop)
    assert window.picker.current_spec() == str(short_clip)
    qtbot.waitUntil(lambda: window.last_shown is not None
                    and window.last_shown.result.frame.source_id == str(short_clip), timeout=FRAME_TIMEOUT_MS)


def test_closing_remembers_the_source_and_the_next_window_starts_there(make_window, qtbot, short_clip,
                                                                      app_model_path):
    window = make_window(source=str(short_clip), detect_every=2)
    wait_frames(qtbot, window, 1)
    thread = window._run.thread
    window.close()
    assert not thread.isRunning()
    saved = load_settings(open_qsettings())
    assert saved.source == str(short_clip) and saved.model_path == str(app_model_path)
    assert saved.detect_every == 2 and saved.backend == "cpu" and saved.geometry
    again = make_window(**{k: getattr(saved, k) for k in ("source", "detect_every", "geometry")})
    assert again.picker.current_spec() == str(short_clip)
    assert again.detect_every_actions[2].isChecked()
    wait_frames(qtbot, again, 1)


def test_the_view_keeps_the_aspect_ratio(qtbot):
    from app.video_view import VideoView

    view = VideoView()
    qtbot.addWidget(view)
    view.resize(800, 300)
    view.set_frame(np.full((480, 640, 3), (0, 0, 255), np.uint8))
    r = view.image_rect()
    assert (r.width(), r.height()) == (400, 300) and r.x() == 200
    grabbed = qimage_to_bgr(view.grab().toImage())
    assert colour_share(grabbed[:, 210:590], (0, 0, 255), 5) == 1.0
    assert colour_share(grabbed[:, :190], (0, 0, 0), 5) == 1.0


def test_the_gui_entry_point_opens_the_window_and_plays_the_chosen_source(qapp, app_model_path):
    """``faceattr --model M --backend cpu --source sample``, through ``main`` and Qt's event loop."""
    from PySide6.QtCore import QTimer

    from app.__main__ import main

    seen: dict = {}
    deadline = time.monotonic() + 30

    def check() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if windows and (windows[0].frames_shown >= 3 or time.monotonic() > deadline):
            seen.update(frames=windows[0].frames_shown, spec=windows[0].picker.current_spec(),
                        provider=windows[0].pipeline and windows[0].pipeline.provider)
            windows[0].close()  # closing the last window ends the event loop
        elif time.monotonic() > deadline:
            qapp.quit()
        else:
            QTimer.singleShot(50, check)

    QTimer.singleShot(50, check)
    assert main(["--model", str(app_model_path), "--backend", "cpu", "--source", "sample"]) == 0
    assert seen["frames"] >= 3 and seen["spec"] == "sample" and seen["provider"] == "CPUExecutionProvider"
    saved = load_settings(open_qsettings())
    assert saved.model_path == str(app_model_path.resolve()) and saved.source == "sample"


def test_a_file_that_breaks_midway_plays_its_frames_then_says_why_it_ended(make_window, qtbot, truncated_clip):
    window = make_window(source="sample")
    wait_frames(qtbot, window, 1)
    window.open_file(truncated_clip)
    qtbot.waitUntil(lambda: "truncated or damaged" in window.message(), timeout=FRAME_TIMEOUT_MS)
    assert window.message().startswith(f"{truncated_clip}: ended early at frame ")
    assert window.last_shown.result.frame.source_id == str(truncated_clip)
    assert window.error_box is not None and not window.is_running()
    window.play()  # plays it again from the start: the window is still usable
    wait_frames(qtbot, window, 2)


def test_the_shipped_models_menu_lists_the_default_first_and_loads_the_thesis_model(make_window, qtbot):
    from engine.assets import default_model_path

    thesis = default_model_path().parent / "thesis" / "faceattr-utkface-coral.onnx"
    if not thesis.is_file():
        pytest.skip(f"{thesis} is not in this checkout")
    window = make_window(source="sample")
    wait_frames(qtbot, window, 1)
    actions = {a.text(): a for a in window.menus.shipped_menu.actions()}
    assert list(actions)[0].startswith("default: ")
    before = window.pipeline
    actions["thesis: faceattr-utkface-coral"].trigger()
    qtbot.waitUntil(lambda: window.pipeline is not before, timeout=15_000)
    assert window.settings.model_path == str(thesis)
    wait_frames(qtbot, window, 2)
