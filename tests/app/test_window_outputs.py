"""What the window writes and shows besides playback: snapshot, Export results (equal to
the CLI's), the View menu, unavailable back-ends, the face panel's selection, Help."""
from __future__ import annotations

import json

import cv2
import numpy as np
from tests.app.conftest import FRAME_TIMEOUT_MS, wait_frames

from app.__main__ import main
from engine.providers import backend_problem
from engine.providers import BACKENDS
from engine.records import face_records
from engine.render import Renderer


def wait_faces_paused(qtbot, window) -> None:
    qtbot.waitUntil(lambda: window.last_shown is not None and len(window.last_shown.result.faces) > 0,
                    timeout=FRAME_TIMEOUT_MS)
    window.pause()
    qtbot.wait(100)  # a frame already on its way is shown before the pause holds


def test_snapshot_writes_the_shown_frame_as_png_and_its_records_as_json(make_window, qtbot, tmp_path):
    window = make_window(source="sample", snapshot_dir=str(tmp_path / "snaps"))
    wait_faces_paused(qtbot, window)
    png, js = window.snapshot()
    assert png.parent == js.parent == tmp_path / "snaps" and png.stem == js.stem
    assert np.array_equal(cv2.imread(str(png)), window.shown_image)
    doc = json.loads(js.read_text())
    result = window.last_shown.result
    assert doc["frame"] == result.frame.index and doc["image"] == png.name
    assert doc["faces"] == json.loads(json.dumps(face_records(result, window.pipeline.spec)))
    assert len(doc["faces"]) == len(result.faces) > 0
    assert str(png) in window.message()


def test_export_results_equal_the_clis_records(make_window, qtbot, short_clip, tmp_path, app_model_path):
    window = make_window(source=str(short_clip))
    wait_frames(qtbot, window, 1)
    job = window.export_to(short_clip, tmp_path / "gui", show_progress=False)
    with qtbot.waitSignal(job.done, timeout=120_000) as done:
        pass
    qtbot.waitUntil(lambda: window.export_job is None)  # the window has taken the result
    summary = done.args[0]
    assert summary.ok and summary.frames == 30
    assert main(["annotate", str(short_clip), "-o", str(tmp_path / "cli"), "--jsonl", "--csv",
                 "--model", str(app_model_path), "--backend", "cpu",
                 "--min-face", str(window.settings.min_face)]) == 0  # the window's smallest face is the export's
    for name in (f"{short_clip.name}.jsonl", f"{short_clip.name}.csv"):
        assert (tmp_path / "gui" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert (tmp_path / "gui" / f"{short_clip.name}.annotated.mp4").is_file()
    assert window.message().startswith("Exported 30 frames")


def test_a_cancelled_export_leaves_nothing_behind(make_window, qtbot, short_clip, tmp_path):
    window = make_window(source=str(short_clip))
    wait_frames(qtbot, window, 1)
    job = window.export_to(short_clip, tmp_path / "out", show_progress=False)
    job.cancel()
    with qtbot.waitSignal(job.done, timeout=120_000) as done:
        pass
    qtbot.waitUntil(lambda: window.export_job is None)
    assert done.args[0].interrupted
    assert [p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")] == []
    assert window.message() == "Export cancelled; nothing was kept."


def test_view_menu_lists_the_models_tasks_and_hiding_one_redraws_without_it(make_window, qtbot):
    window = make_window(source="sample")
    wait_faces_paused(qtbot, window)
    spec = window.pipeline.spec
    assert list(window.menus.task_actions) == [t.name for t in spec.tasks]
    hidden = spec.tasks[-1].name
    window.menus.task_actions[hidden].setChecked(False)
    assert window.settings.hidden_tasks == (hidden,)
    result = window.last_shown.result
    expected = Renderer(hidden_tasks=frozenset({hidden}))(result.frame.image_bgr, result.faces)
    assert np.array_equal(window.shown_image, expected)  # the paused frame is redrawn at once
    assert not np.array_equal(window.shown_image, Renderer()(result.frame.image_bgr, result.faces))
    window.menus.view_boxes.setChecked(False)
    assert window.renderer().show_boxes is False and window._run.worker.renderer.show_boxes is False


def test_unavailable_backends_are_disabled_with_a_tooltip_saying_why(make_window):
    window = make_window(start=False)
    problems = {b: backend_problem(b) for b in BACKENDS}
    assert problems["cpu"] is None and problems["auto"] is None
    for backend, why in problems.items():
        action = window.backend_actions[backend]
        assert action.isEnabled() == (why is None), backend
        if why:
            assert action.toolTip() == f"Not available: {why}"


def test_selecting_a_face_in_the_panel_highlights_it(make_window, qtbot):
    window = make_window(source="sample")
    wait_faces_paused(qtbot, window)
    track = int(window.last_shown.result.faces.track_id[0])
    window.face_panel.select_track(track)
    assert window._highlight == track and window.renderer().highlight_track == track
    result = window.last_shown.result
    assert not np.array_equal(window.shown_image, Renderer()(result.frame.image_bgr, result.faces))


def test_help_shows_the_loaded_models_card_and_versions(make_window, qtbot):
    window = make_window()
    qtbot.waitUntil(lambda: window.pipeline is not None, timeout=FRAME_TIMEOUT_MS)
    about = window.show_about()
    text = about.layout().itemAt(0).widget().toPlainText()
    assert window.pipeline.spec.name in text and "onnxruntime" in text
    card = window.show_model_card().layout().itemAt(0).widget().toPlainText()
    assert card.strip()
    shortcuts = window.show_shortcuts().layout().itemAt(0).widget().toPlainText()
    assert "Space" in shortcuts and "Ctrl+Shift+O" in shortcuts
