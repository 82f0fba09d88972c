"""Statically quantize a FaceAttr ONNX model to INT8 with calibration chips made by the engine.

    python -m training.quantize assets/models/faceattr-utkface.onnx --calib cache/utkface \\
        -o assets/models/faceattr-utkface.int8.onnx
    python -m training.quantize MODEL.onnx --calib ../shared/data/utkface -o MODEL.int8.onnx

Redo this for every new default model: the engine's ``--precision auto`` only uses the
``<stem>.int8.onnx`` sibling when the SHA-256 of the float file it was quantized from (recorded
in the description, see below) matches the float file beside it, so a stale int8 file is ignored.
Then check the bar of issue 12 (INT8 within 0.3 points of gender/race accuracy and 0.1 years of
age MAE on the CORAL test split) with ``python -m training.evaluate`` on both files.

ONNX Runtime's ``quantize_static``: QDQ format, INT8 weights per output channel, INT8
activations whose ranges come from calibration chips. The chips are the app's: either a chip
cache made by ``python -m training.chips`` (the engine's detector + ``engine.align``) or a folder
of images run through the same detector + aligner here. Only images of the training split
(``--split``, default the CORAL train list) are used, picked with a fixed seed, so no test image
calibrates the model that is then evaluated on the test split.

Three choices were measured (400 CORAL-test chips, mean |age difference| from the float model): the
embedding and heads stay float (:func:`float_tail`; 2.45 -> 0.30 years) and the weights use 7 bits
(``reduce_range``; 8-bit weights gave 1.70 years with the heads in float). On x86 CPUs without
VNNI (this machine: AVX2 only), ONNX Runtime's u8*s8 kernels add pairs of products in int16
(``vpmaddubsw``), which can saturate; its quantization guide suggests ``reduce_range`` then. And
the activations are uint8: with int8 activations this onnxruntime (1.32, x86) fused only 15 of the
29 convolutions into QLinearConv (the rest ran in float between Q/DQ pairs and layout transposes,
slower than the float model); with uint8 all 29 and the residual adds are fused. Activation ranges
are ONNX Runtime's percentile calibration (99.999 %): on the CORAL test split from images it kept
race accuracy within 0.03 points of the float model, min-max within 0.31 (benchmarks/RESULTS.md).

The float file's FaceAttr description (metadata key ``faceattr``) is carried over unchanged
except its ``training`` dict, which gains ``precision``, ``calibration``, ``quantized_from`` and
``source_sha256`` (how the engine tells a current int8 file from a stale one).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from engine.modelspec import METADATA_KEY, ModelDescriptionError, ModelSpec

DEFAULT_SPLIT = Path(__file__).resolve().parent / "splits" / "coral_train80.csv"
DEFAULT_COUNT = 300
CALIB_BATCH = 8


class QuantizeError(RuntimeError):
    """Quantization cannot run as asked; the message names the file and the reason."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_files(split: Path | None) -> set[str] | None:
    """Image names listed in a split CSV (column ``file``), or None for no restriction."""
    if split is None:
        return None
    if not Path(split).is_file():
        raise QuantizeError(f"{split}: split list not found")
    with Path(split).open(newline="") as f:
        names = {row["file"] for row in csv.DictReader(f) if row.get("file")}
    if not names:
        raise QuantizeError(f"{split}: no 'file' column or no rows")
    return names


def chips_from_cache(folder: Path, allowed: set[str] | None, count: int, seed: int) -> tuple[np.ndarray, str]:
    """``count`` chips of allowed files from a ``training.chips`` cache, picked with ``seed``."""
    from training.chips import ChipCache

    cache = ChipCache.open(folder)
    names = sorted(n for n in cache.row_of if allowed is None or n in allowed)
    if not names:
        raise QuantizeError(f"{folder}: the chip cache holds no chip of the split's files")
    pick = np.random.default_rng(seed).permutation(len(names))[:count]
    rows = sorted(cache.row_of[names[i]] for i in pick)
    return np.ascontiguousarray(cache.chips[rows]), f"{len(rows)} chips from the cache {folder.name}/"


def chips_from_images(folder: Path, allowed: set[str] | None, count: int, seed: int,
                      chip_size: int, padding: float) -> tuple[np.ndarray, str]:
    """Detect + align (the engine's HOG detector and dlib-5 aligner) images picked with ``seed``
    until ``count`` chips are made; images without a face are skipped and counted."""
    from engine.align import Aligner
    from training.chips import IMAGE_SUFFIXES, align_largest_face, cache_detectors

    files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if allowed is not None:
        files = [f for f in files if f in allowed]
    if not files:
        raise QuantizeError(f"{folder}: no images{' of the split' if allowed is not None else ''} here")
    detectors, aligner = cache_detectors(), Aligner.create(chip_size, padding)
    chips, skipped = [], 0
    for i in np.random.default_rng(seed).permutation(len(files)):
        if len(chips) >= count:
            break
        image = cv2.imread(str(folder / files[i]), cv2.IMREAD_COLOR)
        found = align_largest_face(image, detectors, aligner) if image is not None else None
        if found is None:
            skipped += 1
            continue
        chips.append(found[1])
    if not chips:
        raise QuantizeError(f"{folder}: no face found in any of {skipped} images")
    note = f"{len(chips)} images of {folder.name}/ (engine HOG + dlib-5 align; {skipped} without a face skipped)"
    return np.stack(chips), note


def calibration_chips(calib: Path, split: Path | None, count: int, seed: int,
                      chip_size: int = 150, padding: float = 0.25) -> tuple[np.ndarray, str]:
    """uint8 chips [N, size, size, 3] and a one-line note of where they came from."""
    calib = Path(calib)
    allowed = split_files(split)
    if calib.is_dir() and (calib / "index.csv").is_file() and (calib / "chips.npy").is_file():
        chips, note = chips_from_cache(calib, allowed, count, seed)
    elif calib.is_dir():
        chips, note = chips_from_images(calib, allowed, count, seed, chip_size, padding)
    elif calib.suffix == ".npy" and calib.is_file():  # a plain array of chips (tests, ad hoc sets)
        chips = np.load(calib)[:count]
        note = f"{len(chips)} chips from {calib.name}"
    else:
        raise QuantizeError(f"{calib}: not a chip cache, an image folder or a .npy of chips")
    if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (chip_size, chip_size, 3):
        raise QuantizeError(f"{calib}: chips are {chips.dtype} {list(chips.shape)}, "
                            f"the model needs uint8 [N, {chip_size}, {chip_size}, 3]")
    split_note = f", split {split.name}, seed {seed}" if split is not None else f", seed {seed}"
    return chips, note + split_note


class ChipReader:
    """onnxruntime's CalibrationDataReader over an array of chips, in small batches."""

    def __init__(self, input_name: str, chips: np.ndarray, batch: int = CALIB_BATCH) -> None:
        batch = max(b for b in range(1, batch + 1) if len(chips) % b == 0)  # equal batches: histograms need them
        self._all = [{input_name: np.ascontiguousarray(chips[i:i + batch])} for i in range(0, len(chips), batch)]
        self._batches = iter(self._all)

    def get_next(self):
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = iter(self._all)


POOL_TO_VECTOR = ("ReduceMean", "GlobalAveragePool", "GlobalMaxPool", "Flatten")
_QUANT_SUFFIXES = ("_scale", "_zero_point", "_quantized")


def float_tail(model) -> list[str]:
    """Names of the nodes kept in float: everything after the backbone's pooling to a vector
    (``ReduceMean``, ``Global*Pool``, ``Flatten``; that node included): the embedding and the task
    heads, walking back from the graph's outputs (never past a convolution).

    Why: the heads cost next to nothing beside the convolutions, but quantizing them is what hurt.
    On the shipped model, 400 CORAL-test chips: age differed from the float model's by 2.45 years
    on average with the whole graph quantized (7-bit weights), by 0.30 with the heads in float.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    tail, todo = [], [o.name for o in model.graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in tail or node.op_type == "Conv":
            continue
        tail.append(node.name)
        if node.op_type not in POOL_TO_VECTOR:
            todo.extend(node.input)
    return tail


def _rename_clashing_initializers(model) -> None:
    """ONNX Runtime names a tensor T's quantization parameters ``T_scale`` / ``T_zero_point``; an
    initializer that already bears such a name (the fixture's ``age_scale`` beside its output
    ``age``) would be taken for them. Rename those initializers first."""
    values = {n for node in model.graph.node for n in (*node.input, *node.output)}
    values |= {i.name for i in model.graph.input} | {o.name for o in model.graph.output}
    renamed = {}
    for init in model.graph.initializer:
        stem = next((init.name[:-len(x)] for x in _QUANT_SUFFIXES if init.name.endswith(x)), None)
        if stem is not None and stem in values:
            renamed[init.name] = init.name + "_faceattr"
            init.name = renamed[init.name]
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]


def read_spec(model) -> ModelSpec:
    meta = {p.key: p.value for p in model.metadata_props}
    try:
        return ModelSpec.from_json(meta.get(METADATA_KEY), source="input model")
    except ModelDescriptionError as e:
        raise QuantizeError(str(e)) from e


def quantize(model_path: Path, out_path: Path, chips: np.ndarray, calibration_note: str,
             exclude: tuple[str, ...] = (), per_channel: bool = True, method: str = "percentile",
             preprocess: bool = True, keep_float_tail: bool = True, reduce_range: bool = True,
             activation: str = "uint8", weight: str = "int8") -> dict:
    """Write the int8 model to ``out_path``; returns the ``training`` entries it added."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_path, out_path = Path(model_path), Path(out_path)
    user_exclude = tuple(exclude)
    if not model_path.is_file():
        raise QuantizeError(f"{model_path}: model file not found")
    source = onnx.load(str(model_path))
    spec = read_spec(source)
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    with tempfile.TemporaryDirectory(prefix="faceattr-quant-") as tmp:
        prepared = model_path
        if preprocess:  # shape inference + graph optimisation (fuses the affine Mul/Add into convs)
            prepared = Path(tmp) / "prepared.onnx"
            try:
                quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
            except Exception as e:  # noqa: BLE001 - a graph the pre-processor cannot take still quantizes
                print(f"note: pre-processing skipped ({type(e).__name__}: {e})", file=sys.stderr)
                prepared = model_path
        proto = onnx.load(str(prepared))
        _rename_clashing_initializers(proto)
        for i, node in enumerate(proto.graph.node):  # nodes_to_exclude works by name: every node needs one
            node.name = node.name or f"{node.op_type}_{i}_faceattr"
        exclude = tuple(exclude) + (tuple(float_tail(proto)) if keep_float_tail else ())
        prepared = Path(tmp) / "ready.onnx"
        onnx.save(proto, str(prepared))
        quantize_static(
            str(prepared), str(Path(tmp) / "int8.onnx"), ChipReader(spec.input.name, chips),
            quant_format=QuantFormat.QDQ, per_channel=per_channel, reduce_range=reduce_range,
            activation_type=types[activation], weight_type=types[weight],
            nodes_to_exclude=list(exclude), calibrate_method=methods[method],
            extra_options={"CalibMaxIntermediateOutputs": 8})
        quantized = onnx.load(str(Path(tmp) / "int8.onnx"))
    added = {"precision": "int8",
             "calibration": f"{calibration_note}; onnxruntime quantize_static QDQ, "
                            f"{'per-channel' if per_channel else 'per-tensor'} {weight} weights"
                            f"{' (7-bit range)' if reduce_range else ''}, {activation} activations, {method}"
                            + (", heads in float" if keep_float_tail else "")
                            + (f", float nodes: {', '.join(user_exclude)}" if user_exclude else ""),
             "quantized_from": model_path.name,
             "source_sha256": file_sha256(model_path)}
    description = json.loads({p.key: p.value for p in source.metadata_props}[METADATA_KEY])  # as written
    description["training"] = {**description.get("training", {}), **added}
    props = {p.key: p.value for p in source.metadata_props}
    props[METADATA_KEY] = json.dumps(description)
    del quantized.metadata_props[:]
    for key, value in props.items():
        quantized.metadata_props.add(key=key, value=value)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    onnx.save(quantized, str(partial))
    partial.replace(out_path)
    return added


def time_per_face(model_path: Path, int8_path: Path, chips: np.ndarray, batches=(1, 8), reps: int = 200,
                  threads: int = 1) -> dict[str, dict[int, tuple[float, float]]]:
    """Median (wall, CPU) ms per face of the float and the int8 file at ``threads`` intra-op
    threads, through the engine's session (``FaceAttrModel.predict_raw``), per batch size.

    With 1 thread ONNX Runtime computes in the calling thread, so the thread's CPU time is the
    network's own work: on a machine shared with other jobs it moves far less than the wall time."""
    import time

    from engine.model import FaceAttrModel

    out: dict[str, dict[int, tuple[float, float]]] = {}
    for label, path, precision in (("fp32", model_path, "fp32"), ("int8", int8_path, "int8")):
        model = FaceAttrModel.load(path, backend="cpu", intra_op_threads=threads, precision=precision)
        out[label] = {}
        for b in batches:
            batch = np.ascontiguousarray(chips[np.arange(b) % len(chips)])
            for _ in range(5):
                model.predict_raw(batch)
            wall, cpu = [], []
            for _ in range(max(10, reps // b)):
                t0, c0 = time.perf_counter(), time.thread_time()
                model.predict_raw(batch)
                wall.append((time.perf_counter() - t0) * 1000.0)
                cpu.append((time.thread_time() - c0) * 1000.0)
            out[label][b] = (float(np.median(wall)) / b, float(np.median(cpu)) / b)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.quantize", description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="float FaceAttr .onnx")
    p.add_argument("--calib", type=Path, required=True,
                   help="chip cache (training.chips), folder of face images, or a .npy of uint8 chips")
    p.add_argument("-o", "--out", type=Path, help="int8 file (default: <stem>.int8.onnx beside the model)")
    p.add_argument("--split", default=str(DEFAULT_SPLIT),
                   help="CSV whose 'file' column lists the images allowed for calibration, or 'none' "
                        "(default: the CORAL train list)")
    p.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"calibration chips (default {DEFAULT_COUNT})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="percentile",
                   help="activation range calibration (default percentile: see the module's docstring)")
    p.add_argument("--full-range", action="store_true",
                   help="8-bit weights (default 7-bit: see the module's docstring)")
    p.add_argument("--activation", choices=("int8", "uint8"), default="uint8",
                   help="activation type (default uint8: see the module's docstring)")
    p.add_argument("--weight", choices=("int8", "uint8"), default="int8")
    p.add_argument("--per-tensor", action="store_true", help="one scale per weight tensor, not per channel")
    p.add_argument("--exclude", nargs="*", default=(), metavar="NODE",
                   help="more node names kept in float (names as in the pre-processed graph)")
    p.add_argument("--quantize-tail", action="store_true",
                   help="quantize the embedding and heads too (default: they stay float, see float_tail)")
    p.add_argument("--time", action="store_true",
                   help="do not quantize: time MODEL against its int8 file (-o) in ms/face, 1 thread, batch 1 and 8")
    p.add_argument("--no-preprocess", action="store_true", help="skip onnxruntime's quant_pre_process")
    args = p.parse_args(argv)
    out = args.out or args.model.with_name(args.model.stem + ".int8.onnx")
    split = None if args.split.lower() == "none" else Path(args.split)
    try:
        import onnx

        if not args.model.is_file():
            raise QuantizeError(f"{args.model}: model file not found")
        spec = read_spec(onnx.load(str(args.model), load_external_data=False))
        chips, note = calibration_chips(args.calib, split, args.count, args.seed,
                                        spec.alignment.chip_size, spec.alignment.padding)
        if args.time:
            if not out.is_file():
                raise QuantizeError(f"{out}: int8 model file not found")
            import os

            timings = time_per_face(args.model, out, chips)
            load = "load average %.2f %.2f %.2f" % os.getloadavg()
            for label, rows in timings.items():
                print(f"{label}: " + ", ".join(f"batch {b} {w:.2f} ms/face wall, {c:.2f} CPU"
                                               for b, (w, c) in rows.items())
                      + f" (1 intra-op thread; {load})")
            return 0
        added = quantize(args.model, out, chips, note, tuple(args.exclude), not args.per_tensor,
                         args.method, not args.no_preprocess, not args.quantize_tail,
                         not args.full_range, args.activation, args.weight)
    except (QuantizeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = out.stat().st_size / 2**20
    print(f"{out} ({size:.1f} MiB): {added['calibration']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
