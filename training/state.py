"""Everything a training run carries from one epoch to the next, as one object saved and
restored whole (``training/checkpoint.py`` writes ``state_dict()``; ``--resume`` calls
``load_state_dict``).

``TrainState.create`` builds the parts from the config sections; after a validation,
``score`` books the schedule and the best epoch, ``finish_epoch`` Early Freeze, early
stopping and the history record (best.pt is written between the two, so it holds the
weights that scored, not those a freeze restores).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from training.checkpoint import restore_rng, rng_state
from training.config import Config, OptimConfig, WeightingConfig
from training.ema import WeightEMA
from training.freeze import EarlyFreeze, EarlyStopping, FreezeController, FrozenParts
from training.model import MultiTaskNet
from training.schedule import Schedule, create_schedule
from training.weighting import make_weighting


def make_optimizer(cfg: OptimConfig, wcfg: WeightingConfig, net: MultiTaskNet, weighting: nn.Module) -> torch.optim.Adam:
    """Adam (thesis Table 3.2): the backbone at lr x backbone_lr_mult, shared layers and heads at lr,
    the learned task weights at their own lr without weight decay (the Loss Weight Layer has its λ term)."""
    backbone = list(net.backbone.parameters())
    ids = {id(p) for p in backbone}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return torch.optim.Adam([
        {"params": backbone, "weight_decay": cfg.weight_decay, "lr": cfg.lr * cfg.backbone_lr_mult},
        {"params": rest, "weight_decay": cfg.weight_decay, "lr": cfg.lr},
        {"params": list(weighting.parameters()), "weight_decay": 0.0, "lr": wcfg.lr or cfg.lr},
    ], lr=cfg.lr, betas=(0.9, 0.999))


@dataclass
class TrainState:
    net: MultiTaskNet
    weighting: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    parts: FrozenParts
    freezer: FreezeController | None
    stopper: EarlyStopping
    ema: WeightEMA | None
    epoch: int = 0  # the last validated epoch
    best: dict = field(default_factory=lambda: {"epoch": 0, "val_total": math.inf})
    history: list = field(default_factory=list)
    stopped: bool = False  # early stopping or every task frozen

    @classmethod
    def create(cls, cfg: Config, net: MultiTaskNet, parts: FrozenParts, steps_per_epoch: int,
               device: torch.device) -> "TrainState":
        names = [t.name for t in net.tasks]
        weighting = make_weighting(cfg.weighting.kind, names, [t.kind for t in net.tasks], cfg.weighting.lam,
                                   cfg.seed).to(device)
        optimizer = make_optimizer(cfg.optim, cfg.weighting, net, weighting)
        schedule = create_schedule(cfg.optim, optimizer, steps_per_epoch)
        trunk_trainable = cfg.speed.frozen_stages >= 0 or len(cfg.model.shared_dims) > 0
        freezer = (FreezeController(EarlyFreeze(names, cfg.freeze.patience, trunk_trainable), parts)
                   if cfg.freeze.early_freeze else None)
        ema = WeightEMA(net, cfg.optim.ema) if cfg.optim.ema > 0 else None
        return cls(net, weighting, optimizer, schedule, parts, freezer, EarlyStopping(cfg.freeze.early_stop_patience), ema)

    @property
    def eval_net(self) -> MultiTaskNet:
        """The weights that are validated, saved as model_state and exported."""
        return self.ema.model if self.ema is not None else self.net

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.net.tasks)

    @property
    def active(self) -> tuple[str, ...]:
        return tuple(n for n in self.task_names if n not in self.parts.tasks)

    def after_step(self) -> None:
        self.schedule.after_batch()
        if self.ema is not None:
            self.ema.update(self.net)

    @property
    def lr(self) -> float:
        """The learning rate of the shared layers and heads (the backbone's is x backbone_lr_mult)."""
        return self.optimizer.param_groups[1]["lr"]

    def score(self, epoch: int, val_loss: dict, metrics: dict, latest_is_best: bool = False) -> bool:
        """Book epoch ``epoch``'s validation: schedule step, best epoch. True if it is the best so far
        (save best.pt now: a freeze in ``finish_epoch`` may restore older weights). ``latest_is_best``:
        every epoch is the best so far (data.refit: the validation split is trained on, its loss chooses nothing)."""
        self.epoch = epoch
        val_total = sum(val_loss.values()) / len(val_loss)
        self.schedule.after_epoch(val_total)
        if val_total < self.best["val_total"] or latest_is_best:
            self.best = {"epoch": epoch, "val_total": val_total, "val_loss": val_loss, "metrics": metrics}
            return True
        return False

    def finish_epoch(self, lr: float, train_loss: dict, weights: dict, val_loss: dict, metrics: dict,
                     seconds: float) -> tuple[dict, list]:
        """After ``score``: Early Freeze, early stopping, the history record (``lr``: at the epoch's start).
        Returns (record, freeze events)."""
        epoch = self.epoch
        val_total = sum(val_loss.values()) / len(val_loss)
        events = self.freezer.after_validation(epoch, val_loss, self.net) if self.freezer else []
        if events:
            self.parts = self.freezer.parts
            if self.ema is not None:
                self.ema.reset(self.net)
        all_frozen = len(self.parts.tasks) == len(self.task_names)
        self.stopped = self.stopper.step(epoch, val_total) or all_frozen
        record = {"epoch": epoch, "lr": lr, "seconds": seconds, "val_total": val_total, "train_loss": train_loss,
                  "val_loss": val_loss, "weights": weights, "metrics": metrics, "frozen": list(self.parts.tasks),
                  "events": [e.message() for e in events]}
        self.history.append(record)
        return record, events

    # -- saved and restored whole ---------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "tasks": [asdict(t) for t in self.net.tasks], "backbone": self.net.backbone.name,
            "model_state": self.eval_net.state_dict(),
            "train_model_state": self.net.state_dict() if self.ema is not None else None,
            "optimizer_state": self.optimizer.state_dict(), "scheduler_state": self.schedule.state_dict(),
            "weighting_state": self.weighting.state_dict(),
            "freeze_state": {"controller": self.freezer.state_dict() if self.freezer else None,
                             "stopper": self.stopper.state_dict(), "parts": asdict(self.parts)},
            "ema_state": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch, "best": self.best, "history": self.history, "stopped": self.stopped,
            "rng": rng_state(),
        }

    def load_state_dict(self, ckpt: dict) -> None:
        """Restore from a checkpoint dict; call last (it also restores every RNG)."""
        self.net.load_state_dict(ckpt.get("train_model_state") or ckpt["model_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        self.schedule.load_state_dict(ckpt["scheduler_state"])
        self.weighting.load_state_dict(ckpt["weighting_state"])
        fs = ckpt["freeze_state"]
        p = fs["parts"]
        self.parts = FrozenParts(int(p["backbone_stages"]), bool(p["trunk"]), tuple(p["tasks"]))
        self.parts.apply(self.net)
        if self.freezer is not None:
            self.freezer.load_state_dict(fs["controller"], self.net)
        self.stopper.load_state_dict(fs["stopper"])
        if self.ema is not None and ckpt.get("ema_state"):
            self.ema.load_state_dict(ckpt["ema_state"])
        self.epoch, self.best, self.history = int(ckpt["epoch"]), ckpt["best"], list(ckpt["history"])
        self.stopped = bool(ckpt.get("stopped", bool(self.history) and len(self.parts.tasks) == len(self.task_names)))
        restore_rng(ckpt["rng"])
