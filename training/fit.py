"""Train the multi-task network the way the thesis did (seeds/003 ch. 3); see training/README.md.

    python -m training.fit --config utkface_thesis --data ../shared/data/utkface \\
        --chips cache/utkface --out runs/utkface_thesis [--resume] [--epochs N] [--device cpu|cuda]
    torchrun --nproc_per_node 2 -m training.fit ...        (DDP: gloo on CPU, nccl on CUDA)

Per epoch: train (chips in memory, batched augmentation, optional bf16 autocast), validate
(per-task loss + accuracy / MAE, on the EMA weights when optim.ema is on), schedule, Early
Freeze, early stopping, checkpoint (last.pt; best.pt on a lower total validation loss),
log.csv and curves.png. Only rank 0 writes files or prints.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist

from engine.modelspec import TaskSpec
from training.augment import create_augmenter
from training.balance import group_shares, sample_weights
from training.batches import MemorySplit
from training.checkpoint import CheckpointError, git_commit, load_checkpoint, save_checkpoint
from training.chip_dataset import ChipDataset
from training.config import Config, ConfigError, config_from_dict, load_config
from training.datasets import label_mirrors, load_parts, union_tasks
from training.freeze import FrozenParts
from training.losses import LossConfigError, create_losses
from training.loop import (Dist, FitError, TrainStep, choose_precision, metric_name, metric_sum,  # noqa: F401
                           recompute_bn_stats, setup_dist, train_one_epoch, validate, wrap)
from training.model import MultiTaskNet
from training.runlog import plot_curves, write_log_csv
from training.samples import DataError
from training.state import TrainState
from training.stems import StemDataset, build_stem_cache, stem_key
from training.task_heads import as_kind


# -- setup ------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_tasks(cfg: Config, data_tasks: tuple[TaskSpec, ...]) -> tuple[TaskSpec, ...]:
    """The dataset's tasks chosen by model.tasks (in that order), age as model.age_kind."""
    by_name = {t.name: t for t in data_tasks}
    names = cfg.model.tasks or tuple(by_name)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise FitError(f"model.tasks names {unknown}, which {cfg.data.dataset} does not have "
                       f"(it has: {', '.join(by_name)})")
    # age_kind expectation turns a regression age into one bin per year of its range (task_heads.Expectation.recast)
    return tuple(as_kind(by_name[n], cfg.model.age_kind) if n == "age" else by_name[n] for n in names)


@dataclass(frozen=True)
class Datasets:
    train: list[ChipDataset]  # one per part of data.dataset
    valid: list[ChipDataset]
    tasks: tuple[TaskSpec, ...]
    mirror: dict[str, tuple[int, ...]]  # task -> its labels under a horizontal flip (head pose)


def load_datasets(cfg: Config, max_samples: int | None, log) -> Datasets:
    """Train and valid chip datasets, one per part of ``data.dataset`` (training/datasets.py)."""
    parts = load_parts(cfg)
    for part in parts:
        log(f"data {part.name}: {part.splits.summary()}")
    tasks = model_tasks(cfg, union_tasks(parts))
    rng = random.Random(cfg.seed)
    train_sets, valid_sets = [], []
    for part in parts:
        train, valid = list(part.splits.train), list(part.splits.valid)
        if cfg.data.refit:  # validation still runs, on samples the run now trains on
            train = train + valid
        if max_samples:
            share = max(1, max_samples // len(parts))
            train, valid = rng.sample(train, min(share, len(train))), rng.sample(valid, min(share, len(valid)))
        for name, samples, sets in (("train", train, train_sets), ("valid", valid, valid_sets)):
            ds = ChipDataset(part.cache, samples, tasks)
            if ds.dropped:
                log(f"{part.name} {name}: {len(ds)} chips, {ds.dropped} samples without a chip dropped ({ds.dropped_reasons})")
            if len(parts) > 1:
                log(f"{part.name} {name}: labels per task {ds.labelled}")
            sets.append(ds)
    if sum(len(ds) for ds in valid_sets) == 0:
        raise FitError(f"{cfg.data.dataset}: the validation split has no samples with a chip")
    return Datasets(train_sets, valid_sets, tasks, label_mirrors(cfg.data.dataset))


def init_weights(net: MultiTaskNet, path: str, log) -> None:
    """Start from a training checkpoint's weights wherever name and shape match (model.init_from)."""
    ckpt = load_checkpoint(Path(path))
    source = ckpt.get("train_model_state") or ckpt["model_state"]
    own = net.state_dict()
    taken = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(taken, strict=False)
    fresh = sorted({k.split(".")[1] for k in own if k not in taken and k.startswith("heads.")})
    log(f"init from {path}: {len(taken)} of {len(own)} tensors"
        + (f"; new heads: {', '.join(fresh)}" if fresh else ""))


def build_net(cfg: Config, tasks: tuple[TaskSpec, ...], pretrained: bool, dist: Dist) -> MultiTaskNet:
    from training.backbones import create_backbone

    # model.init_seed: the fresh layers drawn from their own generator state, which leaves the run's
    # stream (data order, augmentation, dropout) as it was; -1 keeps older runs' exact draws
    own_init = cfg.model.init_seed >= 0
    with torch.random.fork_rng(devices=[], enabled=own_init):
        if own_init:
            torch.manual_seed(cfg.model.init_seed)
        backbone = create_backbone(cfg.model.backbone, pretrained=cfg.model.pretrained and pretrained)
        net = MultiTaskNet(backbone, tasks, cfg.model.shared_dims, cfg.model.head_dim, cfg.model.dropout)
    net = net.to(dist.device)
    return net.to(memory_format=torch.channels_last) if cfg.speed.channels_last else net


def stem_stages(cfg: Config, net: MultiTaskNet) -> int:
    """How many backbone stages are fed from the stem cache (0 = none: train on chips)."""
    if not cfg.speed.cache_stem or cfg.speed.frozen_stages == 0:
        return 0
    n = len(net.backbone.stages)
    return n if cfg.speed.frozen_stages < 0 else min(cfg.speed.frozen_stages, n)


def stem_split(cfg: Config, net: MultiTaskNet, ds: ChipDataset, n: int, split: str, flip: bool, dist: Dist) -> MemorySplit:
    """The stem cache of a chip dataset (rank 0 builds it first, once), read into memory."""
    key = stem_key(net, n, Path(cfg.data.chips_dir), [s.file for s in ds.samples], flip)
    path = Path(cfg.data.chips_dir) / "stems" / f"{net.backbone.name}-s{n}-{split}-{key}.npy"
    if dist.main and not path.is_file():
        build_stem_cache(net, ds, n, path, flip, batch_size=cfg.optim.batch_size, device=dist.device)
    if dist.world > 1:
        tdist.barrier()
    targets = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in ds.targets.items()}
    return MemorySplit.from_stems(StemDataset.open(path, targets, flip), random_view=flip)


def memory_splits(cfg: Config, net: MultiTaskNet, train_sets: list[ChipDataset], valid_sets: list[ChipDataset],
                  stem_n: int, dist: Dist) -> tuple[MemorySplit, MemorySplit]:
    if stem_n:
        if len(train_sets) > 1:
            raise FitError("speed.cache_stem works on one dataset; turn it off for joined datasets")
        return (stem_split(cfg, net, train_sets[0], stem_n, "train", cfg.data.flip, dist),
                stem_split(cfg, net, valid_sets[0], stem_n, "valid", False, dist))
    return chip_split(train_sets), chip_split(valid_sets)


def chip_split(sets: list[ChipDataset]) -> MemorySplit:
    """The chips of one or more datasets' split, in memory as one (no stem cache)."""
    return MemorySplit.concat([MemorySplit.from_chips(ds) for ds in sets])


def draw_weights(cfg: Config, train_sets: list[ChipDataset], log) -> torch.Tensor | None:
    """Training draw weights when ``data.balance`` names tasks (training/balance.py), in the
    order of ``MemorySplit.concat``; None for the plain shuffle."""
    if not cfg.data.balance:
        return None
    known = {t.name for t in train_sets[0].tasks}
    unknown = [t for t in cfg.data.balance if t not in known]
    if unknown:
        raise FitError(f"data.balance names {', '.join(unknown)}, not a task of this run ({', '.join(sorted(known))})")
    samples = [s for ds in train_sets for s in ds.samples]
    weights = sample_weights(samples, cfg.data.balance, cfg.data.balance_power)
    for task in cfg.data.balance:
        shares = ", ".join(f"{g}: {v:.1%}" for g, v in group_shares(samples, task, weights).items())
        log(f"balance {task} (power {cfg.data.balance_power}): expected share per group {shares}")
    return torch.from_numpy(weights)


# -- the run ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FitResult:
    best: dict  # epoch, val_total, val_loss, metrics of the best epoch
    history: list  # one record per epoch (what log.csv holds)
    net: MultiTaskNet  # the final network as trained (last.pt's train weights)


def fit(cfg: Config, out: Path, resume_from: dict | None, dist: Dist, max_samples: int | None = None) -> FitResult:
    log = print if dist.main else (lambda *a, **k: None)
    seed_everything(cfg.seed)
    data = load_datasets(cfg, max_samples, log)
    train_sets, valid_sets, tasks = data.train, data.valid, data.tasks

    net = build_net(cfg, tasks, pretrained=resume_from is None, dist=dist)
    if resume_from is not None:  # before the stem cache, whose key hashes the frozen weights
        net.load_state_dict(resume_from.get("train_model_state") or resume_from["model_state"])
    elif cfg.model.init_from:
        init_weights(net, cfg.model.init_from, log)
    parts = FrozenParts(backbone_stages=cfg.speed.frozen_stages)
    parts.apply(net)
    stem_n = stem_stages(cfg, net)
    frozen_n = len(net.backbone.stages) if cfg.speed.frozen_stages < 0 else cfg.speed.frozen_stages
    weights = draw_weights(cfg, train_sets, log)  # before the chips are read: a bad balance stops early
    train, valid = memory_splits(cfg, net, train_sets, valid_sets, stem_n, dist)
    if weights is not None:
        train = dataclasses.replace(train, weights=weights)
    batch = cfg.optim.batch_size

    state = TrainState.create(cfg, net, parts, train.train_steps(batch, dist.world), dist.device)
    if resume_from is not None:
        state.load_state_dict(resume_from)
        log(f"resumed from {out / 'last.pt'} after epoch {state.epoch}")
    precision = choose_precision(cfg.speed, dist.device)
    losses = create_losses(cfg.loss, tasks)
    if stem_n and cfg.data.flip and data.mirror:
        raise FitError(f"speed.cache_stem's mirrored views cannot mirror the labels of {', '.join(data.mirror)}; "
                       "turn cache_stem off (or data.flip)")
    augment = None if stem_n else create_augmenter(cfg.augment, flip=cfg.data.flip, mirror=data.mirror)
    log(f"train {len(train)}, valid {len(valid)}{' (refit: valid is in train, best.pt = the last epoch)' if cfg.data.refit else ''}"
        f" | {torch.get_num_threads()} threads, {precision.note}"
        f"{', channels_last' if cfg.speed.channels_last else ''} | augment: {', '.join(augment.names) if augment else 'stem cache views'}"
        f" | schedule {cfg.optim.schedule}{f', EMA {cfg.optim.ema}' if state.ema else ''}")
    step = TrainStep(net, state.weighting, losses, stem_n, 0 if stem_n else frozen_n, precision)
    model = wrap(step, dist)
    metric_names = [m for m in (metric_name(t) for t in tasks) if m]

    while state.epoch < cfg.optim.epochs and not state.stopped:
        epoch, t0, lr = state.epoch + 1, time.time(), state.lr
        train_batches = train.train_batches(batch, cfg.seed, epoch, dist.rank, dist.world)
        train_loss, weights = train_one_epoch(model, step, state, train_batches, augment, dist)
        if cfg.optim.precise_bn_batches:
            recompute_bn_stats(state.eval_net, stem_n, train.train_batches(batch, cfg.seed, 100_000 + epoch, dist.rank,
                                                                           dist.world), cfg.optim.precise_bn_batches, dist)
        valid_batches = valid.eval_batches(batch, dist.rank, dist.world)
        val_loss, metrics = validate(state.eval_net, stem_n, valid_batches, losses, dist)
        if state.score(epoch, val_loss, metrics, latest_is_best=cfg.data.refit) and dist.main:
            save_checkpoint(out / "best.pt", cfg, state, max_samples)  # before a freeze restores older weights
        record, events = state.finish_epoch(lr, train_loss, weights, val_loss, metrics, time.time() - t0)
        if events:
            model = wrap(step, dist)  # DDP over what trains now
        if dist.main:
            save_checkpoint(out / "last.pt", cfg, state, max_samples)
            write_log_csv(out / "log.csv", state.history, state.task_names, metric_names)
            plot_curves(out / "curves.png", state.history, state.task_names, metric_names)
        log(epoch_line(record, state.task_names))
        for e in events:
            log(e.message())
        if state.stopped:
            why = ("every task is frozen" if len(state.parts.tasks) == len(tasks)
                   else f"the total validation loss has not improved for {state.stopper.patience} epochs")
            log(f"epoch {epoch}: stopping, {why}")

    best = state.best
    log(f"best epoch {best['epoch']}: val_total {best['val_total']:.4f}, "
        + ", ".join(f"{k} {v:.4f}" for k, v in best.get("metrics", {}).items()) + f" | {out / 'best.pt'}")
    return FitResult(best, state.history, net)


def epoch_line(r: dict, names) -> str:
    losses = " ".join(f"{n} {r['train_loss'][n]:.4f}/{r['val_loss'][n]:.4f}" for n in names)
    weights = " ".join(f"{n} {w:.3f}" for n, w in r["weights"].items())
    metrics = " ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
    return (f"epoch {r['epoch']} | lr {r['lr']:.2g} | loss train/valid {losses} | {metrics} | w {weights}"
            f" | {r['seconds']:.0f} s")


# -- command line -----------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m training.fit", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="preset name (training/configs/NAME.toml) or a .toml path")
    p.add_argument("--data", help="dataset folder (UTKFace images / CelebA root); overrides data.image_dir")
    p.add_argument("--chips", help="chip cache folder of that dataset; overrides data.chips_dir")
    p.add_argument("--mtfl", help="utkface+mtfl: the MTFL folder; overrides data.mtfl_dir")
    p.add_argument("--mtfl-chips", help="utkface+mtfl: MTFL's chip cache; overrides data.mtfl_chips")
    p.add_argument("--overlay", action="append", default=[], metavar="NAME",
                   help="a partial config put over --config's (training/configs/overlays/NAME.toml or a "
                        ".toml path); repeatable, later ones win")
    p.add_argument("--out", type=Path, help="run folder (default: out_dir/name from the config)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--epochs", type=int, help="train up to this epoch (overrides optim.epochs)")
    p.add_argument("--batch-size", type=int, help="overrides optim.batch_size (per process)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="overrides speed.device")
    p.add_argument("--max-samples", type=int, help="use at most N train and N valid samples (smoke runs)")
    p.add_argument("--seed", type=int, help="overrides the config's seed (init, shuffling, augmentation, dropout)")
    return p.parse_args(argv)


def run_config(args, resume_from: dict | None) -> Config:
    if resume_from is not None:
        cfg = config_from_dict(resume_from["config"], source="checkpoint")
    elif args.config:
        cfg = load_config(args.config, args.overlay)
    else:
        raise FitError("--config is needed (a preset name or a .toml file), unless --resume")
    data = dataclasses.replace(cfg.data, image_dir=args.data or cfg.data.image_dir,
                               chips_dir=args.chips or cfg.data.chips_dir, mtfl_dir=args.mtfl or cfg.data.mtfl_dir,
                               mtfl_chips=args.mtfl_chips or cfg.data.mtfl_chips)
    optim = dataclasses.replace(cfg.optim, epochs=args.epochs or cfg.optim.epochs,
                                batch_size=args.batch_size or cfg.optim.batch_size)
    speed = dataclasses.replace(cfg.speed, device=args.device or cfg.speed.device)
    seed = cfg.seed if args.seed is None or resume_from is not None else args.seed
    return dataclasses.replace(cfg, data=data, optim=optim, speed=speed, seed=seed)


def record_command(out: Path, cfg: Config, argv: list[str] | None, resumed: bool, overlays: list[str]) -> None:
    """run.json: the preset, seed and every command line that built this run (training.results reads it)."""
    path = out / "run.json"
    info = json.loads(path.read_text()) if resumed and path.is_file() else {"commands": []}
    args = sys.argv[1:] if argv is None else list(argv)
    info.update({"config": cfg.name, "seed": cfg.seed, "epochs": cfg.optim.epochs})
    if not resumed:
        info["overlays"] = [Path(o).stem for o in overlays]
    info["commands"].append({"command": "python -m training.fit " + " ".join(args), "git_commit": git_commit(),
                             "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    path.write_text(json.dumps(info, indent=1))


def run(argv: list[str] | None = None) -> FitResult:
    """The command line's work (raises FitError, ConfigError, DataError, FileNotFoundError)."""
    args = parse_args(argv)
    if args.resume and args.overlay:
        raise FitError("--overlay does not go with --resume (the run keeps the config in its last.pt)")
    preset = load_config(args.config, args.overlay) if args.config and not args.resume else None
    out = args.out or (Path(preset.out_dir) / preset.name if preset else None)
    if out is None:
        raise FitError("--out is needed with --resume (the run folder holding last.pt)")
    if args.resume and not (out / "last.pt").is_file():
        raise FitError(f"{out}: nothing to resume (no last.pt)")
    if not args.resume and (out / "last.pt").is_file():
        raise FitError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out")
    resume_from = load_checkpoint(out / "last.pt") if args.resume else None
    cfg = run_config(args, resume_from)
    dist = setup_dist(cfg.speed.device)
    if cfg.speed.threads > 0:
        torch.set_num_threads(cfg.speed.threads)
    try:
        if dist.main:
            out.mkdir(parents=True, exist_ok=True)
            record_command(out, cfg, argv, args.resume, args.overlay)
        max_samples = args.max_samples or (resume_from or {}).get("max_samples")  # a resumed run keeps its subset
        return fit(cfg, out, resume_from, dist, max_samples)
    finally:
        if dist.world > 1 and tdist.is_initialized():
            tdist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    try:
        run(argv)
    except (FitError, ConfigError, DataError, LossConfigError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
