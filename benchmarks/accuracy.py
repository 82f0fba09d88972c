"""Accuracy on the UTKFace CORAL test split (and its de-duplicated variant), FaceAttr vs peers.

    python -m benchmarks.accuracy [--quick] [--model PATH] [--data ../shared/data/utkface]
                                  [--chips cache/utkface]

Every system sees the same faces: one HOG box per image (``benchmarks.faces``), images
without a face left out for all and counted. FaceAttr runs through the engine exactly as
the app does (``engine.align`` chips -> ``FaceAttrModel``). The peers get the same box
(Cydral: its own dlib alignment; Levi-Hassner: a dlib-aligned 227 px chip, see
``benchmarks.peers``) in their own venvs. Levi-Hassner predicts one of 8 age ranges: its
age estimate is the midpoint of the most likely range (0-2 -> 1, ..., 60-100 -> 80); the
probability-weighted mean of the midpoints is reported beside it. Neither peer predicts
race. The thesis's published figures are a reference row, not a measurement here.
Writes ``<out>/accuracy.json``; without ``../shared`` it writes a skip record instead.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks import cache
from benchmarks.common import OUT_DIR, REPO_ROOT, LoadWatch, shared_dir, write_json
from benchmarks.faces import FoundFaces, check_against_cache, find_faces
from benchmarks.metrics import GENDERS, RACES, Predictions, Truth, group_scores, scores
from benchmarks.peers import (CYDRAL, LEVI, LEVI_AGE_RANGES, LEVI_ALIGNED_PADDING, PeerError,
                              levi_age_estimates, levi_aligned_chips)
from benchmarks.standin import choose_model
from engine.align import Aligner
from engine.tasks import task_kind
from engine.model import FaceAttrModel, ModelLoadError

QUICK_IMAGES = 50
LEVI_CHUNK = 400  # images per Levi-Hassner runner call (its aligned chips travel as an .npz)

THESIS = [
    {"system": "thesis (published)", "dataset": "UTKFace CORAL test", "gender_acc": 0.9847, "race_acc": 0.8756,
     "age_mae": 4.68, "note": "published figures, not measured here"},
    {"system": "thesis (published)", "dataset": "CelebA test", "gender_acc": 0.9882, "young_acc": 0.8753,
     "note": "published figures, not measured here"},
]
PEER_TRAINING_DATA = {
    "cydral": "a private set of about 110k labelled images (dlib's examples/dnn_age_predictor_ex.cpp); "
              "whether it overlaps UTKFace is not known",
    "levi": "Adience (Levi & Hassner, CVPR 2015 workshops): Flickr album photos, 8 age ranges; no UTKFace",
}
CELEBA_NOTE = ("CelebA: not measured. No CelebA-trained FaceAttr model and no CelebA data exist in this "
               "project's environment (../shared/data holds UTKFace, the CORAL split and faces-pd only).")


def _default_data() -> Path:
    sd = shared_dir()
    return (sd / "data" / "utkface") if sd else REPO_ROOT.parent / "shared" / "data" / "utkface"


# ---------------------------------------------------------------- systems

def faceattr_predictions(model: FaceAttrModel, chips_rgb: np.ndarray, batch: int = 64) -> tuple[Predictions, float]:
    """Through the engine: FaceAttrModel.predict_raw + decode on engine.align chips."""
    n = len(chips_rgb)
    pred = Predictions.empty(n)
    names = {t.name: t for t in model.spec.tasks}
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        decoded = model.decode(model.predict_raw(np.ascontiguousarray(chips_rgb[start:start + batch])))
        sl = slice(start, start + batch)
        age = names.get("age")
        if age is not None and not task_kind(age.kind).label_index and not task_kind(age.kind).has_points:
            pred.age[sl] = decoded["age"].value
        for task, labels_ref, out in (("gender", GENDERS, pred.gender), ("race", RACES, pred.race)):
            spec = names.get(task)
            if spec is None or not task_kind(spec.kind).label_index:
                continue
            idx = decoded[task].value.astype(int)
            out[sl] = [labels_ref.index(spec.labels[i]) if spec.labels[i] in labels_ref else -1 for i in idx]
    ms = (time.perf_counter() - t0) * 1e3 / max(n, 1)
    return pred, ms


def cydral_predictions(found: FoundFaces, image_dir: Path, cache_dir: Path | None) -> tuple[Predictions, dict]:
    items = [{"path": str(image_dir / f), "box_xyxy": b.tolist()} for f, b in zip(found.files, found.box_xyxy)]
    key = cache.key_of("cydral", cache.files_signature(image_dir, found.files), found.box_xyxy.tolist(),
                       *cache.source_files("benchmarks/peers/cydral_runner.py"), CYDRAL.versions())
    res = cache.load_json(cache_dir, "cydral", key) if cache_dir else None
    if res is None:
        res = CYDRAL.run("predict", {"items": items})
        if cache_dir:
            cache.save_json(cache_dir, "cydral", key, res)
    pred = Predictions.empty(len(items))
    for i, r in enumerate(res["predictions"]):
        if r is not None:
            pred.age[i] = r["age"]
            pred.gender[i] = GENDERS.index(r["gender"])
    return pred, {"fed": res["fed"], "versions": res["versions"],
                  "ms_per_face_landmarks_chips_nets": res["ms_per_face_landmarks_chips_nets"]}


def _levi_raw(found: FoundFaces, image_dir: Path) -> dict:
    probs, p_female, versions = [], [], None
    with tempfile.TemporaryDirectory(prefix="faceattr-levi-") as tmp:
        for start in range(0, len(found.files), LEVI_CHUNK):
            files = found.files[start:start + LEVI_CHUNK]
            marks = found.landmarks_xy[start:start + LEVI_CHUNK]
            chips = np.concatenate([levi_aligned_chips(cv2.imread(str(image_dir / f), cv2.IMREAD_COLOR), m[None])
                                    for f, m in zip(files, marks)])
            npz = Path(tmp) / "aligned.npz"
            np.savez(npz, aligned_rgb=chips)
            res = LEVI.run("predict", {"items": [], "aligned_npz": str(npz), "threads": 2})
            versions = res["versions"]
            for r in res["variants"]["aligned"]:
                probs.append(r["age_probs"])
                p_female.append(r["p_female"])
    return {"probs": probs, "p_female": p_female, "versions": versions}


def levi_predictions(found: FoundFaces, image_dir: Path, cache_dir: Path | None
                     ) -> tuple[Predictions, Predictions, dict]:
    """(argmax-midpoint ages, expected-midpoint ages) — gender is the same in both."""
    key = cache.key_of("levi", cache.files_signature(image_dir, found.files), found.landmarks_xy.tolist(),
                       LEVI_ALIGNED_PADDING, *cache.source_files("benchmarks/peers/levi_runner.py",
                                                                 "benchmarks/peers/__init__.py"), LEVI.versions())
    raw = cache.load_json(cache_dir, "levi", key) if cache_dir else None
    if raw is None:
        raw = _levi_raw(found, image_dir)
        if cache_dir:
            cache.save_json(cache_dir, "levi", key, raw)
    probs, p_female = raw["probs"], raw["p_female"]
    arg_age, exp_age = levi_age_estimates(np.asarray(probs).reshape(-1, len(LEVI_AGE_RANGES)))
    gender = (np.asarray(p_female) > 0.5).astype(np.int64)
    race = np.full(len(gender), -1, np.int64)
    fed = (f"FaceAttr's HOG box and dlib 5 landmarks -> dlib.get_face_chip 227x227, padding "
           f"{LEVI_ALIGNED_PADDING}; BGR, mean subtracted (the nets' own preprocessing)")
    return (Predictions(arg_age, gender, race), Predictions(exp_age, gender, race),
            {"fed": fed, "versions": raw["versions"]})


# ---------------------------------------------------------------- run

def _found_faces(data: Path, files: list[str], cache_dir: Path | None) -> FoundFaces:
    import dlib

    key = cache.key_of("faces", cache.files_signature(data, files), dlib.__version__,
                       *cache.source_files("engine/detect.py", "engine/align.py", "benchmarks/faces.py"))
    arrays = cache.load_arrays(cache_dir, "faces", key) if cache_dir else None
    if arrays is not None:
        print("accuracy: faces and chips reused from the cache")
        return FoundFaces.from_arrays(arrays)
    found = find_faces(data, files, Aligner.create(), progress=lambda k, n: print(f"  faces: {k}/{n}"))
    if cache_dir:
        cache.save_arrays(cache_dir, "faces", key, found.to_arrays())
    return found


def _evaluate(truth: Truth, pred: Predictions, dedup_mask: np.ndarray) -> dict:
    return {"test": {"overall": scores(truth, pred), "groups": group_scores(truth, pred)},
            "test_dedup": {"overall": scores(truth.take(dedup_mask), pred.take(dedup_mask)),
                           "groups": group_scores(truth.take(dedup_mask), pred.take(dedup_mask))}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK_IMAGES} test images (a smoke run)")
    p.add_argument("--model", type=Path, help="FaceAttr ONNX model (default: the shipped default model)")
    p.add_argument("--data", type=Path, default=None, help="UTKFace folder (default ../shared/data/utkface)")
    p.add_argument("--chips", type=Path, default=REPO_ROOT / "cache" / "utkface",
                   help="training chip cache to check our chips against (default cache/utkface, if present)")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="folder for accuracy.json (default benchmarks/out)")
    p.add_argument("--no-peers", action="store_true", help="skip the peers")
    p.add_argument("--limit", type=int, help="evaluate only this many test images (seeded sample)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute faces and peer predictions (else reused from <out>/cache when unchanged)")
    args = p.parse_args(argv)
    data = args.data or _default_data()
    out_path = args.out / "accuracy.json"
    body: dict = {"quick": args.quick, "reference": THESIS, "celeba": CELEBA_NOTE}
    if not data.is_dir():
        msg = (f"accuracy: skipped: the UTKFace folder {data} does not exist (it lives in ../shared/data, "
               "which a plain clone does not have)")
        print(msg)
        write_json(out_path, "accuracy", {**body, "skipped": msg})
        return 0
    from training.samples import DataError
    from training.utkface import load_utkface

    watch = LoadWatch()
    t_start = time.perf_counter()
    try:
        test = load_utkface("coral", data, test_split="test").test
        dedup_files = {s.file for s in load_utkface("coral", data, test_split="test_dedup").test}
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    limit = QUICK_IMAGES if args.quick else args.limit
    if limit and limit < len(test):
        pick = np.sort(np.random.default_rng(0).choice(len(test), limit, replace=False))
        test = tuple(test[i] for i in pick)
    by_file = {s.file: s for s in test}
    print(f"accuracy: {len(test)} CORAL test images from {data}")

    cache_dir = None if args.no_cache else args.out / "cache"
    found = _found_faces(data, [s.file for s in test], cache_dir)
    print(f"accuracy: a face in {len(found.files)} of {len(test)} images ({len(found.no_face)} without)")
    truth = Truth(np.array([by_file[f].targets["age"] for f in found.files], np.float64),
                  np.array([by_file[f].targets["gender"] for f in found.files], np.int64),
                  np.array([by_file[f].targets["race"] for f in found.files], np.int64))
    dedup_mask = np.array([f in dedup_files for f in found.files], bool)
    body["dataset"] = {
        "name": "UTKFace aligned&cropped, CORAL test split (training/splits/utk_test.csv)",
        "dedup": "test_dedup = minus the files byte-identical to a CORAL train file (training/splits/coral_test_dedup.csv)",
        "data": str(data), "images": len(test), "faces_found": len(found.files),
        "no_face": len(found.no_face), "unreadable": len(found.unreadable),
        "faces_found_dedup": int(dedup_mask.sum()),
        "detection": "dlib HOG upsample 0, then 1 if none; largest face (as training/chips.py)",
        "chip_cache_check": check_against_cache(found, args.chips) if args.chips else None,
    }
    systems: dict[str, dict] = {}
    try:
        choice = choose_model(args.model, allow_standin=False)
        model = FaceAttrModel.load(choice.path, backend="cpu", precision="fp32")
        pred, ms = faceattr_predictions(model, found.chips_rgb)
        systems["faceattr"] = {"title": f"FaceAttr ({model.spec.name})", "model": str(choice.path),
                               "fed": "engine.align chip (150x150, padding 0.25) -> FaceAttrModel, as the app runs it",
                               "ms_per_face_network": round(ms, 3), **_evaluate(truth, pred, dedup_mask)}
    except (FileNotFoundError, ModelLoadError) as e:
        systems["faceattr"] = {"title": "FaceAttr", "skipped": str(e)}
    print(f"accuracy: faceattr {systems['faceattr'].get('test', {}).get('overall') or systems['faceattr'].get('skipped')}")
    for peer in (CYDRAL, LEVI):
        why = "--no-peers" if args.no_peers else peer.missing()
        if why:
            systems[peer.name] = {"title": peer.title, "skipped": why}
            print(f"accuracy: {peer.name} skipped: {why}")
            continue
        try:
            if peer is CYDRAL:
                pred, info = cydral_predictions(found, data, cache_dir)
                systems[peer.name] = {"title": peer.title, **info, **_evaluate(truth, pred, dedup_mask)}
            else:
                arg_pred, exp_pred, info = levi_predictions(found, data, cache_dir)
                systems[peer.name] = {"title": peer.title, **info,
                                      "age_estimate": "midpoint of the most likely of the 8 age ranges",
                                      **_evaluate(truth, arg_pred, dedup_mask)}
                systems["levi_expected"] = {
                    "title": peer.title + ", age = probability-weighted mean of range midpoints", **info,
                    "age_estimate": "sum of p(range) x range midpoint", **_evaluate(truth, exp_pred, dedup_mask)}
        except PeerError as e:
            systems[peer.name] = {"title": peer.title, "error": str(e)}
        print(f"accuracy: {peer.name} {systems[peer.name].get('test', {}).get('overall') or systems[peer.name]}")
    body["systems"] = systems
    body["cache"] = (f"faces and peer predictions are reused from {cache_dir} when the data, code and settings "
                     "that made them are unchanged" if cache_dir else "off (--no-cache)")
    body["peer_training_data"] = PEER_TRAINING_DATA
    body["levi_age_ranges"] = {f"{lo}-{hi}": (lo + hi) / 2 for lo, hi in LEVI_AGE_RANGES}
    body["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    body.update(watch.done())
    path = write_json(out_path, "accuracy", body)
    print(f"accuracy: wrote {path} ({body['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
