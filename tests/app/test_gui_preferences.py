"""File ▸ Preferences…: the folders for recordings and snapshots, remembered; Cancel changes nothing."""
from __future__ import annotations

from app.preferences import PreferencesDialog
from app.settings import default_record_dir, load_settings, open_qsettings


def test_preferences_set_the_folders_and_they_are_remembered(make_window, tmp_path):
    window = make_window(start=False)
    dialog = PreferencesDialog(window, window.settings, window.store.fileName())
    assert dialog.record_dir.text() == default_record_dir()  # the default is shown, not left blank
    dialog.record_dir.setText(str(tmp_path / "rec"))
    dialog.snapshot_dir.setText(str(tmp_path / "snaps"))
    window.settings = dialog.chosen()
    window._save()
    assert window.record_dir() == tmp_path / "rec" and window.snapshot_dir() == tmp_path / "snaps"
    remembered = load_settings(open_qsettings())
    assert (remembered.record_dir, remembered.snapshot_dir) == (str(tmp_path / "rec"), str(tmp_path / "snaps"))


def test_cancelling_preferences_changes_nothing(make_window, tmp_path):
    window = make_window(start=False, record_dir=str(tmp_path / "kept"))
    before = window.settings
    window.preferences_dialog(accept=False)
    assert window.settings == before and window.record_dir() == tmp_path / "kept"
