"""Temperature scaling (Guo et al., ICML 2017): one temperature per label task, fitted on validation.

    python -m training.calibrate runs/X/best.pt --out runs/X/calibration.json [--batch 64]
        [--data DIR] [--chips DIR] [--mtfl DIR] [--mtfl-chips DIR] [--flip-tta] [--device auto|cpu|cuda]

The net is rebuilt from the checkpoint (its ``model_state``: the EMA weights when the run kept
an EMA), the validation split of the run's datasets (``training.datasets.load_parts`` on the
config the checkpoint holds; folders overridable as in ``training.fit``) goes through it once,
and for each binary and multiclass task one ``T > 0`` is chosen that minimises the negative
log-likelihood of the samples labelled for that task (a NaN target is "no label": partial
labels, as in training). Dividing the logits by ``T`` never changes the predicted label, only
how sure the model says it is; ``python -m training.export --calibration`` builds it into the graph.

Why numpy and a 1-D search rather than LBFGS on a torch parameter: the objective has one
unknown, the search is exact to 1e-4 in log T, and the same code fits the flip-TTA case,
where the graph averages the *calibrated* probabilities of the chip and its mirror
(``--flip-tta``; not a convex function of 1/T any more, but still one-dimensional).

The report per task: ``n`` labelled samples, ``ece_before`` / ``ece_after`` (expected calibration
error: 15 equal-width bins of top-label confidence, sum over bins of share x |accuracy -
mean confidence|) and ``nll_before`` / ``nll_after`` (mean negative log-likelihood, nats).
A binary task's top label is the likelier of its two labels, as the engine decodes it.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from engine.modelspec import TaskSpec
from training.checkpoint import CheckpointError, git_commit, load_checkpoint
from training.task_heads import calibrated_kinds, task_head

METHOD = "temperature scaling"
SPLIT = "valid"
CALIBRATED_KINDS = calibrated_kinds()  # binary and multiclass: the kinds whose head says ``calibrated``
ECE_BINS = 15
T_MIN, T_MAX = 0.05, 20.0  # search range; a fit at either end is reported as such
GRID_POINTS = 81  # coarse log-spaced grid before the golden-section refinement
LOG_T_TOL = 1e-4


class CalibrationError(RuntimeError):
    """Calibration cannot run on what was given; the message names the input and the reason."""


# -- the arithmetic (numpy, float64) ---------------------------------------------------------
def class_logits(kind: str, logits: np.ndarray) -> np.ndarray:
    """A task's logits as [V, N, C] class logits (the kind's ``class_logits``): binary z -> (0, z),
    whose softmax is (1 - sigmoid(z), sigmoid(z)), so both kinds share one code path. ``logits`` is
    [V, N] (binary) or [V, N, C] (multiclass), V views of the same N samples (1, or 2 with flip TTA)."""
    z = np.asarray(logits, np.float64)
    try:
        head = task_head(kind)
    except ValueError:
        head = None
    if head is None or not head.calibrated:
        raise CalibrationError(f"temperature scaling is for {' and '.join(CALIBRATED_KINDS)} tasks, not {kind}")
    return head.class_logits(z)


def log_probs(class_z: np.ndarray, temperature: float) -> np.ndarray:
    """log of the views' mean of softmax(z / T): [V, N, C] -> [N, C] (stable in log space)."""
    y = class_z / temperature
    y = y - y.max(axis=-1, keepdims=True)
    lp = y - np.log(np.exp(y).sum(axis=-1, keepdims=True))
    if lp.shape[0] == 1:
        return lp[0]
    top = lp.max(axis=0)
    return top + np.log(np.exp(lp - top).mean(axis=0))


def nll(logp: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of integer ``labels`` under log-probabilities [N, C]."""
    return float(-logp[np.arange(len(labels)), labels].mean())


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top label: equal-width confidence bins (lo, hi]."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def fit_temperature(class_z: np.ndarray, labels: np.ndarray) -> float:
    """The T in [T_MIN, T_MAX] minimising the NLL: a log-spaced grid, then golden section
    around its best point (the NLL is unimodal in log T for one view)."""
    def loss(u: float) -> float:
        return nll(log_probs(class_z, math.exp(u)), labels)

    grid = np.linspace(math.log(T_MIN), math.log(T_MAX), GRID_POINTS)
    values = [loss(u) for u in grid]
    k = int(np.argmin(values))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > LOG_T_TOL:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    best = min(((values[k], grid[k]), (fc, c), (fd, d)))
    return float(math.exp(best[1]))


@dataclass(frozen=True)
class TaskCalibration:
    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    n: int  # labelled validation samples the temperature was fitted on

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def calibrate_task(kind: str, logits: np.ndarray, targets: np.ndarray) -> TaskCalibration | None:
    """Fit one task. ``logits``: [V, N] or [V, N, C]; ``targets``: [N] class indices (binary:
    1 = labels[1]), NaN where the sample has no label for this task. None if none is labelled."""
    targets = np.asarray(targets, np.float64)
    labelled = np.isfinite(targets)
    if not labelled.any():
        return None
    z = class_logits(kind, np.asarray(logits)[:, labelled])
    labels = targets[labelled].astype(np.int64)
    if labels.min() < 0 or labels.max() >= z.shape[-1]:
        raise CalibrationError(f"{kind} targets outside 0..{z.shape[-1] - 1}: {sorted(set(labels.tolist()))[:8]}")
    t = fit_temperature(z, labels)
    before, after = log_probs(z, 1.0), log_probs(z, t)
    return TaskCalibration(t, ece(np.exp(before), labels), ece(np.exp(after), labels),
                           nll(before, labels), nll(after, labels), int(labelled.sum()))


# -- the data and the net --------------------------------------------------------------------
def validation_sets(cfg, tasks: Sequence[TaskSpec]) -> list:
    """One ChipDataset per part of ``data.dataset``, over its validation split (as training.fit
    loads them; the task list is the one the net was built with, which must be the data's)."""
    from training.chip_dataset import ChipDataset
    from training.datasets import load_parts, union_tasks
    from training.fit import model_tasks

    parts = load_parts(cfg)
    data_names = [t.name for t in model_tasks(cfg, union_tasks(parts))]
    if data_names != [t.name for t in tasks]:
        raise CalibrationError(f"the checkpoint's tasks {[t.name for t in tasks]} are not its config's "
                               f"data tasks {data_names}")
    return [ChipDataset(part.cache, part.splits.valid, tasks) for part in parts]


def collect_logits(net, sets: Sequence, batch: int, device: str, flip_tta: bool,
                   mirror: Mapping[str, Sequence[int]] | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every label task's logits ([V, N] / [V, N, C]) and targets ([N]) over the sets, in order;
    the mirror view's logits of a task whose labels swap sides (``mirror``) are permuted back."""
    mirror = mirror or {}
    tasks = [t for t in net.tasks if task_head(t).calibrated]
    outs: dict[str, list[np.ndarray]] = {t.name: [] for t in tasks}
    net = net.to(device).eval()
    with torch.inference_mode():
        for ds in sets:
            for start in range(0, len(ds), batch):
                rows = ds.rows[start:start + batch]
                chips = torch.from_numpy(np.ascontiguousarray(ds.cache.chips[rows])).to(device)
                views = [chips, chips.flip(2)] if flip_tta else [chips]  # NHWC: dim 2 is the width
                raw = [net(v) for v in views]
                for t in tasks:
                    views_out = [r[t.name] if i == 0 or t.name not in mirror else r[t.name][:, list(mirror[t.name])]
                                 for i, r in enumerate(raw)]
                    outs[t.name].append(torch.stack(views_out).float().cpu().numpy())
    logits = {name: np.concatenate(parts, axis=1) for name, parts in outs.items()}
    targets = {t.name: np.concatenate([ds.targets[t.name] for ds in sets]) for t in tasks}
    return logits, targets


def choose_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CalibrationError("--device cuda: torch sees no CUDA device")
    return name


def run_config(ckpt: Mapping, data: str | None, chips: str | None, mtfl: str | None, mtfl_chips: str | None):
    """The run's config from the checkpoint, with the data folders overridden as fit's CLI does."""
    from training.config import config_from_dict

    cfg = config_from_dict(ckpt["config"], source="checkpoint")
    d = cfg.data
    return dataclasses.replace(cfg, data=dataclasses.replace(
        d, image_dir=data or d.image_dir, chips_dir=chips or d.chips_dir,
        mtfl_dir=mtfl or d.mtfl_dir, mtfl_chips=mtfl_chips or d.mtfl_chips))


def calibrate(ckpt_path: Path, data: str | None = None, chips: str | None = None, mtfl: str | None = None,
              mtfl_chips: str | None = None, batch: int = 64, device: str = "auto", flip_tta: bool = False,
              log=print) -> dict:
    """Checkpoint -> the calibration.json document (see the module docstring)."""
    from training.model import build_from_checkpoint

    if batch < 1:
        raise CalibrationError(f"--batch must be 1 or more, got {batch}")
    ckpt = load_checkpoint(Path(ckpt_path))
    try:
        net = build_from_checkpoint(ckpt)
    except (KeyError, ValueError, RuntimeError) as e:
        raise CalibrationError(f"{ckpt_path}: cannot rebuild the network ({type(e).__name__}: {e})") from e
    cfg = run_config(ckpt, data, chips, mtfl, mtfl_chips)
    sets = validation_sets(cfg, net.tasks)
    n_chips = sum(len(ds) for ds in sets)
    if n_chips == 0:
        raise CalibrationError(f"{cfg.data.dataset}: the validation split has no samples with a chip")
    dev = choose_device(device)
    log(f"{n_chips} validation chips ({', '.join(str(len(ds)) for ds in sets)} per part) through the net on {dev}"
        + (", with their mirror images (flip TTA)" if flip_tta else ""))
    from training.datasets import label_mirrors

    logits, targets = collect_logits(net, sets, batch, dev, flip_tta, label_mirrors(cfg.data.dataset))
    tasks, uncalibrated = {}, {}
    for t in net.tasks:
        if not task_head(t).calibrated:
            uncalibrated[t.name] = f"{t.kind}: temperature scaling is for {' and '.join(CALIBRATED_KINDS)} tasks"
            continue
        fitted = calibrate_task(t.kind, logits[t.name], targets[t.name])
        if fitted is None:
            uncalibrated[t.name] = "no labelled validation samples"
        else:
            tasks[t.name] = {"kind": t.kind, **fitted.to_dict()}
    if not tasks:
        raise CalibrationError(f"{ckpt_path}: no {' or '.join(CALIBRATED_KINDS)} task has labelled validation samples")
    return {"method": METHOD, "split": SPLIT, "flip_tta": bool(flip_tta), "ece_bins": ECE_BINS, "tasks": tasks,
            "uncalibrated": uncalibrated,
            "checkpoint": {"path": str(ckpt_path), "epoch": ckpt.get("epoch"), "date": ckpt.get("date")},
            "data": cfg.data.dataset, "commit": git_commit(), "date": dt.datetime.now().astimezone().isoformat(timespec="seconds")}


# -- reading it back (training.export --calibration) -----------------------------------------
REPORT_FIELDS = ("temperature", "ece_before", "ece_after", "nll_before", "nll_after", "n")


@dataclass(frozen=True)
class Calibration:
    """What export takes from a calibration.json: the temperatures for the graph and the block
    for the model description (``training.temperature_scaling``)."""
    temperatures: dict[str, float]
    description: dict
    flip_tta: bool  # fitted on flip-averaged outputs


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_calibration(path: Path, ckpt: Mapping) -> Calibration:
    """Read and check a calibration.json for ``ckpt``; CalibrationError naming the file and field.

    It must be the checkpoint's own: when the file records the checkpoint's epoch and date (this
    module writes both), they must match, since another run's temperatures would mis-state every
    confidence with no error to show for it. Every reported number must be finite, as the
    description's JSON must."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise CalibrationError(f"{path}: cannot read the calibration ({e})") from e
    if not isinstance(doc, dict) or doc.get("method") != METHOD or not isinstance(doc.get("tasks"), dict):
        raise CalibrationError(f"{path}: not a training.calibrate file (needs method '{METHOD}' and a tasks object)")
    source = doc.get("checkpoint") if isinstance(doc.get("checkpoint"), dict) else {}
    for key in ("epoch", "date"):
        if source.get(key) is not None and source[key] != ckpt.get(key):
            raise CalibrationError(f"{path}: made for another checkpoint ({key} {source[key]!r}, this one's is "
                                   f"{ckpt.get(key)!r}); rerun python -m training.calibrate on this checkpoint")
    tasks = {}
    for name, r in doc["tasks"].items():
        bad = [k for k in REPORT_FIELDS if not (isinstance(r, dict) and _finite(r.get(k)))]
        if bad:
            raise CalibrationError(f"{path}: tasks.{name} lacks a finite number for {', '.join(bad)}")
        tasks[name] = {k: r[k] for k in REPORT_FIELDS}
    flip = doc.get("flip_tta") is True
    block = {"method": METHOD, "split": str(doc.get("split", SPLIT)), "ece_bins": ECE_BINS, "tasks": tasks}
    if _finite(doc.get("ece_bins")):
        block["ece_bins"] = doc["ece_bins"]
    if flip:
        block["flip_tta"] = True
    return Calibration({n: float(r["temperature"]) for n, r in tasks.items()}, block, flip)


def table(doc: Mapping) -> list[str]:
    """One line per task, for the terminal."""
    lines = [f"{'task':<10} {'kind':<10} {'n':>6} {'T':>7}  {'ECE before -> after':<21} NLL before -> after"]
    for name, r in doc["tasks"].items():
        edge = " (search limit)" if not T_MIN * 1.001 < r["temperature"] < T_MAX * 0.999 else ""
        lines.append(f"{name:<10} {r['kind']:<10} {r['n']:>6} {r['temperature']:>7.3f}  "
                     f"{100 * r['ece_before']:>6.2f} % -> {100 * r['ece_after']:>5.2f} %   "
                     f"{r['nll_before']:.4f} -> {r['nll_after']:.4f}{edge}")
    lines += [f"{name:<10} not calibrated: {why}" for name, why in doc.get("uncalibrated", {}).items()]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    from training.config import ConfigError
    from training.samples import DataError
    from training.loop import FitError

    p = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a faceattr-ckpt/1 checkpoint (.pt) written by training.fit")
    p.add_argument("--out", type=Path, required=True, help="calibration.json to write")
    p.add_argument("--batch", type=int, default=64, help="chips per forward pass (default 64)")
    p.add_argument("--data", help="dataset folder; overrides the checkpoint's data.image_dir")
    p.add_argument("--chips", help="chip cache of that dataset; overrides data.chips_dir")
    p.add_argument("--mtfl", help="utkface+mtfl: the MTFL folder; overrides data.mtfl_dir")
    p.add_argument("--mtfl-chips", help="utkface+mtfl: MTFL's chip cache; overrides data.mtfl_chips")
    p.add_argument("--flip-tta", action="store_true",
                   help="fit for a graph exported with --flip-tta (calibrated chip and mirror averaged)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = p.parse_args(argv)
    try:
        doc = calibrate(args.checkpoint, args.data, args.chips, args.mtfl, args.mtfl_chips, args.batch,
                        args.device, args.flip_tta)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    except (CalibrationError, CheckpointError, ConfigError, DataError, FitError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(table(doc)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
