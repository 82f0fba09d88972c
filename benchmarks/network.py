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


def faces_and_chips(crops: list[np.ndarray], aligner: Aligner):
    """For each crop: the HOG box, FaceAttr's chip and landmarks (one face per crop)."""
    detector = HogDetector(upsample=0, min_face=HogDetector.native_min_face_px)
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
                    warmup: int = 3, threads=(1, 2), peers: bool = True, spin_frame: np.ndarray | None = None,
                    log=print) -> dict:
    watch = LoadWatch()
    probe = FaceAttrModel.load(model_path, backend="cpu", precision="fp32")
    aligner = Aligner.create(probe.spec.alignment.chip_size, probe.spec.alignment.padding)
    images, boxes, chips, landmarks = faces_and_chips(crops, aligner)
    reps_by_batch = {str(b): reps_for(b, reps) for b in batches}

    def run_ours(when: str) -> dict[str, dict]:
        ours: dict[str, dict] = {}
        for t in threads:
            model = FaceAttrModel.load(model_path, backend="cpu", intra_op_threads=t, precision="fp32")
            rows = {}
            for b in batches:
                batch = chips[np.arange(b) % len(chips)]
                stat = measure(lambda: model.predict_raw(batch), reps_by_batch[str(b)], warmup)
                rows[str(b)] = {"ms_per_face": round(stat.median_ms / b, 4), "batch_ms": stat.as_dict()}
            ours[f"{t} thread(s)"] = {"threads": t, "batches": rows}
            log(f"  network FaceAttr {t} thread(s), {when}: "
                + ", ".join(f"b{b} {r['ms_per_face']:.2f}" for b, r in rows.items()) + " ms/face")
        return ours

    before = run_ours("before the peers")
    out = {"faces": len(chips), "tasks": [t.name for t in probe.spec.tasks], "reps_by_batch": reps_by_batch,
           "warmup": warmup, "faceattr": before, "peers": {}}
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
    if peers and any("variants" in p for p in out["peers"].values()):
        # The CPU may be shared: FaceAttr is measured before and after the peers and the
        # ratios use the mean of the two, which brackets the peers' measurements in time.
        after = run_ours("after the peers")
        out["faceattr_before_peers"], out["faceattr_after_peers"] = before, after
        out["faceattr"] = {k: {"threads": v["threads"], "batches": {
            b: {"ms_per_face": round((r["ms_per_face"] + after[k]["batches"][b]["ms_per_face"]) / 2, 4)}
            for b, r in v["batches"].items()}} for k, v in before.items()}
        out["faceattr_note"] = "mean of the medians measured before and after the peers"
    out["ratios"] = _ratios(out)
    if spin_frame is not None:
        out["ort_spinning"] = spinning_check(model_path, probe.spec.input.name, chips, spin_frame, max(3, reps // 2))
        for k, v in out["ort_spinning"].items():
            log(f"  network ORT {k}: HOG {v['hog_640x480_ms']:.1f} ms, network (4 faces) {v['network_4_faces_ms']:.1f} ms")
    out.update(watch.done())
    return out


def spinning_check(model_path: Path, input_name: str, chips: np.ndarray, frame_bgr: np.ndarray, reps: int,
                   threads: int = 2) -> dict:
    """HOG then the network, alternately in one thread as the pipeline runs them, with ONNX
    Runtime's intra-op threads allowed to spin-wait (its default) or not, and with 1 thread.

    On a 2-core CPU the spinning workers keep a core busy after each run, which slows the
    detector that runs next; this measures by how much, on this machine, now.
    """
    import onnxruntime as ort

    from engine.detect import HogDetector

    hog = HogDetector(upsample=0, min_face=HogDetector.native_min_face_px)
    batch = np.ascontiguousarray(chips[np.arange(4) % len(chips)])
    out = {}
    for name, n_threads, spin in ((f"{threads} threads, spinning (ORT default)", threads, "1"),
                                  (f"{threads} threads, no spinning", threads, "0"),
                                  ("1 thread", 1, "1")):
        options = ort.SessionOptions()
        options.intra_op_num_threads = n_threads
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        session.run(None, {input_name: batch})
        hog_ms, net_ms = [], []
        for _ in range(reps):
            hog_ms.append(measure(lambda: hog(frame_bgr), 1, 0).median_ms)
            net_ms.append(measure(lambda: session.run(None, {input_name: batch}), 1, 0).median_ms)
        out[name] = {"threads": n_threads, "allow_spinning": spin == "1",
                     "hog_640x480_ms": round(float(np.median(hog_ms)), 3),
                     "network_4_faces_ms": round(float(np.median(net_ms)), 3)}
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
