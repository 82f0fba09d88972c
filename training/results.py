"""Build training/RESULTS.md from the run folders: the thesis's UTKFace tables with our runs beside them.

    python -m training.results [--runs runs] [-o training/RESULTS.md] [--archive training/runlogs]

The run folders' logs are first copied into ``training/runlogs/`` (committed; see
training/results_carry.py), and the tables are read from there, so runs of earlier machines stay.

Every number comes from a file a run wrote, never from this module: validation figures
from ``runs/<name>/log.csv`` (the epoch with the lowest total validation loss, the one
saved as best.pt), test figures from ``runs/<name>/eval/metrics.json`` (``python -m
training.evaluate runs/<name>/best.pt ... --from-images -o runs/<name>/eval``: through the
engine), the preset, seed and command lines from ``runs/<name>/run.json`` (written by
training.fit; for older runs, from ``last.pt``). Only the thesis's own figures (seeds/003)
are typed here, as the reference. A row whose runs are missing says "not run yet" and
gives the command that would make it.

Run folder names: ``<preset>`` for the preset's own seed, ``<preset>_seed<k>`` for others, and
``<preset>-quick`` for the preset under the cheaper recipe of ``training/configs/overlays/quick.toml``
(``fit --overlay quick``). A row takes the full-recipe run when there is one, else the quick one,
and then says so.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from training.results_carry import archive_runs, carry_over

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA, CHIPS = "../shared/data/utkface", "cache/utkface"
METRICS = ("gender_acc", "race_acc", "age_mae")
REFIT = "refit"  # the overlay that trains on the validation split too (its row shows no validation figures)


@dataclass(frozen=True)
class Row:
    label: str
    thesis: tuple[float, float, float] | None  # gender %, race %, age MAE (years), seeds/003
    runs: tuple[str, ...]  # run folder names; a single-task row takes each metric from the run that has it
    seeds: tuple[int, ...] = ()  # several seeds of runs[0]'s preset: mean ± std over those that ran
    note: str = ""
    overlays: tuple[str, ...] = ()  # recipe pieces put over the preset (fit --overlay); folder <preset>+<piece>...


@dataclass(frozen=True)
class Table:
    title: str
    rows: tuple[Row, ...]


THESIS_MTL = (98.47, 87.56, 4.68)
TABLES = (
    Table("Table 4.10: methods (thesis: SE-ResNet-50-128D backbone; ours: dlib ResNet-29)", (
        Row("Single Task baseline", (93.12, 80.79, 5.43), ("utkface_baseline",)),
        Row("Single Task Neural Network", (92.58, 80.97, 5.22),
            ("utkface_single_gender", "utkface_single_race", "utkface_single_age")),
        Row("Proposed Multi-Task Learning Network (thesis recipe)", THESIS_MTL, ("utkface_thesis",), seeds=(0, 1, 2)),
        Row("Proposed MTL network, stronger recipe (full fine-tuning, DLDL age, augmentation, cosine, EMA)",
            THESIS_MTL, ("utkface_thesis_v2",), seeds=(0, 1, 2)),
    )),
    Table("Table 5.3: Loss Weight Layer vs average loss", (
        Row("Average loss", (98.01, 87.56, 5.17), ("utkface_thesis_avgloss",)),
        Row("Proposed weighted loss (Loss Weight Layer)", THESIS_MTL, ("utkface_thesis",), seeds=(0, 1, 2)),
    )),
    Table("Table 5.4: with and without Early Freeze", (
        Row("Early stopping of converged task (no Early Freeze)", (98.31, 86.58, 4.64), ("utkface_thesis_noef",)),
        Row("Proposed Early Freeze", THESIS_MTL, ("utkface_thesis",), seeds=(0, 1, 2)),
    )),
    Table("Table 5.5: the Loss Weight Layer's λ", (
        Row("λ = 0.001", (98.31, 86.83, 4.76), ("utkface_thesis_lambda0001",)),
        Row("λ = 0.01", (98.39, 86.97, 4.74), ("utkface_thesis_lambda001",)),
        Row("λ = 0.1", THESIS_MTL, ("utkface_thesis",), seeds=(0, 1, 2)),
        Row("λ = 1", (98.23, 86.79, 4.82), ("utkface_thesis_lambda1",)),
    )),
    Table("The stronger recipe's pieces, one at a time over the thesis recipe (not in the thesis)", (
        Row("thesis recipe (age: MSE regression)", None, ("utkface_thesis",), seeds=(0, 1, 2)),
        Row("+ age: L1 regression", None, ("utkface_thesis",), overlays=("age_l1",)),
        Row("+ age: distribution over one-year bins, DLDL loss (σ 2) + L1 of the expectation", None,
            ("utkface_thesis",), overlays=("age_dldl",)),
        Row("+ label smoothing 0.05", None, ("utkface_thesis",), overlays=("smoothing",)),
        Row("+ warm-up and cosine schedule", None, ("utkface_thesis",), overlays=("cosine",)),
        Row("+ EMA of the weights (0.995)", None, ("utkface_thesis",), overlays=("ema",)),
    )),
    Table("The stronger recipe, one change at a time (full fine-tuning, seed 0; not in the thesis)", (
        Row("stronger recipe (utkface_thesis_v2, 6 epochs)", THESIS_MTL, ("utkface_thesis_v2",)),
        Row("+ the backbone at the heads' learning rate (backbone_lr_mult 1.0 instead of 0.33)", THESIS_MTL,
            ("utkface_thesis_v2",), overlays=("backbone_lr1",)),
        Row("+ the backbone at a tenth of the heads' learning rate (backbone_lr_mult 0.1)", THESIS_MTL,
            ("utkface_thesis_v2",), overlays=("backbone_lr01",)),
        Row("+ the backbone at a tenth of the heads' lr, fresh layers drawn from one seed (soup ingredients)",
            THESIS_MTL, ("utkface_thesis_v2",), seeds=(0, 1, 2), overlays=("backbone_lr01", "shared_init")),
        Row("the same seeds refit on the training and validation splits together (6 epochs, the last kept)",
            THESIS_MTL, ("utkface_thesis_v2",), seeds=(0, 1, 2), overlays=("backbone_lr01", "shared_init", "refit")),
        Row("+ the backbone at 3 % of the heads' learning rate (backbone_lr_mult 0.03)", THESIS_MTL,
            ("utkface_thesis_v2",), overlays=("backbone_lr003",)),
        Row("+ stronger augmentation (the all-ages model's: off-centre, low light, greyscale, occlusion)", THESIS_MTL,
            ("utkface_thesis_v2",), overlays=("augment_strong",)),
        Row("12 epochs instead of 6", THESIS_MTL, ("utkface_thesis_v2_e12",)),
    )),
)


# -- reading runs -------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    name: str
    preset: str
    seed: int
    commands: tuple[str, ...]
    epochs_done: int
    epochs_planned: int
    max_samples: int | None
    seconds_per_epoch: float
    best_epoch: int
    valid: dict  # metric -> value (accuracy 0..1, MAE years)
    test: dict | None  # split -> {metric: value}, from eval/metrics.json
    test_source: str = ""
    eval_command: str = ""  # the evaluate command line that wrote eval/metrics.json
    overlays: tuple[str, ...] = ()  # fit --overlay names (the cheaper recipes)


def _float(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def read_log(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def run_info(folder: Path) -> dict:
    """run.json, or what last.pt knows (runs started before run.json existed)."""
    if (folder / "run.json").is_file():
        info = json.loads((folder / "run.json").read_text())
        info["commands"] = [c["command"] if isinstance(c, dict) else str(c) for c in info.get("commands", [])]
        return info
    if (folder / "last.pt").is_file():
        import torch

        ckpt = torch.load(folder / "last.pt", map_location="cpu", weights_only=True)
        cfg = ckpt["config"]
        cmd = (f"python -m training.fit --config {cfg['name']} --data {DATA} --chips {CHIPS} --out runs/{folder.name}"
               f" --epochs {cfg['optim']['epochs']}" + (f" --max-samples {ckpt['max_samples']}" if ckpt.get("max_samples") else ""))
        return {"config": cfg["name"], "seed": cfg["seed"], "epochs": cfg["optim"]["epochs"],
                "max_samples": ckpt.get("max_samples"), "commands": [cmd + "   (rebuilt from last.pt's config)"]}
    return {}


def read_run(folder: Path) -> Run | None:
    """A run folder's figures, or None when it has no log yet."""
    if not (folder / "log.csv").is_file():
        return None
    rows = read_log(folder / "log.csv")
    if not rows:
        return None
    info = run_info(folder)
    refit = REFIT in info.get("overlays", ())  # trained on the validation split: its figures choose and say nothing
    best = rows[-1] if refit else min(rows, key=lambda r: float(r["val_total"]))
    valid = {} if refit else {m: _float(best.get(m)) for m in METRICS if _float(best.get(m)) is not None}
    test, source, eval_cmd = None, "", ""
    metrics_path = folder / "eval" / "metrics.json"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text())
        test = {split: {k: block.get(k) for k in METRICS if block.get(k) is not None}
                for split, block in m.get("splits", {}).items()}
        source = f"{m.get('runtime', '')}; {m.get('source', '')}"
        eval_cmd = m.get("command", "")
    max_samples = info.get("max_samples")
    if max_samples is None:
        max_samples = next((_arg(c, "--max-samples") for c in info.get("commands", []) if "--max-samples" in c), None)
    return Run(folder.name, info.get("config", folder.name), int(info.get("seed", 0)), tuple(info.get("commands", ())),
               int(rows[-1]["epoch"]), int(info.get("epochs", 0)), int(max_samples) if max_samples else None,
               statistics.mean(float(r["seconds"]) for r in rows), int(best["epoch"]), valid, test, source,
               eval_cmd, tuple(info.get("overlays", ())))


def _arg(command: str, flag: str) -> str | None:
    parts = command.split()
    return parts[parts.index(flag) + 1] if flag in parts and parts.index(flag) + 1 < len(parts) else None


def read_runs(runs_dir: Path) -> dict[str, Run]:
    found = {}
    for folder in sorted(p for p in Path(runs_dir).glob("*") if p.is_dir()):
        run = read_run(folder)
        if run is not None:
            found[run.name] = run
    return found


# -- rendering ----------------------------------------------------------------------------
def _fmt(metric: str, values: Sequence[float]) -> str:
    """One value, or mean ± std of several; accuracies in %, MAE in years."""
    scale, digits = (100.0, 2) if metric.endswith("_acc") else (1.0, 2)
    vals = [v * scale for v in values]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def seed_folder(preset: str, seed: int, preset_seed: int = 0) -> str:
    return preset if seed == preset_seed else f"{preset}_seed{seed}"


QUICK = "quick"  # the overlay of the cheaper recipe, and the suffix of its run folders


def fit_command(folder: str, preset: str, seed: int | None = None, overlays: Sequence[str] = ()) -> str:
    return (f"python -m training.fit --config {preset} --data {DATA} --chips {CHIPS} --out runs/{folder}"
            + (f" --seed {seed}" if seed else "") + "".join(f" --overlay {o}" for o in overlays))


def eval_command(folder: str) -> str:
    return (f"python -m training.evaluate runs/{folder}/best.pt --data {DATA} --protocol coral --from-images"
            f" -o runs/{folder}/eval")


def row_runs(row: Row, runs: dict[str, Run]) -> list[tuple[str, str, int, Run | None]]:
    """(folder, preset, seed, run or None) for every run the row asks for: the full recipe's
    folders when any of them ran, else the quick recipe's (``<folder>-quick``), never a mix."""
    pieces = "".join(f"+{o}" for o in row.overlays)
    if row.seeds:
        wanted = [(seed_folder(row.runs[0] + pieces, s), row.runs[0], s) for s in row.seeds]
    else:
        wanted = [(name + pieces, name, 0) for name in row.runs]
    full = [(f, preset, seed, runs.get(f)) for f, preset, seed in wanted]
    quick = [(f"{f}-{QUICK}", preset, seed, runs.get(f"{f}-{QUICK}")) for f, preset, seed in wanted]
    return quick if any(w[3] for w in quick) and not any(w[3] for w in full) else full


def row_cells(row: Row, wanted: list, split: str | None) -> list[str]:
    """Our gender / race / age cells: valid (split None) or a test split; each from the runs that have it."""
    cells = []
    for m in METRICS:
        vals = []
        for _, _, _, run in wanted:
            block = run.valid if split is None else ((run.test or {}).get(split, {}) if run else {})
            if run is not None and block.get(m) is not None:
                vals.append(block[m])
        cells.append(_fmt(m, vals))
    return cells


def describe(run: Run) -> str:
    parts = [f"seed {run.seed}", f"{run.epochs_done} of {run.epochs_planned} epochs" if run.epochs_planned
             else f"{run.epochs_done} epochs", f"best epoch {run.best_epoch}", f"{run.seconds_per_epoch:.0f} s/epoch"]
    if run.overlays:
        parts.append("overlay " + " + ".join(run.overlays))
    if run.max_samples:
        parts.append(f"smoke run on {run.max_samples} samples")
    if run.epochs_planned and run.epochs_done < run.epochs_planned:
        parts.append("still running or stopped early")
    return ", ".join(parts)


def render_table(table: Table, runs: dict[str, Run]) -> list[str]:
    lines = [f"### {table.title}", "",
             "| method | thesis gender / race / age MAE | ours, valid | ours, CORAL test (engine) | ours, test_dedup (engine) |",
             "|---|---|---|---|---|"]
    notes = []
    for row in table.rows:
        wanted = row_runs(row, runs)
        quick = bool(wanted) and wanted[0][0].endswith(f"-{QUICK}")
        overlays = ([QUICK] if quick else []) + list(row.overlays)
        have = [w for w in wanted if w[3] is not None]
        thesis = " / ".join(f"{v:.2f}" for v in row.thesis) if row.thesis else "–"
        if not have:
            cells = ["not run yet"] * 3
        else:
            cells = [" / ".join(row_cells(row, have, s)) if any(w[3].test or s is None for w in have) else "not evaluated yet"
                     for s in (None, "test", "test_dedup")]
        label = row.label + (f" ({len(have)} of {len(wanted)} seeds)" if row.seeds else "")
        if any(QUICK in w[3].overlays for w in have):
            label += " [quick recipe]"
        lines.append(f"| {label} | {thesis} | {cells[0]} | {cells[1]} | {cells[2]} |")
        for folder, preset, seed, run in wanted:
            if run is None:
                notes.append(f"- {row.label}, `runs/{folder}`: not run yet; `{fit_command(folder, preset, seed, overlays)}`, "
                             f"then `{eval_command(folder)}`")
            else:
                cmds = "; then ".join(f"`{c}`" for c in run.commands) or "(command not recorded)"
                ev = (f"; evaluated: `{run.eval_command}`" if run.test and run.eval_command
                      else "" if run.test else f"; not evaluated yet: `{eval_command(folder)}`")
                notes.append(f"- {row.label}, `runs/{folder}` ({describe(run)}): {cmds}{ev}")
    return lines + [""] + notes + [""]


def render_model_evals(runs_dir: Path) -> list[str]:
    """Evaluations of model files that are not runs (``runs/_<name>/metrics.json``, e.g. the shipped
    model scored by the same engine and command), so a new model is compared on the same footing."""
    found = sorted(Path(runs_dir).glob("_*/metrics.json"))
    if not found:
        return []
    lines = ["### Model files evaluated the same way", "",
             "| model | CORAL test (engine) | test_dedup (engine) | faces evaluated (test) | command |", "|---|---|---|---|---|"]
    for path in found:
        m = json.loads(path.read_text())
        if m.get("protocol", "coral") != "coral":
            continue  # the tables are the CORAL protocol's; other protocols are in the model cards
        splits = m.get("splits", {})
        cells = [" / ".join(_fmt(k, [splits[s][k]] if splits.get(s, {}).get(k) is not None else []) for k in METRICS)
                 for s in ("test", "test_dedup")]
        test = splits.get("test", {})
        name = f" ({m['model_name']})" if m.get("model_name") else ""  # one path may have held several files
        lines.append(f"| `{m.get('model')}`{name} | {cells[0]} | {cells[1]} | {test.get('evaluated')} of {test.get('listed')} "
                     f"| `{m.get('command', '')}` |")
    return lines + [""]


def _split_metrics(path: Path, split: str) -> dict:
    """gender_acc / race_acc / age_mae of one split of an evaluate metrics.json (its tasks block)."""
    tasks = json.loads(path.read_text()).get("splits", {}).get(split, {}).get("tasks", {})
    keys = {"gender": ("gender_acc", "accuracy"), "race": ("race_acc", "accuracy"), "age": ("age_mae", "mae")}
    return {m: tasks[t][k] for t, (m, k) in keys.items() if tasks.get(t, {}).get(k) is not None}


def render_tta(runs_dir: Path) -> list[str]:
    """Flip test-time averaging on the validation split: ``runs/<name>/valid_eval`` and
    ``valid_eval_tta`` (``training.evaluate best.pt --split valid [--flip-tta]``)."""
    pairs = [(f.parent.parent.name, f, f.parent.parent / "valid_eval_tta" / "metrics.json")
             for f in sorted(Path(runs_dir).glob("*/valid_eval/metrics.json"))]
    pairs = [(name, a, b) for name, a, b in pairs if b.is_file()]
    if not pairs:
        return []
    lines = ["### Flip test-time averaging (validation split)", "",
             "| run | without | with flip TTA | command |", "|---|---|---|---|"]
    for name, plain, tta in pairs:
        cells = [" / ".join(_fmt(m, [d[m]] if m in d else []) for m in METRICS)
                 for d in (_split_metrics(plain, "valid"), _split_metrics(tta, "valid"))]
        cmd = json.loads(tta.read_text()).get("command", "")
        lines.append(f"| `runs/{name}` | {cells[0]} | {cells[1]} | `{cmd}` |")
    return lines + [""]


def _shown(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def render(runs: dict[str, Run], runs_dir: Path) -> str:
    listed = {w[0] for t in TABLES for r in t.rows for w in row_runs(r, runs)}
    out = ["# Training results (generated)", "",
           f"Generated by `python -m training.results` from `runs/*/log.csv`, `runs/*/run.json` and "
           f"`runs/*/eval/metrics.json`, as kept in `{_shown(runs_dir)}/`, on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. "
           "Do not edit by hand: rerun the generator.", "",
           "Cells are gender accuracy % / race accuracy % / age MAE (years), CORAL protocol of UTKFace "
           "(ages 21–60). *valid*: the run's validation split at its best epoch (lowest total validation "
           "loss; the checkpoint best.pt), chips from the cache. *test*: best.pt through the engine "
           "(`training.evaluate --from-images`: the engine's detection and alignment on every image). "
           "Several seeds: mean ± std. The thesis's figures are from seeds/003 (its own backbone).", "",
           "*[quick recipe]*: the row's preset trained with `--overlay quick` (training/configs/overlays/quick.toml: "
           "backbone stages 0–11 frozen and cached, at most 8 epochs, the Loss Weight Layer at lr 1e-3, BatchNorm statistics recomputed before each validation), "
           "because the thesis's recipe (full fine-tuning, up to 100 epochs) does not fit a session on 2 CPU cores. "
           "Quick rows compare with each other, not with the thesis's absolute figures.", ""]
    for table in TABLES:
        out += render_table(table, runs)
    out += render_tta(runs_dir)
    out += render_model_evals(runs_dir)
    others = [r for name, r in runs.items() if name not in listed]
    if others:
        out += ["### Other runs", "", "| run | preset | valid gender / race / age MAE | test (engine) | details |",
                "|---|---|---|---|---|"]
        for r in others:
            valid = " / ".join(_fmt(m, [r.valid[m]] if m in r.valid else []) for m in METRICS)
            test = (" / ".join(_fmt(m, [r.test["test"][m]] if m in r.test.get("test", {}) else []) for m in METRICS)
                    if r.test else "not evaluated")
            out.append(f"| `runs/{r.name}` | {r.preset} | {valid} | {test} | {describe(r)}; "
                       + "; ".join(f"`{c}`" for c in r.commands) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.results", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder of run folders (default: runs)")
    p.add_argument("-o", "--out", type=Path, default=REPO_ROOT / "training" / "RESULTS.md")
    p.add_argument("--archive", type=Path, help="where the runs' logs are kept between machines "
                   "(default: runlogs/ beside --out, i.e. training/runlogs)")
    args = p.parse_args(argv)
    archive = args.archive or args.out.parent / "runlogs"
    if not args.runs.is_dir() and not archive.is_dir():
        print(f"error: {args.runs}: no such folder of runs (and no run logs kept in {archive})", file=sys.stderr)
        return 2
    copied = archive_runs(args.runs, archive) if args.runs.is_dir() else 0
    runs = read_runs(archive)
    text = render(runs, archive)
    if args.out.is_file():
        text = carry_over(text, args.out.read_text())
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(runs)} runs: {copied} copied from {args.runs} into {archive})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
