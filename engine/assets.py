"""Where the files the engine needs live: dlib model files, the default model, the sample.

dlib's model files come from the PyPI package ``face-recognition-models``. We locate its
folder without importing it: its ``__init__`` imports ``pkg_resources``, which is gone
once torch's install upgrades setuptools. In a PyInstaller build everything sits under
``sys._MEIPASS``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def bundle_root() -> Path:
    """The folder holding ``assets/`` (the repo, or the PyInstaller bundle)."""
    return Path(getattr(sys, "_MEIPASS", REPO_ROOT))


def dlib_models_dir() -> Path:
    frozen = bundle_root() / "face_recognition_models" / "models"
    if frozen.is_dir():
        return frozen
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "dlib model files not found: install the PyPI package 'face-recognition-models'")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def dlib_model(name: str) -> Path:
    """Path of one dlib model file, e.g. 'shape_predictor_5_face_landmarks.dat'."""
    path = dlib_models_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dlib model file missing from face-recognition-models")
    return path


SHAPE_PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
FACE_RESNET = "dlib_face_recognition_resnet_model_v1.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"


def hog_detector_path() -> Path:
    """dlib's frontal HOG face detector in dlib's binary format (tools/save_hog_detector.py):
    it loads in ~3 ms, where ``dlib.get_frontal_face_detector()`` parses its built-in text
    copy in 0.7-1.0 s."""
    return bundle_root() / "assets" / "detectors" / "dlib_frontal_face_hog.svm"


DEFAULT_MODEL = "faceattr-allages.onnx"
PREVIOUS_DEFAULT = "faceattr-utkface.onnx"  # the default before the all-ages model (issue 11)


def models_dir() -> Path:
    return bundle_root() / "assets" / "models"


def default_model_path() -> Path:
    """The all-ages model; the older UTKFace model where a checkout predates it."""
    path = models_dir() / DEFAULT_MODEL
    return path if path.is_file() or not (models_dir() / PREVIOUS_DEFAULT).is_file() else models_dir() / PREVIOUS_DEFAULT


def shipped_models() -> list[tuple[str, Path]]:
    """(title, path) of each model shipped under assets/models, the default first; INT8 siblings
    are not listed (the engine picks them by --precision)."""
    found = sorted(p for p in models_dir().rglob("*.onnx") if not p.name.endswith(".int8.onnx"))
    default = default_model_path()
    found.sort(key=lambda p: p != default)
    return [(("default: " if p == default else f"{p.parent.name}: " if p.parent != models_dir() else "") + p.stem, p)
            for p in found]


def sample_video_path() -> Path:
    return bundle_root() / "assets" / "samples" / "sample.mp4"
