"""The shipped binary copy of dlib's HOG face detector is dlib's own (benchmarks/startup.py times its load)."""
from __future__ import annotations

import tempfile

import dlib
import numpy as np
import pytest
from skimage import data

from engine import assets
from engine.detect import frontal_face_detector


def test_the_shipped_detector_file_is_byte_for_byte_what_dlib_saves_of_its_own():
    path = assets.hog_detector_path()
    assert path.is_file(), f"{path} missing: run tools/save_hog_detector.py"
    with tempfile.TemporaryDirectory() as tmp:
        theirs = f"{tmp}/dlib.svm"
        dlib.get_frontal_face_detector().save(theirs)
        assert open(theirs, "rb").read() == path.read_bytes()


def test_the_shipped_detector_finds_the_same_boxes_and_scores_as_dlibs_own():
    rgb = np.ascontiguousarray(data.astronaut())
    theirs = dlib.get_frontal_face_detector().run(rgb, 1, -0.5)
    ours = frontal_face_detector().run(rgb, 1, -0.5)
    assert [str(r) for r in ours[0]] == [str(r) for r in theirs[0]] and len(ours[0]) >= 2
    assert ours[1] == pytest.approx(theirs[1], abs=0) and ours[2] == theirs[2]


def test_a_damaged_copy_falls_back_to_dlibs_own(tmp_path, monkeypatch):
    bad = tmp_path / "hog.svm"
    bad.write_bytes(b"not a detector")
    monkeypatch.setattr(assets, "hog_detector_path", lambda: bad)
    rgb = np.ascontiguousarray(data.astronaut())
    assert len(frontal_face_detector()(rgb, 0)) == 1
