"""Choose the Levi-Hassner input crop fairly, on CORAL *train* images (never the test split).

    python -m benchmarks.peers.calibrate_levi [--n 300] [--data ../shared/data/utkface]

The nets were trained on Adience crops that show the whole head; FaceAttr's chip (padding
0.25) is tighter. This compares, on the same faces, dlib-aligned 227 px chips at padding
0.25 / 0.4 / 0.6 and the usual "detector box + 20 px" crop, by gender accuracy and age MAE
(range midpoint), and writes ``benchmarks/out/levi_calibration.json``. The padding used by
``benchmarks.accuracy`` (``LEVI_ALIGNED_PADDING``) is the one this picked.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import OUT_DIR, REPO_ROOT, write_json
from benchmarks.faces import find_faces
from benchmarks.peers import LEVI, levi_age_estimates, levi_aligned_chips
from engine.align import Aligner

PADDINGS = (0.25, 0.4, 0.6)


def _score(res_rows: list[dict], age: np.ndarray, gender: np.ndarray) -> dict:
    probs = np.asarray([r["age_probs"] for r in res_rows])
    p_f = np.asarray([r["p_female"] for r in res_rows])
    arg_age, exp_age = levi_age_estimates(probs)
    return {"gender_acc": round(float(np.mean((p_f > 0.5) == (gender == 1))), 4),
            "age_mae_midpoint": round(float(np.mean(np.abs(arg_age - age))), 3),
            "age_mae_expected": round(float(np.mean(np.abs(exp_age - age))), 3)}


def main(argv: list[str] | None = None) -> int:
    from training.utkface import load_utkface

    p = argparse.ArgumentParser(prog="python -m benchmarks.peers.calibrate_levi", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "utkface")
    args = p.parse_args(argv)
    if not args.data.is_dir() or LEVI.missing():
        print(f"calibrate_levi: skipped ({LEVI.missing() or f'{args.data} does not exist'})")
        return 0
    train = load_utkface("coral", args.data).train
    pick = np.random.default_rng(0).choice(len(train), min(args.n, len(train)), replace=False)
    samples = [train[i] for i in np.sort(pick)]
    found = find_faces(args.data, [s.file for s in samples], Aligner.create())
    by = {s.file: s for s in samples}
    age = np.array([by[f].targets["age"] for f in found.files])
    gender = np.array([by[f].targets["gender"] for f in found.files])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        items = [{"path": str(args.data / f), "box_xyxy": b.tolist()} for f, b in zip(found.files, found.box_xyxy)]
        images = [cv2.imread(str(args.data / f), cv2.IMREAD_COLOR) for f in found.files]
        for pad in PADDINGS:
            chips = np.concatenate([levi_aligned_chips(im, m[None], pad) for im, m in zip(images, found.landmarks_xy)])
            np.savez(Path(tmp) / "a.npz", aligned_rgb=chips)
            res = LEVI.run("predict", {"items": items if pad == PADDINGS[0] else [], "aligned_npz": str(Path(tmp) / "a.npz"),
                                       "threads": 2})
            results[f"aligned, padding {pad}"] = _score(res["variants"]["aligned"], age, gender)
            if pad == PADDINGS[0]:
                results["detector box + 20 px"] = _score(res["variants"]["box"], age, gender)
    for k, v in results.items():
        print(f"  {k}: {v}")
    write_json(OUT_DIR / "levi_calibration.json", "levi_calibration",
               {"images": len(found.files), "split": "CORAL train (training/splits/coral_train80.csv), seeded sample",
                "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
