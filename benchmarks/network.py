"""The network alone, per face, at batch 1 / 8 / 32 on the CPU: FaceAttr against the peers.

FaceAttr runs one network for all its tasks (here gender, race and age); the Cydral peer
runs two (gender 32x32, age 64x64), the Levi-Hassner peer two (227x227 each) and gives
no race. All get chips of the same real faces (faces-pd portraits, or the astronaut),
aligned by dlib from the same HOG boxes, in each one's own chip geometry. Ratios are
taken within this one run, so the machine's load hits everyone alike (within seconds).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import LoadWatch, measure
from benchmarks.peers import CYDRAL, LEVI, PeerError, levi_aligned_chips
from engine.align import Aligner
from engine.detect import HogDetector
from engine.model import FaceAttrModel


def _faces_and_chips(crops: list[np.ndarray], aligner: Aligner):
    """For each crop: the HOG box, FaceAttr's chip and landmarks (one face per crop)."""
    detector = HogDetector(upsample=0, max_width=None)
    images, boxes, chips, landmarks = [], [], [], []
    for crop in crops:
        crop = cv2.resize(crop, (300, 300), interpolation=cv2.INTER_AREA)  # one size: stackable
        faces = detector(crop)
        if len(faces) == 0:
            continue
        faces = faces.take(np.array([0]))
        aligned, chip = aligner(crop, faces)
        images.append(crop)
        boxes.append(faces.xyxy[0])
        chips.append(chip[0])
        landmarks.append(aligned.landmarks_xy[0])
    return images, np.array(boxes, np.float32), np.stack(chips), np.stack(landmarks)


def measure_network(model_path: Path, crops: list[np.ndarray], batches=(1, 8, 32), reps: int = 20,
                    warmup: int = 3, threads=(1, 2), peers: bool = True, log=print) -> dict:
    watch = LoadWatch()
    probe = FaceAttrModel.load(model_path, backend="cpu")
    aligner = Aligner.create(probe.spec.alignment.chip_size, probe.spec.alignment.padding)
    images, boxes, chips, landmarks = _faces_and_chips(crops, aligner)
    reps_by_batch = {str(b): reps_for(b, reps) for b in batches}
    ours: dict[str, dict] = {}
    for t in threads:
        model = FaceAttrModel.load(model_path, backend="cpu", intra_op_threads=t)
        rows = {}
        for b in batches:
            batch = chips[np.arange(b) % len(chips)]
            stat = measure(lambda: model.predict_raw(batch), reps_by_batch[str(b)], warmup)
            rows[str(b)] = {"ms_per_face": round(stat.median_ms / b, 4), "batch_ms": stat.as_dict()}
        ours[f"{t} thread(s)"] = {"threads": t, "batches": rows}
        log(f"  network FaceAttr {t} thread(s): "
            + ", ".join(f"b{b} {r['ms_per_face']:.2f}" for b, r in rows.items()) + " ms/face")
    out = {"faces": len(chips), "tasks": [t.name for t in probe.spec.tasks], "reps_by_batch": reps_by_batch,
           "warmup": warmup, "faceattr": ours, "peers": {}}
    if peers:
        with tempfile.TemporaryDirectory(prefix="faceattr-bench-net-") as tmp:
            npz = Path(tmp) / "faces.npz"
            levi = np.concatenate([levi_aligned_chips(im, lm[None]) for im, lm in zip(images, landmarks)])
            np.savez(npz, images_rgb=np.stack([im[:, :, ::-1] for im in images]), boxes_xyxy=boxes,
                     aligned_rgb=levi)
            request = {"npz": str(npz), "batches": list(batches), "reps_by_batch": reps_by_batch,
                       "warmup": warmup, "threads": list(threads)}
            for peer in (CYDRAL, LEVI):
                why = peer.missing()
                if why:
                    out["peers"][peer.name] = {"title": peer.title, "skipped": why}
                    log(f"  network {peer.name}: skipped ({why})")
                    continue
                try:
                    res = peer.run("speed", request)
                except PeerError as e:
                    out["peers"][peer.name] = {"title": peer.title, "error": str(e)}
                    log(f"  network {peer.name}: {e}")
                    continue
                res["title"] = peer.title
                out["peers"][peer.name] = res
                for name, v in res["variants"].items():
                    log(f"  network {peer.name} [{name}]: "
                        + ", ".join(f"b{b} {r['both_ms_per_face']:.2f}" for b, r in v["batches"].items())
                        + " ms/face (gender+age)")
    out["ratios"] = _ratios(out)
    out.update(watch.done())
    return out


def reps_for(batch: int, reps: int) -> int:
    """Fewer repetitions for big batches (each is many faces), at least 5 (or ``reps`` if smaller)."""
    return max(min(5, reps), reps * 8 // max(batch, 8))


def _ratios(out: dict) -> list[dict]:
    """Peer ms/face divided by FaceAttr ms/face at the same batch and thread count (>1: FaceAttr faster)."""
    rows = []
    for peer_name, peer in out["peers"].items():
        for variant, v in peer.get("variants", {}).items():
            ours = next((o for o in out["faceattr"].values() if o["threads"] == v["threads"]), None)
            if ours is None:
                continue
            for b, r in v["batches"].items():
                mine = ours["batches"].get(b)
                if mine:
                    rows.append({"peer": peer_name, "variant": variant, "threads": v["threads"], "batch": int(b),
                                 "peer_ms_per_face": round(r["both_ms_per_face"], 4),
                                 "faceattr_ms_per_face": mine["ms_per_face"],
                                 "peer_over_faceattr": round(r["both_ms_per_face"] / mine["ms_per_face"], 3)})
    return rows
