"""Per-stage cost on composed test frames: ms per frame and per face, by resolution and faces.

Every stage is the engine's own object, called as the pipeline calls it, on a frame that
holds ``n`` real faces (``benchmarks.common.compose_frame``): decode (cv2.VideoCapture on
an mp4 the engine's VideoWriter wrote of that frame), detection (HOG at upsample 0 and 1
on the full frame; the CNN with a few repetitions), alignment, the network (all faces as
one batch), tracking, smoothing, rendering, encode (the engine's VideoWriter).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import LoadWatch, Stat, compose_frame, measure
from engine.align import Aligner
from engine.detect import CnnDetector, HogDetector
from engine.model import FaceAttrModel
from engine.render import Renderer
from engine.smooth import TaskSmoother
from engine.track import IouTracker
from engine.write import VideoWriter


@dataclass(frozen=True)
class StagePlan:
    resolutions: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720))
    face_counts: tuple[int, ...] = (1, 5, 10)
    reps: int = 15  # cheap stages
    reps_hog1: int = 5
    reps_cnn: int = 2  # ~2.5 s a frame at 640x480 on this CPU
    video_frames: int = 30  # decode/encode: frames per file
    cnn: bool = True


QUICK_STAGES = StagePlan(resolutions=((320, 240),), face_counts=(1, 2), reps=2, reps_hog1=1,
                         reps_cnn=0, video_frames=4, cnn=False)


def _entry(stat: Stat, faces: int) -> dict:
    d = stat.as_dict()
    d["per_face_ms"] = round(stat.median_ms / faces, 4) if faces else None
    return d


def _video_costs(frame_bgr: np.ndarray, n_frames: int) -> tuple[Stat, Stat, str]:
    """(decode, encode) ms per frame of an mp4 holding ``frame_bgr`` with a little motion."""
    h, w = frame_bgr.shape[:2]
    frames = [np.roll(frame_bgr, 4 * i, axis=1) for i in range(n_frames)]  # motion, not a still
    with tempfile.TemporaryDirectory(prefix="faceattr-bench-") as tmp:
        path = Path(tmp) / "clip.mp4"
        enc = []
        writer = VideoWriter(path, 30.0, (w, h))
        fourcc = writer.fourcc
        for f in frames:
            t0 = time.perf_counter()
            writer.write(f)
            enc.append((time.perf_counter() - t0) * 1e3)
        writer.close()
        dec = []
        for _ in range(2):  # the first pass warms the decoder and the page cache
            dec = []
            cap = cv2.VideoCapture(str(path))
            while True:
                t0 = time.perf_counter()
                ok, _ = cap.read()
                if not ok:
                    break
                dec.append((time.perf_counter() - t0) * 1e3)
            cap.release()
    return Stat.of(dec or [float("nan")]), Stat.of(enc[1:] or enc), fourcc


def measure_stages(model: FaceAttrModel, crops: list[np.ndarray], plan: StagePlan,
                   log=print) -> dict:
    """Stage costs for every (resolution, faces) of ``plan``."""
    watch = LoadWatch()
    aligner = Aligner.create(model.spec.alignment.chip_size, model.spec.alignment.padding)
    renderer = Renderer()
    hog = {u: HogDetector(upsample=u, min_face=HogDetector.native_min_face_px) for u in (0, 1)}
    cnn = CnnDetector(upsample=0, min_face=CnnDetector.native_min_face_px) if plan.cnn else None
    rows = []
    for size_wh in plan.resolutions:
        for n in plan.face_counts:
            frame = compose_frame(size_wh, n, crops, seed=n)
            faces = hog[0](frame)
            found = len(faces)
            stages: dict[str, dict] = {}
            dec, enc, fourcc = _video_costs(frame, plan.video_frames)
            stages["decode"] = _entry(dec, found)
            stages["detect_hog_up0"] = _entry(measure(lambda: hog[0](frame), plan.reps), found)
            stages["detect_hog_up1"] = _entry(measure(lambda: hog[1](frame), plan.reps_hog1), found)
            if cnn is not None and n == plan.face_counts[len(plan.face_counts) // 2]:
                stages["detect_cnn_up0"] = _entry(measure(lambda: cnn(frame), plan.reps_cnn), found)
            aligned, chips = aligner(frame, faces)
            stages["align"] = _entry(measure(lambda: aligner(frame, faces), plan.reps), found)
            stages["network"] = _entry(measure(lambda: model(aligned, chips), plan.reps), found)
            predicted = model(aligned, chips)
            tracker = IouTracker()
            tracker(predicted)
            stages["track"] = _entry(measure(lambda: tracker(predicted), plan.reps * 4), found)
            tracked = tracker(predicted)
            smoother = TaskSmoother(0.6, model.spec)
            stages["smooth"] = _entry(measure(lambda: smoother(tracked), plan.reps * 4), found)
            smoothed = smoother(tracked)
            stages["render"] = _entry(measure(lambda: renderer(frame, smoothed, model.spec), plan.reps), found)
            stages["encode"] = _entry(enc, found)
            per_frame = {k: stages[k]["median_ms"] for k in
                         ("decode", "detect_hog_up0", "align", "network", "track", "smooth", "render", "encode")}
            row = {"width": size_wh[0], "height": size_wh[1], "faces_placed": n, "faces_found": found,
                   "video_fourcc": fourcc, "stages": stages,
                   "frame_total_hog_up0_ms": round(sum(per_frame.values()), 3)}
            rows.append(row)
            log(f"  stages {size_wh[0]}x{size_wh[1]} {n} faces (found {found}): "
                + ", ".join(f"{k} {v['median_ms']:.1f}" for k, v in stages.items()) + " ms")
    return {"rows": rows, "detectors_full_frame": "HOG and CNN run on the frame as it is here (scale 1); "
            "the live section measures the min_face settings (the detection scale)", **watch.done()}
