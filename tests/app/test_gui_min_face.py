"""The smallest face size in the window: Detector ▸ Smallest face and ``--min-face``;
the Detector menu lists the engine's registered detectors."""
from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.main_window import MainWindow
from app.settings import load_settings, open_qsettings
from engine.detect import DETECTOR_TITLES, DETECTORS
from tests.app.conftest import FRAME_TIMEOUT_MS, wait_frames


def menu_texts(menu) -> list[str]:
    return [a.text() for a in menu.actions() if not a.isSeparator()]


def test_the_detector_menu_lists_the_engines_detectors_and_the_face_sizes(make_window):
    window = make_window(start=False, source="sample")
    detector_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Detector")
    assert list(window.detector_actions) == list(DETECTORS)
    assert [window.detector_actions[d].text() for d in DETECTORS] == [DETECTOR_TITLES[d] for d in DETECTORS]
    assert window.min_face_menu.title() == "Smallest face"
    assert window.min_face_menu.menuAction() in detector_menu.actions()
    assert menu_texts(window.min_face_menu) == ["24 px", "40 px", "60 px (default)", "80 px", "120 px"]
    assert [px for px, a in window.min_face_actions.items() if a.isChecked()] == [60]


def test_choosing_a_face_size_rebuilds_the_pipeline_on_the_same_source_and_is_remembered(
        make_window, qtbot, short_clip):
    window = make_window(source=str(short_clip))
    wait_frames(qtbot, window, 1)
    before = window.pipeline
    assert before.config.min_face == 60
    window.min_face_actions[80].trigger()
    qtbot.waitUntil(lambda: window.pipeline is not before, timeout=15_000)
    assert window.pipeline.config.min_face == 80 and window.pipeline.detector.min_face == 80
    assert window.min_face_actions[80].isChecked() and not window.min_face_actions[40].isChecked()
    assert load_settings(open_qsettings()).min_face == 80
    assert window.picker.current_spec() == str(short_clip)
    wait_frames(qtbot, window, 2)  # the same source, restarted on the new pipeline
    assert window.last_shown.result.frame.source_id == str(short_clip)


def test_a_remembered_face_size_off_the_menu_gets_its_own_checked_entry(make_window):
    window = make_window(start=False, source="sample", min_face=32)
    assert menu_texts(window.min_face_menu)[1] == "32 px"
    assert [px for px, a in window.min_face_actions.items() if a.isChecked()] == [32]


def test_min_face_on_the_command_line_sets_the_pipeline_and_is_remembered(qapp, app_model_path):
    from app.__main__ import main

    seen: dict = {}
    deadline = time.monotonic() + FRAME_TIMEOUT_MS / 1000

    def check() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if windows and (windows[0].frames_shown >= 1 or time.monotonic() > deadline):
            window = windows[0]
            seen.update(frames=window.frames_shown, min_face=window.pipeline and window.pipeline.config.min_face,
                        checked=[px for px, a in window.min_face_actions.items() if a.isChecked()])
            window.close()
        elif time.monotonic() > deadline:
            qapp.quit()
        else:
            QTimer.singleShot(50, check)

    QTimer.singleShot(50, check)
    assert main(["--model", str(app_model_path), "--backend", "cpu", "--source", "sample", "--min-face", "60"]) == 0
    assert seen == {"frames": seen["frames"], "min_face": 60, "checked": [60]} and seen["frames"] >= 1
    assert load_settings(open_qsettings()).min_face == 60


@pytest.mark.parametrize("value", ["4", "5000", "big"])
def test_a_min_face_out_of_range_is_a_usage_error(value, capsys):
    from app.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["--min-face", value])
    assert exit_.value.code == 2
    assert "--min-face" in capsys.readouterr().err
