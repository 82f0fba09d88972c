"""Evaluate a model on a dataset's test split(s): metrics.json + report.md with plots.

    python -m training.evaluate assets/models/faceattr-utkface.onnx --data ../shared/data/utkface \\
        --protocol coral --chips cache/utkface -o reports/utk
    python -m training.evaluate MODEL.onnx --data DIR --protocol coral --from-images -o OUT
    python -m training.evaluate runs/utk/best.pt --data DIR --protocol coral --chips CACHE -o OUT
    python -m training.evaluate MODEL.onnx --dataset mtfl --data cache/mtfl_src/MTFL --split test --from-images -o OUT

A ``.onnx`` model is evaluated THROUGH THE ENGINE (``engine.model.FaceAttrModel``: its
session, its decoding), so the published number is the app's. ``--chips`` reads chips from a
cache made by ``training.chips`` (the engine's alignment); ``--from-images`` runs the engine's
own detector + aligner on every image, as the app does (images where no face is found are
counted and reported). A ``.pt`` checkpoint runs in torch through the export wrapper.

MTFL (``--dataset mtfl``, ``training.mtfl``): the labelled face of each image is the detection
holding the centre of MTFL's given landmarks (``training.mtfl_chips.pick_face``); an image
where no detection does is counted as "no face found" / "labelled face not found", and the
share of faces found is reported with the accuracies over the faces found (gender, smile,
glasses, pose; whichever the model has).

Metrics per task: accuracy, per-class accuracy and confusion matrix (binary, multiclass);
MAE, CS@5 (share of |error| <= 5) and bias (regression, expectation); for UTKFace a per-group
table (gender and race accuracy, age MAE by race x gender) and an age-band table (age MAE,
gender and race accuracy per band of true age 0-12, 13-20, 21-40, 41-60, 61+). Every listed
file is either evaluated or counted under a skip reason. UTKFace protocols report ``test``
and ``test_dedup``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np

from engine.detect import DETECTORS
from engine.modelspec import TaskSpec
from training.celeba import load_celeba
from training.samples import DataError, Sample
from training.task_heads import task_head
from training.utkface import load_utkface_part
from training.metrics import SplitResult, compute_metrics
from training.report import write_report

PROTOCOLS = ("coral", "full", "celeba", "mtfl")
DATASETS = {"utkface": ("coral", "full"), "celeba": ("celeba",), "mtfl": ("mtfl",)}  # dataset -> its protocols
BATCH = 64
REFERENCE = {"label": "thesis (seeds/003), CORAL test", "gender_acc": 0.9847, "race_acc": 0.8756, "age_mae": 4.68}
NO_FACE, NOT_LABELLED_FACE = "no face found", "labelled face not found"
CACHE_REASONS = {"no_face": NO_FACE, "unreadable": "unreadable image"}
# training.mtfl_chips places a box from the landmarks where the detector found none: not a face found.
PLACED_FROM_LANDMARKS = "labelled face not found (chip placed from the landmarks)"


def dataset_of(protocol: str) -> str:
    return next(d for d, protocols in DATASETS.items() if protocol in protocols)


class EvaluateError(RuntimeError):
    """Evaluation cannot run as asked; the message names the input and the reason."""


# ---------------------------------------------------------------- predictors

@dataclass(frozen=True)
class Predictor:
    """uint8 chips [N,150,150,3] -> decoded value per task ([N]: label index or value in unit)."""

    tasks: tuple[TaskSpec, ...]
    name: str
    runtime: str  # "onnxruntime (engine), CPUExecutionProvider" / "torch"
    predict: Callable[[np.ndarray], dict[str, np.ndarray]]


def decode_contract(tasks: Sequence[TaskSpec], raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Contract outputs -> values, as the engine decodes them (used for torch checkpoints)."""
    return {t.name: task_head(t).contract_value(t, np.asarray(raw[t.name], np.float64))
            for t in tasks if task_head(t).scored}


def onnx_predictor(path: Path, backend: str = "auto") -> Predictor:
    from engine.model import FaceAttrModel, ModelLoadError

    try:
        model = FaceAttrModel.load(path, backend=backend, precision="fp32")  # the file named, never its INT8 sibling
    except (ModelLoadError, RuntimeError) as e:
        raise EvaluateError(str(e)) from e

    def predict(chips: np.ndarray) -> dict[str, np.ndarray]:
        decoded = model.decode(model.predict_raw(chips))
        values = {name: np.asarray(p.value, np.float64) for name, p in decoded.items()}
        spreads = {spread_key(name): np.asarray(p.spread, np.float64) for name, p in decoded.items()
                   if p.spread is not None}
        return {**values, **spreads}

    return Predictor(model.spec.tasks, model.spec.name, f"onnxruntime through the engine ({model.provider})", predict)


def torch_predictor(path: Path, flip_tta: bool = False) -> Predictor:
    import torch

    from training.export import ExportError, ExportWrapper, load_checkpoint, net_from_checkpoint

    try:
        wrapper = ExportWrapper(net_from_checkpoint(load_checkpoint(path), str(path)), flip_tta).eval()
    except ExportError as e:
        raise EvaluateError(str(e)) from e

    def predict(chips: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            outs = wrapper(torch.from_numpy(np.ascontiguousarray(chips)))
        return decode_contract(wrapper.tasks, {t.name: o.numpy() for t, o in zip(wrapper.tasks, outs)})

    return Predictor(wrapper.tasks, path.stem, "torch (checkpoint)" + (", flip TTA" if wrapper.flip_tta else ""), predict)


def load_predictor(path: Path, backend: str = "auto", flip_tta: bool = False) -> Predictor:
    path = Path(path)
    if not path.is_file():
        raise EvaluateError(f"{path}: model file not found")
    if path.suffix == ".onnx":
        if flip_tta:
            raise EvaluateError(f"{path}: --flip-tta is for .pt checkpoints (an .onnx file has it in its graph or not: "
                                "`python -m training.export --flip-tta`)")
        return onnx_predictor(path, backend)
    if path.suffix in (".pt", ".pth"):
        return torch_predictor(path, flip_tta)
    raise EvaluateError(f"{path}: give an exported .onnx model or a .pt checkpoint")


# ---------------------------------------------------------------- chips

@dataclass(frozen=True)
class Chips:
    chips: np.ndarray  # uint8 [M,150,150,3]
    samples: tuple[Sample, ...]  # the M samples that have a chip, in order
    skipped: dict[str, str]  # file -> reason, for the others
    boxes_xyxy: np.ndarray | None = None  # float32 [M,4]: the detector's box of each face (image pixels), if known


def _placed_from_landmarks(cache_dir: Path) -> set[str]:
    """Files whose chip ``training.mtfl_chips`` placed from the given landmarks (its index's
    ``found`` column says ``landmarks``): the detector did not find that face."""
    with (Path(cache_dir) / "index.csv").open(newline="") as f:
        return {r["file"] for r in csv.DictReader(f) if r.get("found") == "landmarks"}


def chips_from_cache(cache_dir: Path, samples: Sequence[Sample]) -> Chips:
    """Chips of ``samples`` from a cache (training.chips, training.mtfl_chips or --save-chips); its
    boxes too where it has them (``boxes.npy``, written by --save-chips). A chip that
    training.mtfl_chips placed from the landmarks is skipped: the app would not have found that face."""
    from training.chips import ChipCache

    try:
        cache = ChipCache.open(cache_dir)
    except FileNotFoundError as e:
        raise EvaluateError(str(e)) from e
    placed = _placed_from_landmarks(cache_dir)
    rows, kept, skipped = [], [], {}
    for s in samples:
        row = cache.row_of.get(s.file)
        if row is None or s.file in placed:
            status = cache.status_of.get(s.file)
            skipped[s.file] = (PLACED_FROM_LANDMARKS if s.file in placed else
                               CACHE_REASONS.get(status, status) if status else "not in chip cache")
            continue
        rows.append(row)
        kept.append(s)
    index = np.asarray(rows, np.int64)
    chips = np.array(cache.chips[index]) if rows else np.zeros((0, 150, 150, 3), np.uint8)
    boxes_path = Path(cache_dir) / "boxes.npy"
    boxes = np.load(boxes_path)[index].astype(np.float32) if boxes_path.is_file() else None
    return Chips(chips, tuple(kept), skipped, boxes)


def chips_from_images(image_dir: Path, samples: Sequence[Sample], detector: str = "hog", upsample: int = 0,
                      progress: bool = True, landmarks: Mapping[str, np.ndarray] | None = None) -> Chips:
    """The engine's own detect + align on each image, as the app runs a still (the detector's
    defaults and the border it adds around stills, ``engine.detect.STILL_PAD``). The face taken is
    the largest, or, with ``landmarks`` (file -> [5,2] given points, MTFL), the detection holding
    the points' centre (``training.mtfl_chips.pick_face``); an image where none does is skipped
    as "labelled face not found"."""
    from tqdm import tqdm

    from engine.align import Aligner
    from engine.detect import STILL_PAD, create_detector

    if landmarks is not None:
        from training.mtfl_chips import pick_face
    try:
        detect = create_detector(detector, upsample=upsample)
    except ValueError as e:
        raise EvaluateError(str(e)) from e
    align = Aligner.create()
    out, boxes, kept, skipped = [], [], [], {}
    for s in tqdm(samples, desc="detect+align", unit="img", disable=not progress):
        image = cv2.imread(str(Path(image_dir) / s.file), cv2.IMREAD_COLOR)
        if image is None:
            skipped[s.file] = "unreadable image"
            continue
        faces = detect(image, pad=STILL_PAD)
        if len(faces) == 0:
            skipped[s.file] = NO_FACE
            continue
        if landmarks is None:
            face = faces.largest()
        else:
            i = pick_face(faces, np.asarray(landmarks[s.file], np.float32))
            if i is None:
                skipped[s.file] = NOT_LABELLED_FACE
                continue
            face = faces.take(np.array([i]))
        _, chips = align(image, face)
        out.append(chips[0])
        boxes.append(face.xyxy[0])
        kept.append(s)
    chips = np.stack(out) if out else np.zeros((0, 150, 150, 3), np.uint8)
    return Chips(chips, tuple(kept), skipped, np.array(boxes, np.float32).reshape(-1, 4))


def spread_key(task: str) -> str:
    """The key of a task's stated spread beside its value in a predictor's output."""
    return f"{task}_spread"


def predict_all(predictor: Predictor, chips: np.ndarray, batch: int = BATCH) -> dict[str, np.ndarray]:
    """Each scored task's values, and its spreads (``spread_key``) where the predictor states them."""
    parts = [predictor.predict(chips[i:i + batch]) for i in range(0, len(chips), batch)]
    names = [t.name for t in predictor.tasks if task_head(t).scored]
    names += [spread_key(n) for n in names if parts and spread_key(n) in parts[0]]
    return {n: np.concatenate([p[n] for p in parts]) if parts else np.zeros(0) for n in names}


# ---------------------------------------------------------------- evaluation

class Memo:
    """Predictions (or skip reasons) per file, so a file in several splits is run once."""

    def __init__(self) -> None:
        self.pred: dict[str, dict[str, float]] = {}
        self.skipped: dict[str, str] = {}

    def todo(self, samples: Sequence[Sample]) -> list[Sample]:
        return [s for s in samples if s.file not in self.pred and s.file not in self.skipped]

    def add(self, predictor: Predictor, chips: Chips) -> None:
        pred = predict_all(predictor, chips.chips)
        for i, s in enumerate(chips.samples):
            self.pred[s.file] = {name: float(v[i]) for name, v in pred.items()}
        self.skipped.update(chips.skipped)


def check_labels(model_tasks: Sequence[TaskSpec], data_tasks: Sequence[TaskSpec]) -> None:
    """A task the model and the data share must mean the same labels in the same order."""
    data = {t.name: t for t in data_tasks}
    for t in model_tasks:
        d = data.get(t.name)
        if d is not None and d.labels and t.labels and tuple(d.labels) != tuple(t.labels):
            raise EvaluateError(f"task '{t.name}': the model's labels ({', '.join(t.labels)}) are not the data's "
                                f"({', '.join(d.labels)}), in that order")


def evaluate_split(predictor: Predictor, name: str, samples: Sequence[Sample], loader_skipped: Mapping[str, int],
                   memo: Memo) -> SplitResult:
    """Metrics of one split from the memo (every sample must be in it: predicted or skipped)."""
    data_tasks = set(samples[0].targets) if samples else set()
    tasks = [t for t in predictor.tasks if t.name in data_tasks and task_head(t).scored]
    if samples and not tasks:
        raise EvaluateError(f"the model's tasks ({', '.join(t.name for t in predictor.tasks)}) and the data's "
                            f"({', '.join(sorted(data_tasks))}) have none in common")
    done = [s for s in samples if s.file in memo.pred]
    truth = {t.name: np.array([s.targets[t.name] for s in done], np.float64) for t in tasks}
    pred = {t.name: np.array([memo.pred[s.file][t.name] for s in done], np.float64) for t in tasks}
    spread = {t.name: np.array([memo.pred[s.file][spread_key(t.name)] for s in done], np.float64) for t in tasks
              if all(spread_key(t.name) in memo.pred[s.file] for s in done)}
    model_ages = "age" in {t.name for t in predictor.tasks} and "age" not in data_tasks
    age_estimate = np.array([memo.pred[s.file]["age"] for s in done], np.float64) if model_ages else None
    skipped = Counter(loader_skipped)
    skipped.update(memo.skipped[s.file] for s in samples if s.file not in memo.pred)
    listed = len(samples) + sum(loader_skipped.values())
    metrics = {"listed": listed, "evaluated": len(done), "skipped": dict(skipped),
               **compute_metrics(tasks, truth, pred, spread, age_estimate),
               "faces_found": {"found": len(done), "of": len(samples),
                               "share": len(done) / len(samples) if samples else None,
                               "not_found": {r: n for r, n in skipped.items() if r not in loader_skipped}}}
    return SplitResult(name, metrics, tuple(s.file for s in done), truth, pred, spread)


def load_split(protocol: str, data: Path, split: str, splits_dir: Path | None,
               attributes: Sequence[str]) -> tuple[tuple[Sample, ...], dict[str, int]]:
    try:
        if protocol == "celeba":
            if split != "test":
                raise EvaluateError(f"CelebA has no '{split}' split (only test)")
            s = load_celeba(data, attributes)
            return s.test, {}
        if protocol == "mtfl":
            from training.mtfl import load_mtfl

            if split not in ("test", "valid"):
                raise EvaluateError(f"MTFL has no '{split}' split (test = testing.txt, the AFLW faces; "
                                    "valid = the shipped 10 % of training.txt)")
            s = load_mtfl(data, splits_dir)
            return (s.test if split == "test" else s.valid), {}
        samples, skipped, _ = load_utkface_part(protocol, data, split, splits_dir)
        return samples, skipped
    except DataError as e:
        raise EvaluateError(str(e)) from e


def data_tasks(protocol: str) -> tuple[TaskSpec, ...]:
    """The tasks (and label orders) a dataset's targets follow; () where not fixed (CelebA)."""
    if protocol == "mtfl":
        from training.mtfl import MTFL_TASKS
        return MTFL_TASKS
    if protocol in ("coral", "full"):
        from training.utkface import utk_tasks
        return tuple(utk_tasks(protocol))
    return ()


def mtfl_landmarks(root: Path) -> dict[str, np.ndarray]:
    """MTFL's given 5 points of every listed image (file -> [5,2]), both lists."""
    from training.mtfl import TEST_LIST, TRAIN_LIST, read_list

    try:
        return {r.file: r.landmarks_xy for name in (TRAIN_LIST, TEST_LIST) for r in read_list(root, name)}
    except DataError as e:
        raise EvaluateError(str(e)) from e


def write_predictions(path: Path, result: SplitResult) -> None:
    names, spread = list(result.truth), list(result.spread)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file"] + [f"{n}_true" for n in names] + [f"{n}_pred" for n in names]
                   + [spread_key(n) for n in spread])
        for i, file in enumerate(result.files):
            w.writerow([file] + [f"{result.truth[n][i]:g}" for n in names] + [f"{result.pred[n][i]:.4g}" for n in names]
                       + [f"{result.spread[n][i]:.4g}" for n in spread])


def save_engine_chips(folder: Path, made: Sequence[Chips], source: str) -> None:
    """The chips --from-images made, as a chip cache (chips.npy + index.csv, training.chips' format) plus
    source.json: a later ``--chips FOLDER`` scores another model on the very same engine chips,
    without detecting again (detection costs minutes; the network seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    status = {v: k for k, v in CACHE_REASONS.items()}
    chips = np.concatenate([c.chips for c in made]) if made else np.zeros((0, 150, 150, 3), np.uint8)
    np.save(folder / "chips.npy", chips)
    if made and all(c.boxes_xyxy is not None for c in made):  # the detector's boxes, row for row (for the peers)
        np.save(folder / "boxes.npy", np.concatenate([c.boxes_xyxy for c in made]).astype(np.float32))
    with (folder / "index.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "row", "status"])
        row = 0
        for c in made:
            for s in c.samples:
                w.writerow([s.file, row, "ok"])
                row += 1
            w.writerows([file, -1, status.get(reason, reason)] for file, reason in c.skipped.items())
    (folder / "source.json").write_text(json.dumps({"source": source}))


def cache_source(chips_dir: Path) -> str:
    meta = Path(chips_dir) / "source.json"
    if meta.is_file():
        return f"chip cache {chips_dir}, saved by evaluate --save-chips from: {json.loads(meta.read_text())['source']}"
    return f"chip cache {chips_dir}"


def evaluate(model: Path, data: Path, protocol: str, out_dir: Path, chips_dir: Path | None = None,
             from_images: bool = False, splits: Sequence[str] | None = None, splits_dir: Path | None = None,
             attributes: Sequence[str] = ("Male", "Young"), backend: str = "auto", detector: str = "hog",
             upsample: int = 0, progress: bool = True, command: str = "", flip_tta: bool = False,
             save_chips: Path | None = None) -> dict:
    """Evaluate ``model`` on each split; write metrics.json, report.md, plots, predictions; return the metrics."""
    if protocol not in PROTOCOLS:
        raise EvaluateError(f"unknown protocol '{protocol}' (choose from: {', '.join(PROTOCOLS)})")
    if (chips_dir is None) == (not from_images):
        raise EvaluateError("give either --chips CACHE (cached chips) or --from-images "
                            "(the engine's detect + align on every image), not both or neither")
    if splits is None:
        splits = ("test",) if protocol in ("celeba", "mtfl") else ("test", "test_dedup")
    predictor = load_predictor(model, backend, flip_tta)
    check_labels(predictor.tasks, data_tasks(protocol))
    landmarks = mtfl_landmarks(Path(data)) if protocol == "mtfl" and from_images else None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_dir = Path(data) / "img_align_celeba" if protocol == "celeba" and (Path(data) / "img_align_celeba").is_dir() \
        else Path(data)
    results, memo = [], Memo()
    made: list[Chips] = []
    for split in splits:
        samples, loader_skipped = load_split(protocol, Path(data), split, splits_dir, attributes)
        todo = memo.todo(samples)
        if chips_dir is not None:
            memo.add(predictor, chips_from_cache(chips_dir, todo))
        else:
            made.append(chips_from_images(image_dir, todo, detector, upsample, progress, landmarks))
            memo.add(predictor, made[-1])
        result = evaluate_split(predictor, split, samples, loader_skipped, memo)
        write_predictions(out_dir / f"predictions_{split}.csv", result)
        results.append(result)
    source = (cache_source(chips_dir) if chips_dir is not None
              else f"images, engine detect ({detector}, upsample {upsample}, still border) + dlib-5 align")
    if protocol == "mtfl" and chips_dir is None:
        source += "; the labelled face = the detection holding the centre of MTFL's landmarks"
    if save_chips is not None and made:
        save_engine_chips(Path(save_chips), made, source)
    metrics = {
        "format": "faceattr-eval/1", "model": str(model), "model_name": predictor.name,
        "runtime": predictor.runtime, "data": str(data), "dataset": dataset_of(protocol), "protocol": protocol,
        "source": source,
        "command": command, "splits": {r.name: r.metrics for r in results},
        "reference": REFERENCE if protocol == "coral" else None,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    write_report(metrics, results, out_dir)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="exported .onnx (run through the engine) or a .pt checkpoint")
    p.add_argument("--data", type=Path, required=True, help="image folder (UTKFace), CelebA root or the MTFL folder")
    p.add_argument("--dataset", choices=tuple(DATASETS), help="utkface (default; see --protocol), celeba or mtfl "
                   "(training.txt/testing.txt and the images, e.g. cache/mtfl_src/MTFL)")
    p.add_argument("--protocol", choices=PROTOCOLS, help="UTKFace protocol: coral (default) or full")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--chips", type=Path, help="chip cache made by `python -m training.chips`")
    src.add_argument("--from-images", action="store_true", help="run the engine's detect + align on each image")
    p.add_argument("--split", choices=("test", "test_dedup", "valid"),
                   help="one split only (default: test and test_dedup for UTKFace; valid = the training run's validation split)")
    p.add_argument("--flip-tta", action="store_true", help=".pt only: average each chip's outputs with its mirror's")
    p.add_argument("--splits-dir", type=Path, help="protocol files (default: training/splits)")
    p.add_argument("--attributes", nargs="+", default=["Male", "Young"], help="CelebA attributes")
    p.add_argument("--backend", default="auto", help="ONNX Runtime backend for .onnx models (auto, cpu, cuda, tensorrt)")
    p.add_argument("--detector", default="hog", choices=DETECTORS, help="with --from-images: the engine's face detector")
    p.add_argument("--upsample", type=int, default=0, help="with --from-images: detector upsampling")
    p.add_argument("--save-chips", type=Path, help="with --from-images: keep the engine's chips as a cache in this folder "
                   "(then --chips FOLDER scores other models on the same chips)")
    p.add_argument("-o", "--out", type=Path, required=True, help="report folder to write")
    args = p.parse_args(argv)
    command = "python -m training.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    protocol = args.protocol or DATASETS[args.dataset or "utkface"][0]
    if args.dataset and protocol not in DATASETS[args.dataset]:
        print(f"error: --protocol {protocol} is not a protocol of --dataset {args.dataset}", file=sys.stderr)
        return 2
    try:
        metrics = evaluate(args.model, args.data, protocol, args.out, args.chips, args.from_images,
                           (args.split,) if args.split else None, args.splits_dir, args.attributes, args.backend,
                           args.detector, args.upsample, command=command, flip_tta=args.flip_tta,
                           save_chips=args.save_chips)
    except EvaluateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split, m in metrics["splits"].items():
        heads = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if k.endswith(("_acc", "_mae", "_cs5")) and v is not None)
        skipped = ", ".join(f"{r} {n}" for r, n in sorted(m["skipped"].items())) or "none"
        print(f"{split}: {heads} ({m['evaluated']} of {m['listed']} evaluated; skipped: {skipped})")
        for b in m.get("bands", []):
            if b["n"]:
                print(f"  age {b['band']}: {b['n']} faces, age MAE {b['age_mae']:.3g}"
                      + "".join(f", {k} {b[k]:.4g}" for k in ("gender_acc", "race_acc") if b.get(k) is not None))
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
