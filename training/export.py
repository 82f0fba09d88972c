"""Export a trained checkpoint to the FaceAttr ONNX contract, and prove the file is right.

    python -m training.export runs/utk/best.pt -o assets/models/faceattr-utkface.onnx \\
        [--metrics report/metrics.json] [--name NAME] [--chips cache/utkface] [--flip-tta]
        [--calibration runs/utk/calibration.json]

1. rebuild the net (``training.model.build_from_checkpoint``) and wrap it in
   :class:`ExportWrapper`: uint8 NHWC chips in (cast + normalisation inside the graph),
   one output per task named after it, in the contract's form (probabilities / values);
2. ``torch.onnx.export`` with the dynamo exporter (opset 18, needs onnxscript), dynamic batch;
3. the JSON description (``engine.modelspec.ModelSpec``) into metadata key ``faceattr``;
4. parity: torch vs ONNX Runtime on a batch of real chips (random uint8 chips without a
   cache), max |diff| <= 1e-4 per output, else exit 1 and the file is kept aside as
   ``<out>.rejected.onnx``, never at ``<out>``;
5. the engine loads it (``engine.model.FaceAttrModel``) and decodes the batch.

``--calibration`` (``python -m training.calibrate``'s JSON) divides each listed task's logits by
its temperature inside the graph, and the description's ``training.temperature_scaling`` keeps
the temperatures with their validation ECE / NLL before and after (not ``training.calibration``:
``training.quantize`` writes its INT8 range calibration there).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from engine.align import CHIP_SIZE
from engine.modelspec import METADATA_KEY, AlignmentSpec, InputSpec, ModelSpec, Normalisation, TaskSpec
from training import checkpoint
from training.calibrate import Calibration, CalibrationError, read_calibration
from training.checkpoint import git_commit
from training.task_heads import calibrated_kinds, task_head

REPO_ROOT = Path(__file__).resolve().parent.parent
PARITY_TOL = 1e-4
OPSET = 18
DEFAULT_CHIPS = REPO_ROOT / "cache" / "utkface"
DATASET_NAMES = {"utkface": "UTKFace", "celeba": "CelebA"}


class ExportError(RuntimeError):
    """The checkpoint cannot be exported, or the exported file fails its checks."""


class ExportWrapper(nn.Module):
    """MultiTaskNet logits -> the model contract's outputs, one per task, in task order.

    binary: sigmoid = p(labels[1]) [N]; multiclass / expectation: softmax [N, C];
    regression: lo + v * (hi - lo) in the task's unit [N] (v as is without a range);
    landmarks: [N, K, 2] as the net gives them. The net itself casts and normalises the
    uint8 chips, so the graph's input is the chip exactly as the engine makes it.

    ``temperatures`` (task name -> T > 0, binary and multiclass tasks only): the task's logits
    are divided by T before the sigmoid / softmax (temperature scaling, training/calibrate.py),
    per view under flip TTA, so the averaged probabilities are those of calibrated views.

    ``flip_tta``: the graph runs the chip and its mirror image as one batch of 2N and averages
    the two contract outputs (probabilities, distributions, values) per task; the inputs and
    outputs stay the same, so the engine loads it unchanged. Landmarks are never averaged
    (a mirrored face's points are not the same points); a task whose labels swap sides
    (``mirror``: head pose) has its mirrored view's columns permuted before the average.
    """

    def __init__(self, net: nn.Module, flip_tta: bool = False, temperatures: Mapping[str, float] | None = None,
                 mirror: Mapping[str, Sequence[int]] | None = None):
        super().__init__()
        self.net = net
        self.tasks: tuple[TaskSpec, ...] = tuple(net.tasks)
        self.flip_tta = bool(flip_tta) and all(task_head(t).flip_invariant for t in self.tasks)
        self.temperatures = check_temperatures(self.tasks, temperatures or {})
        # a task whose labels swap sides in a mirror image (head pose): the mirrored view's
        # probability of label k is the original's of mirror[k]
        self.mirror = {k: list(v) for k, v in (mirror or {}).items()}

    def _output(self, task: TaskSpec, y: torch.Tensor) -> torch.Tensor:
        return task_head(task).export_output(task, y, self.temperatures.get(task.name))

    def forward(self, chips: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.flip_tta:
            raw = self.net(chips)
            return tuple(self._output(t, raw[t.name]) for t in self.tasks)
        n = chips.shape[0]
        raw = self.net(torch.cat([chips, chips.flip(2)], dim=0))  # NHWC: dim 2 is the width
        outs = []
        for t in self.tasks:
            y = self._output(t, raw[t.name])
            mirrored = y[n:][:, self.mirror[t.name]] if t.name in self.mirror else y[n:]
            outs.append((y[:n] + mirrored) * 0.5)
        return tuple(outs)


def check_temperatures(tasks: Sequence[TaskSpec], temperatures: Mapping[str, float]) -> dict[str, float]:
    """Temperatures as floats; ExportError for an unknown task, a kind without logits to scale,
    or a T that is not a finite number above 0."""
    by_name = {t.name: t for t in tasks}
    out = {}
    for name, value in temperatures.items():
        if name not in by_name:
            raise ExportError(f"temperature for task '{name}', which the network does not have "
                              f"(it has: {', '.join(by_name)})")
        if not task_head(by_name[name]).calibrated:
            raise ExportError(f"task '{name}' is {by_name[name].kind}: temperatures are for "
                              f"{' and '.join(calibrated_kinds())} tasks")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ExportError(f"task '{name}': temperature should be a number above 0, got {value!r}")
        out[name] = float(value)
    return out


def contract_output(task: TaskSpec, y: torch.Tensor) -> torch.Tensor:
    """One task's logits / raw value -> its contract output (see ExportWrapper; the kind's
    ``contract_output``, training/task_heads.py)."""
    return task_head(task).contract_output(task, y)


def load_checkpoint(path: Path) -> dict:
    """A ``faceattr-ckpt/1`` checkpoint as a dict; ExportError with the reason otherwise."""
    try:
        return checkpoint.load_checkpoint(path)
    except checkpoint.CheckpointError as e:
        raise ExportError(str(e)) from e


def net_from_checkpoint(ckpt: Mapping, source: str = "checkpoint") -> nn.Module:
    from training.model import build_from_checkpoint

    try:
        return build_from_checkpoint(ckpt).eval()
    except (KeyError, ValueError, RuntimeError) as e:
        raise ExportError(f"{source}: cannot rebuild the network ({type(e).__name__}: {e})") from e


def training_info(ckpt: Mapping) -> dict:
    """The description's ``training`` block: data, protocol, config, commit, date."""
    cfg = ckpt.get("config") or {}
    data = cfg.get("data", {}) if isinstance(cfg.get("data"), Mapping) else {}
    dataset = str(data.get("dataset") or "unknown")
    info = {
        "data": DATASET_NAMES.get(dataset, dataset),
        "protocol": str(data.get("protocol") or "unknown") if dataset != "celeba" else "official partition",
        "attributes": list(data.get("attributes", ())) if dataset == "celeba" else None,
        "config": str(cfg.get("name") or cfg.get("preset") or "unknown"),
        "commit": str(ckpt.get("git_commit") or git_commit()),
        "export_commit": git_commit(),
        "date": str(ckpt.get("date") or dt.date.today().isoformat()),
        "epoch": ckpt.get("epoch"),
    }
    return {k: v for k, v in info.items() if v is not None}


def summary_metrics(metrics: Mapping) -> dict:
    """The headline numbers of an evaluate ``metrics.json`` for the description."""
    out: dict = {}
    splits = metrics.get("splits", {})
    for split, block in splits.items():
        keys = {k: v for k, v in block.items() if k.endswith(("_acc", "_mae", "_cs5")) and isinstance(v, (int, float))}
        keys["evaluated"] = block.get("evaluated")
        if split == "test":
            out.update(keys)
            out["split"] = f"{metrics.get('protocol', 'unknown')}-test"
        else:
            out[split] = keys
    out["source"] = metrics.get("source", "")
    return out


def build_spec(net: nn.Module, ckpt: Mapping, name: str | None = None, metrics: Mapping | None = None,
               flip_tta: bool = False, calibration: Calibration | None = None) -> ModelSpec:
    bb = net.backbone
    info = training_info(ckpt)
    if flip_tta:
        info["flip_tta"] = True
    if calibration is not None:
        info["temperature_scaling"] = calibration.description
    if name is None:
        kind = "mtl" if len(net.tasks) > 1 else net.tasks[0].name
        name = f"{info['data'].lower()}-{bb.name}-{kind}"
    size = CHIP_SIZE  # the net resizes the chip to its backbone's input itself
    return ModelSpec(
        name=name, tasks=tuple(net.tasks), backbone=bb.name,
        input=InputSpec(size=size, normalisation=Normalisation(tuple(float(v) for v in bb.mean_rgb), float(bb.scale))),
        alignment=AlignmentSpec(chip_size=size),
        training=info, metrics=dict(metrics or {}),
    )


def export_onnx(wrapper: ExportWrapper, path: Path, size: int) -> None:
    """torch.onnx.export with the dynamo exporter (opset 18), batch dimension dynamic."""
    names = [t.name for t in wrapper.tasks]
    example = (torch.zeros(2, size, size, 3, dtype=torch.uint8),)
    batch = torch.export.Dim("batch", min=1, max=4096)
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(wrapper, example, dynamo=True, verbose=False, opset_version=OPSET, input_names=["chips"],
                                    output_names=names, dynamic_shapes=({0: batch},), external_data=False)
    quiet.setLevel(level)
    program.save(str(path), external_data=False)


def write_description(path: Path, spec: ModelSpec) -> None:
    model = onnx.load(str(path))
    for p in list(model.metadata_props):
        if p.key == METADATA_KEY:
            model.metadata_props.remove(p)
    model.metadata_props.add(key=METADATA_KEY, value=spec.to_json())
    model.doc_string = f"FaceAttr model {spec.name}: " + ", ".join(t.name for t in spec.tasks)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def parity_chips(size: int, chips_dir: Path | None, n: int = 16) -> tuple[np.ndarray, str]:
    """A batch of real chips spread over a cache, or seeded random uint8 chips without one."""
    if chips_dir is not None and (Path(chips_dir) / "index.csv").is_file():
        from training.chips import ChipCache

        cache = ChipCache.open(chips_dir)
        if len(cache.chips) and cache.chips.shape[1:] == (size, size, 3):
            rows = np.unique(np.linspace(0, len(cache.chips) - 1, min(n, len(cache.chips))).astype(int))
            return np.array(cache.chips[rows]), f"{len(rows)} real chips from {chips_dir}"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), f"{n} random uint8 chips (no chip cache)"


@dataclass(frozen=True)
class Parity:
    max_abs_diff: dict[str, float]
    batch: str

    @property
    def ok(self) -> bool:
        return all(v <= PARITY_TOL for v in self.max_abs_diff.values())


def check_parity(wrapper: ExportWrapper, path: Path, chips: np.ndarray, batch: str) -> Parity:
    with torch.no_grad():
        want = [t.numpy() for t in wrapper(torch.from_numpy(chips))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([t.name for t in wrapper.tasks], {"chips": chips})
    return Parity({t.name: float(np.max(np.abs(w - g))) if w.size else 0.0
                   for t, w, g in zip(wrapper.tasks, want, got)}, batch)


def engine_check(path: Path, chips: np.ndarray) -> list[str]:
    """Load through the engine and decode the batch; one line per task for the first chip."""
    from engine.model import FaceAttrModel, format_value

    model = FaceAttrModel.load(path, backend="cpu", precision="fp32")
    decoded = model.decode(model.predict_raw(chips))
    return [f"{t.name}: {format_value(t, decoded[t.name], 0)}" for t in model.spec.tasks]


@dataclass(frozen=True)
class ExportResult:
    path: Path
    spec: ModelSpec
    parity: Parity
    engine_lines: tuple[str, ...]
    notes: tuple[str, ...] = ()


def export(ckpt_path: Path, out: Path, metrics_path: Path | None = None, name: str | None = None,
           chips_dir: Path | None = DEFAULT_CHIPS, flip_tta: bool = False,
           calibration_path: Path | None = None) -> ExportResult:
    """Checkpoint -> checked ONNX file at ``out``; ExportError if any step fails."""
    ckpt = load_checkpoint(ckpt_path)
    net = net_from_checkpoint(ckpt, str(ckpt_path))
    calibration = None
    if calibration_path is not None:
        try:
            calibration = read_calibration(calibration_path, ckpt)
        except CalibrationError as e:
            raise ExportError(str(e)) from e
    metrics = None
    if metrics_path is not None:
        try:
            metrics = summary_metrics(json.loads(Path(metrics_path).read_text()))
        except (OSError, ValueError, AttributeError) as e:
            raise ExportError(f"{metrics_path}: cannot read evaluate metrics ({e})") from e
    from training.datasets import label_mirrors

    dataset = str(((ckpt.get("config") or {}).get("data") or {}).get("dataset") or "")
    wrapper = ExportWrapper(net, flip_tta, calibration.temperatures if calibration else None,
                            label_mirrors(dataset)).eval()
    spec = build_spec(net, ckpt, name, metrics, wrapper.flip_tta, calibration)
    notes = []
    if calibration is not None and calibration.flip_tta != wrapper.flip_tta:
        notes.append(f"the temperatures were fitted {'with' if calibration.flip_tta else 'without'} flip TTA and this "
                     f"graph runs {'with' if wrapper.flip_tta else 'without'} it: its confidences are near, not exactly, "
                     "the calibrated ones")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_path = Path(tmp) / out.name
        try:
            export_onnx(wrapper, tmp_path, spec.input.size)
        except Exception as e:  # the exporter raises many types; the reason is in the message
            raise ExportError(f"{ckpt_path}: torch.onnx.export failed ({type(e).__name__}: {e})") from e
        write_description(tmp_path, spec)
        chips, batch = parity_chips(spec.input.size, chips_dir)
        parity = check_parity(wrapper, tmp_path, chips, batch)
        if not parity.ok:
            rejected = out.with_suffix(".rejected.onnx")
            tmp_path.replace(rejected)
            raise ExportError(f"{ckpt_path}: ONNX output differs from torch by more than {PARITY_TOL} "
                              f"({parity.max_abs_diff}); file kept aside as {rejected}")
        tmp_path.replace(out)
    lines = engine_check(out, chips)
    return ExportResult(out, spec, parity, tuple(lines), tuple(notes))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a faceattr-ckpt/1 checkpoint (.pt) written by training.fit")
    p.add_argument("-o", "--out", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--metrics", type=Path, help="metrics.json of training.evaluate, stored in the description")
    p.add_argument("--name", help="model name in the description (default: <data>-<backbone>-mtl)")
    p.add_argument("--chips", type=Path, default=DEFAULT_CHIPS,
                   help="chip cache for the parity batch (default: cache/utkface; random chips if absent)")
    p.add_argument("--flip-tta", action="store_true",
                   help="the graph averages each chip's outputs with its mirror image's (2x the network's cost)")
    p.add_argument("--calibration", type=Path,
                   help="calibration.json of training.calibrate: each listed task's logits / T inside the graph")
    args = p.parse_args(argv)
    try:
        result = export(args.checkpoint, args.out, args.metrics, args.name, args.chips, args.flip_tta, args.calibration)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    size_mb = result.path.stat().st_size / 1e6
    tta = ", flip test-time averaging in the graph" if result.spec.training.get("flip_tta") else ""
    print(f"wrote {result.path} ({size_mb:.1f} MB, opset {OPSET}, dynamic batch{tta}), model '{result.spec.name}'")
    print(f"parity torch vs onnxruntime on {result.parity.batch}: " + ", ".join(
        f"{k} {v:.2e}" for k, v in result.parity.max_abs_diff.items()) + f" (max abs diff, limit {PARITY_TOL:g})")
    scaled = result.spec.training.get("temperature_scaling")
    if scaled:
        print("temperature scaling (validation ECE before -> after): " + ", ".join(
            f"{k} T={r['temperature']:.3f} ({100 * r['ece_before']:.2f} % -> {100 * r['ece_after']:.2f} %)"
            for k, r in scaled["tasks"].items()))
    for note in result.notes:
        print(f"note: {note}")
    print("engine loads it; first chip: " + "; ".join(result.engine_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
