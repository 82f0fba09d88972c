"""Write dlib's frontal face detector to assets/detectors/ in dlib's binary format.

    python tools/save_hog_detector.py

``dlib.get_frontal_face_detector()`` builds the detector by parsing a text copy compiled
into dlib: 0.7-1.0 s on a 2-core CPU, paid by every detector object (one per detection
thread) and most of the app's start. The same detector saved once loads with
``dlib.fhog_object_detector(path)`` in about 3 ms (measured) and gives identical boxes
and scores (tests/engine/test_detect.py checks both against dlib's own on every run).
"""
from __future__ import annotations

import sys
from pathlib import Path

import dlib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.assets import hog_detector_path  # noqa: E402


def main() -> int:
    path = hog_detector_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    dlib.get_frontal_face_detector().save(str(path))
    print(f"wrote {path} ({path.stat().st_size} bytes, dlib {dlib.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
