"""Train the multi-task network the way the thesis did (seeds/003 ch. 3); see training/README.md.

    python -m training.fit --config utkface_thesis --data ../shared/data/utkface \\
        --chips cache/utkface --out runs/utkface_thesis [--resume] [--epochs N] [--device cpu|cuda]
    torchrun --nproc_per_node 2 -m training.fit ...        (DDP: gloo on CPU, nccl on CUDA)

Per epoch: train, validate (per-task loss + accuracy / MAE), lr ÷10 on a plateau of the
total validation loss, Early Freeze step, checkpoint (last.pt; best.pt on a better total
validation loss), log.csv and curves.png. Only rank 0 writes files or prints.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from engine.modelspec import TaskSpec
from training.checkpoint import restore_rng, save_checkpoint
from training.chips import ChipCache
from training.config import Config, ConfigError, config_from_dict, load_config
from training.data import ChipDataset, DataError, load_celeba, load_utkface
from training.freeze import EarlyFreeze, EarlyStopping, FreezeController, FrozenParts
from training.model import MultiTaskNet, task_losses
from training.runlog import plot_curves, write_log_csv
from training.stems import StemDataset, build_stem_cache, stem_key
from training.weighting import make_weighting

class FitError(RuntimeError):
    """The run cannot start or go on as asked; the message says why."""


# -- setup ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_dist(device: str) -> Dist:
    """One process, or one of torchrun's (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA."""
    if device == "cuda" and not torch.cuda.is_available():
        raise FitError("--device cuda was asked for, but no CUDA GPU is available here")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1:
        tdist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return Dist(rank, world, dev)


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
    tasks = [by_name[n] for n in names]
    if cfg.model.age_kind == "expectation":
        tasks = [dataclasses.replace(t, kind="expectation", range=None,
                                     bins=tuple(float(a) for a in range(int(t.range[0]), int(t.range[1]) + 1)))
                 if t.name == "age" and t.kind == "regression" else t for t in tasks]
    return tuple(tasks)


def load_datasets(cfg: Config, max_samples: int | None, log) -> tuple[ChipDataset, ChipDataset, tuple[TaskSpec, ...]]:
    if not cfg.data.image_dir:
        raise FitError("no dataset folder given: pass --data DIR (or set data.image_dir)")
    if not cfg.data.chips_dir:
        raise FitError("no chip cache given: pass --chips DIR (build one with `python -m training.chips IMAGES --out DIR`)")
    if cfg.data.dataset == "utkface":
        splits = load_utkface(cfg.data.protocol, Path(cfg.data.image_dir),
                              Path(cfg.data.splits_dir) if cfg.data.splits_dir else None)
    else:
        splits = load_celeba(Path(cfg.data.image_dir), cfg.data.attributes)
    log(f"data: {splits.summary()}")
    tasks = model_tasks(cfg, splits.tasks)
    cache = ChipCache.open(cfg.data.chips_dir)
    train, valid = list(splits.train), list(splits.valid)
    if max_samples:
        rng = random.Random(cfg.seed)
        train = rng.sample(train, min(max_samples, len(train)))
        valid = rng.sample(valid, min(max_samples, len(valid)))
    train_ds = ChipDataset(cache, train, tasks, flip=cfg.data.flip)
    valid_ds = ChipDataset(cache, valid, tasks, flip=False)
    for name, ds in (("train", train_ds), ("valid", valid_ds)):
        if ds.dropped:
            log(f"{name}: {len(ds)} chips, {ds.dropped} samples without a chip dropped ({ds.dropped_reasons})")
    if len(valid_ds) == 0:
        raise FitError(f"{cfg.data.image_dir}: the validation split has no samples with a chip")
    return train_ds, valid_ds, tasks


def stem_stages(cfg: Config, net: MultiTaskNet) -> int:
    """How many backbone stages are fed from the stem cache (0 = none: train on chips)."""
    if not cfg.speed.cache_stem or cfg.speed.frozen_stages == 0:
        return 0
    n = len(net.backbone.stages)
    return n if cfg.speed.frozen_stages < 0 else min(cfg.speed.frozen_stages, n)


def stem_dataset(cfg: Config, net: MultiTaskNet, ds: ChipDataset, n: int, split: str, flip: bool,
                 dist: Dist) -> StemDataset:
    """Open (rank 0 builds it first, once) the stem cache of a chip dataset."""
    key = stem_key(net, n, Path(cfg.data.chips_dir), [s.file for s in ds.samples], flip)
    path = Path(cfg.data.chips_dir) / "stems" / f"{net.backbone.name}-s{n}-{split}-{key}.npy"
    if dist.main and not path.is_file():
        build_stem_cache(net, ds, n, path, flip, batch_size=cfg.optim.batch_size, device=dist.device)
    if dist.world > 1:
        tdist.barrier()
    return StemDataset.open(path, flip)


class TrainStep(nn.Module):
    """Net + weighting as one module, so DDP also keeps learned task weights in sync."""

    def __init__(self, net: MultiTaskNet, weighting: nn.Module, stem_n: int, frozen_n: int):
        super().__init__()
        self.net, self.weighting = net, weighting
        self.stem_n, self.frozen_n = stem_n, frozen_n  # inputs are cached stems / stages run without grad

    def forward(self, inputs: torch.Tensor, targets: dict[str, torch.Tensor], active: tuple[str, ...]):
        if self.stem_n:
            outputs = self.net.forward_from_stem(inputs, self.stem_n)
        elif self.frozen_n:
            with torch.no_grad():
                h = self.net.stem(inputs, self.frozen_n)
            outputs = self.net.forward_from_stem(h, self.frozen_n)
        else:
            outputs = self.net(inputs)
        losses = task_losses(outputs, targets, self.net.tasks)
        objective, weights = self.weighting({n: losses[n] for n in active})
        return objective, {n: v.detach() for n, v in losses.items()}, weights


def wrap(step: TrainStep, dist: Dist) -> nn.Module:
    """DDP over the parameters that train *now* (rebuilt after each freeze)."""
    if dist.world == 1:
        return step
    return DistributedDataParallel(step, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)


# -- one epoch --------------------------------------------------------------------------
def loader(ds, cfg: Config, dist: Dist, train: bool, epoch: int) -> DataLoader:
    if train:
        sampler = DistributedSampler(ds, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=cfg.seed)
        sampler.set_epoch(epoch)
        per_rank = len(sampler)
        return DataLoader(ds, batch_size=cfg.optim.batch_size, sampler=sampler, num_workers=cfg.optim.num_workers,
                          pin_memory=dist.device.type == "cuda",
                          drop_last=per_rank % cfg.optim.batch_size == 1)  # BatchNorm cannot train on 1 sample
    shard = Subset(ds, range(dist.rank, len(ds), dist.world))  # every sample once over all ranks
    return DataLoader(shard, batch_size=cfg.optim.batch_size, num_workers=cfg.optim.num_workers,
                      pin_memory=dist.device.type == "cuda")


def to_device(batch, device):
    inputs, targets = batch
    return inputs.to(device, non_blocking=True), {k: v.to(device, non_blocking=True) for k, v in targets.items()}


def all_sum(values: torch.Tensor, dist: Dist) -> torch.Tensor:
    if dist.world > 1:
        values = values.to(dist.device)
        tdist.all_reduce(values)
    return values.cpu()


def train_one_epoch(model: nn.Module, step: TrainStep, parts: FrozenParts, active: tuple[str, ...],
                    optimizer, data: DataLoader, dist: Dist, epoch: int):
    parts.train_mode(step.net)
    names = [t.name for t in step.net.tasks]
    sums, count, weights = torch.zeros(len(names), dtype=torch.float64), 0, {}
    for batch in tqdm(data, desc=f"epoch {epoch} train", unit="batch", leave=False, disable=not dist.main):
        inputs, targets = to_device(batch, dist.device)
        objective, losses, weights = model(inputs, targets, active)
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        n = len(inputs)
        sums += torch.tensor([float(losses[k]) * n for k in names], dtype=torch.float64)
        count += n
    total = all_sum(torch.cat([sums, torch.tensor([count], dtype=torch.float64)]), dist)
    return {k: float(v) for k, v in zip(names, total[:-1] / max(total[-1], 1))}, weights


def metric_name(task: TaskSpec) -> str | None:
    return {"binary": f"{task.name}_acc", "multiclass": f"{task.name}_acc", "regression": f"{task.name}_mae",
            "expectation": f"{task.name}_mae"}.get(task.kind)


def metric_sum(task: TaskSpec, out: torch.Tensor, target: torch.Tensor) -> float:
    """Sum over the batch of: correct (0/1) for classifiers, |error| in the task's unit for values."""
    if task.kind == "binary":
        return float(((out > 0) == (target > 0.5)).sum())
    if task.kind == "multiclass":
        return float((out.argmax(1) == target.long()).sum())
    if task.kind == "regression":
        lo, hi = task.range if task.range is not None else (0.0, 1.0)
        return float(((out - target).abs() * (hi - lo)).sum())
    if task.kind == "expectation":
        value = (torch.softmax(out, 1) * torch.tensor(task.bins, device=out.device)).sum(1)
        return float((value - target).abs().sum())
    return 0.0


@torch.no_grad()
def validate(net: MultiTaskNet, stem_n: int, data: DataLoader, dist: Dist) -> tuple[dict, dict]:
    net.eval()
    tasks = net.tasks
    sums, count = torch.zeros(2 * len(tasks), dtype=torch.float64), 0
    for batch in data:
        inputs, targets = to_device(batch, dist.device)
        outputs = net.forward_from_stem(inputs, stem_n) if stem_n else net(inputs)
        losses = task_losses(outputs, targets, tasks)
        n = len(inputs)
        for i, t in enumerate(tasks):
            sums[2 * i] += float(losses[t.name]) * n
            sums[2 * i + 1] += metric_sum(t, outputs[t.name], targets[t.name])
        count += n
    total = all_sum(torch.cat([sums, torch.tensor([count], dtype=torch.float64)]), dist)
    n = max(float(total[-1]), 1.0)
    val_loss = {t.name: float(total[2 * i]) / n for i, t in enumerate(tasks)}
    metrics = {metric_name(t): float(total[2 * i + 1]) / n for i, t in enumerate(tasks) if metric_name(t)}
    return val_loss, metrics


def make_optimizer(cfg: Config, net: MultiTaskNet, weighting: nn.Module):
    """Adam (thesis Table 3.2) over the net and the learned task weights (no weight decay on
    those: the Loss Weight Layer has its own λ term); lr x plateau_factor on a plateau of
    the total validation loss."""
    optimizer = torch.optim.Adam([
        {"params": list(net.parameters()), "weight_decay": cfg.optim.weight_decay},
        {"params": list(weighting.parameters()), "weight_decay": 0.0, "lr": cfg.weighting.lr or cfg.optim.lr},
    ], lr=cfg.optim.lr, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=cfg.optim.plateau_factor,
                                                           patience=cfg.optim.plateau_patience)
    return optimizer, scheduler


# -- the run ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FitResult:
    best: dict  # epoch, val_total, val_loss, metrics of the best epoch
    history: list  # one record per epoch (what log.csv holds)
    net: MultiTaskNet  # the final network, as in last.pt


def fit(cfg: Config, out: Path, resume_from: dict | None, dist: Dist, max_samples: int | None = None) -> FitResult:
    log = print if dist.main else (lambda *a, **k: None)
    seed_everything(cfg.seed)
    train_ds, valid_ds, tasks = load_datasets(cfg, max_samples, log)
    from training.backbones import create_backbone

    backbone = create_backbone(cfg.model.backbone, pretrained=cfg.model.pretrained and resume_from is None)
    net = MultiTaskNet(backbone, tasks, cfg.model.shared_dims, cfg.model.head_dim, cfg.model.dropout).to(dist.device)
    if resume_from is not None:  # before the stem cache, whose key hashes the frozen weights
        net.load_state_dict(resume_from["model_state"])
    names = tuple(t.name for t in tasks)
    parts = FrozenParts(backbone_stages=cfg.speed.frozen_stages)
    parts.apply(net)
    frozen_n = len(net.backbone.stages) if cfg.speed.frozen_stages < 0 else cfg.speed.frozen_stages
    stem_n = stem_stages(cfg, net)
    if stem_n:
        train_ds = stem_dataset(cfg, net, train_ds, stem_n, "train", cfg.data.flip, dist)
        valid_ds = stem_dataset(cfg, net, valid_ds, stem_n, "valid", False, dist)
    weighting = make_weighting(cfg.weighting.kind, names, [t.kind for t in tasks], cfg.weighting.lam,
                               cfg.seed).to(dist.device)
    optimizer, scheduler = make_optimizer(cfg, net, weighting)
    trunk_trainable = cfg.speed.frozen_stages >= 0 or len(cfg.model.shared_dims) > 0
    freezer = (FreezeController(EarlyFreeze(names, cfg.freeze.patience, trunk_trainable), parts)
               if cfg.freeze.early_freeze else None)
    stopper = EarlyStopping(cfg.freeze.early_stop_patience)
    start, best, history = 1, {"epoch": 0, "val_total": math.inf}, []
    if resume_from is not None:
        optimizer.load_state_dict(resume_from["optimizer_state"])
        scheduler.load_state_dict(resume_from["scheduler_state"])
        weighting.load_state_dict(resume_from["weighting_state"])
        fs = resume_from["freeze_state"]
        parts = FrozenParts(fs["parts"]["backbone_stages"], fs["parts"]["trunk"], tuple(fs["parts"]["tasks"]))
        parts.apply(net)
        if freezer is not None:
            freezer.load_state_dict(fs["controller"], net)
        stopper.load_state_dict(fs["stopper"])
        start, best, history = resume_from["epoch"] + 1, resume_from["best"], list(resume_from["history"])
        restore_rng(resume_from["rng"])
        log(f"resumed from {out / 'last.pt'} after epoch {resume_from['epoch']}")
    step = TrainStep(net, weighting, stem_n, 0 if stem_n else frozen_n)
    model = wrap(step, dist)
    metric_names = [m for m in (metric_name(t) for t in tasks) if m]
    stop = bool(history) and (len(parts.tasks) == len(names))
    for epoch in range(start, cfg.optim.epochs + 1):
        if stop:
            break
        t0 = time.time()
        active = tuple(n for n in names if n not in parts.tasks)
        train_loss, weights = train_one_epoch(model, step, parts, active, optimizer,
                                              loader(train_ds, cfg, dist, True, epoch), dist, epoch)
        val_loss, metrics = validate(net, stem_n, loader(valid_ds, cfg, dist, False, epoch), dist)
        val_total = sum(val_loss.values()) / len(val_loss)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step(val_total)
        improved = val_total < best["val_total"]
        if improved:
            best = {"epoch": epoch, "val_total": val_total, "val_loss": val_loss, "metrics": metrics}
            if dist.main:  # the weights that produced these numbers, before any freeze restores others
                save_checkpoint(out / "best.pt", cfg, net, optimizer, scheduler, weighting, freezer, stopper,
                                parts, epoch, best, history, max_samples)
        events = freezer.after_validation(epoch, val_loss, net) if freezer else []
        if events:
            parts = freezer.parts
            model = wrap(step, dist)
        stop = stopper.step(epoch, val_total) or len(parts.tasks) == len(names)
        record = {"epoch": epoch, "lr": lr, "seconds": time.time() - t0, "val_total": val_total,
                  "train_loss": train_loss, "val_loss": val_loss, "weights": weights, "metrics": metrics,
                  "frozen": list(parts.tasks), "events": [e.message() for e in events]}
        history.append(record)
        if dist.main:
            save_checkpoint(out / "last.pt", cfg, net, optimizer, scheduler, weighting, freezer, stopper, parts,
                            epoch, best, history, max_samples)
            write_log_csv(out / "log.csv", history, names, metric_names)
            plot_curves(out / "curves.png", history, names, metric_names)
        log(epoch_line(record, names))
        for e in events:
            log(e.message())
        if stop and dist.main:
            why = "every task is frozen" if len(parts.tasks) == len(names) else (
                f"the total validation loss has not improved for {stopper.patience} epochs")
            log(f"epoch {epoch}: stopping, {why}")
    summary = (f"best epoch {best['epoch']}: val_total {best['val_total']:.4f}, "
               + ", ".join(f"{k} {v:.4f}" for k, v in best.get("metrics", {}).items()) + f" | {out / 'best.pt'}")
    log(summary)
    return FitResult(best, history, net)


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
    p.add_argument("--out", type=Path, help="run folder (default: out_dir/name from the config)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--epochs", type=int, help="train up to this epoch (overrides optim.epochs)")
    p.add_argument("--batch-size", type=int, help="overrides optim.batch_size (per process)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="overrides speed.device")
    p.add_argument("--max-samples", type=int, help="use at most N train and N valid samples (smoke runs)")
    return p.parse_args(argv)


def run_config(args, resume_from: dict | None) -> Config:
    if resume_from is not None:
        cfg = config_from_dict(resume_from["config"], source="checkpoint")
    elif args.config:
        cfg = load_config(args.config)
    else:
        raise FitError("--config is needed (a preset name or a .toml file), unless --resume")
    data = dataclasses.replace(cfg.data, image_dir=args.data or cfg.data.image_dir,
                               chips_dir=args.chips or cfg.data.chips_dir)
    optim = dataclasses.replace(cfg.optim, epochs=args.epochs or cfg.optim.epochs,
                                batch_size=args.batch_size or cfg.optim.batch_size)
    speed = dataclasses.replace(cfg.speed, device=args.device or cfg.speed.device)
    return dataclasses.replace(cfg, data=data, optim=optim, speed=speed)


def run(argv: list[str] | None = None) -> FitResult:
    """The command line's work (raises FitError, ConfigError, DataError, FileNotFoundError)."""
    args = parse_args(argv)
    preset = load_config(args.config) if args.config and not args.resume else None
    out = args.out or (Path(preset.out_dir) / preset.name if preset else None)
    if out is None:
        raise FitError("--out is needed with --resume (the run folder holding last.pt)")
    if args.resume and not (out / "last.pt").is_file():
        raise FitError(f"{out}: nothing to resume (no last.pt)")
    if not args.resume and (out / "last.pt").is_file():
        raise FitError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out")
    resume_from = torch.load(out / "last.pt", map_location="cpu", weights_only=True) if args.resume else None
    cfg = run_config(args, resume_from)
    dist = setup_dist(cfg.speed.device)
    try:
        if dist.main:
            out.mkdir(parents=True, exist_ok=True)
        max_samples = args.max_samples or (resume_from or {}).get("max_samples")  # a resumed run keeps its subset
        return fit(cfg, out, resume_from, dist, max_samples)
    finally:
        if dist.world > 1 and tdist.is_initialized():
            tdist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    try:
        run(argv)
    except (FitError, ConfigError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
