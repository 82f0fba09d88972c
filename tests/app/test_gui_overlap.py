"""Backend ▸ Overlap frames: on by default (each frame located while the one before is
labelled, the network on one thread); turning it off rebuilds the pipeline on the same
source and is remembered."""
from __future__ import annotations

from app.settings import load_settings, open_qsettings
from tests.app.conftest import wait_frames


def test_frames_overlap_by_default_and_the_item_sits_in_the_backend_menu(make_window):
    window = make_window(start=False, source="sample")
    backend_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Backend")
    item = window.menus.overlap_frames
    assert item in backend_menu.actions() and item.isCheckable() and item.isChecked()


def test_turning_the_overlap_off_rebuilds_the_pipeline_and_is_remembered(make_window, qtbot, short_clip):
    window = make_window(source=str(short_clip))
    wait_frames(qtbot, window, 1)
    before = window.pipeline
    assert (before.config.overlap_network, before.config.model_threads) == (True, 1)
    window.menus.overlap_frames.trigger()  # a checkable item: toggles
    qtbot.waitUntil(lambda: window.pipeline is not before, timeout=15_000)
    assert (window.pipeline.config.overlap_network, window.pipeline.config.model_threads) == (False, None)
    assert not window.menus.overlap_frames.isChecked()
    assert load_settings(open_qsettings()).overlap_frames is False
    wait_frames(qtbot, window, 2)  # the same source, restarted on the new pipeline
    assert window.last_shown.result.frame.source_id == str(short_clip)
