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


def default_model_path() -> Path:
    return bundle_root() / "assets" / "models" / "faceattr-utkface.onnx"


def sample_video_path() -> Path:
    return bundle_root() / "assets" / "samples" / "sample.mp4"
