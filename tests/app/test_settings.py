"""Settings survive a round trip through QSettings and never touch the user's store."""
from __future__ import annotations

from PySide6.QtCore import QSettings

from app.settings import LIVE_MIN_FACE, AppSettings, load_settings, open_qsettings, save_settings


def test_settings_round_trip_through_the_isolated_store(isolated_settings):
    chosen = AppSettings(source="camera:HD Webcam", model_path="/models/m.onnx", backend="cpu",
                         detector="cnn", upsample=1, min_face=60, detect_every=3, overlap_frames=False,
                         record_dir="/videos/faceattr", geometry=b"\x01\xd9\xd0\xcb geometry")
    store = open_qsettings()
    assert store.fileName() == str(isolated_settings)
    save_settings(store, chosen)
    assert isolated_settings.is_file()
    assert load_settings(QSettings(str(isolated_settings), QSettings.Format.IniFormat)) == chosen


def test_an_empty_store_gives_the_defaults():
    assert load_settings(open_qsettings()) == AppSettings()


def test_invalid_stored_values_fall_back_to_their_defaults(isolated_settings):
    store = QSettings(str(isolated_settings), QSettings.Format.IniFormat)
    for key, value in {"backend": "quantum", "detector": "eyes", "detect_every": "zero",
                       "upsample": 99, "min_face": 4, "source": "sample"}.items():
        store.setValue(key, value)
    store.sync()
    store.setValue("detect_max_width", 640)  # a key older versions wrote: ignored
    store.sync()
    loaded = load_settings(open_qsettings())
    assert loaded == AppSettings(source="sample")
    assert loaded.min_face == LIVE_MIN_FACE == 60  # the window's live default (the CLI's is 40)


def test_detector_names_come_from_the_engines_registry(isolated_settings):
    from engine.detect import DETECTORS

    store = QSettings(str(isolated_settings), QSettings.Format.IniFormat)
    for name in DETECTORS:
        store.setValue("detector", name)
        store.sync()
        assert load_settings(open_qsettings()).detector == name
    store.setValue("min_face", 1000)
    store.setValue("detect_max_width", 0)
    store.sync()
    assert load_settings(open_qsettings()).min_face == 1000
