"""Learning-rate schedules (``optim.schedule``), one registry.

A schedule is stepped twice kinds of times: ``after_batch()`` after every optimiser step
and ``after_epoch(val_total)`` after every validation; each kind uses the one it needs.
``state_dict`` / ``load_state_dict`` make a resumed run continue exactly.

- ``plateau`` (the thesis): lr x ``plateau_factor`` when the total validation loss has not
  decreased for ``plateau_patience`` epochs (torch's ReduceLROnPlateau).
- ``cosine``: linear warm-up over ``warmup_epochs`` (from lr/100), then a half cosine down to
  ``min_lr_ratio`` x lr at the last step of ``epochs``; per optimiser step.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from training.config import OptimConfig

_SCHEDULES: dict[str, Callable[..., "Schedule"]] = {}


def register_schedule(name: str):
    def deco(cls):
        _SCHEDULES[name] = cls
        return cls
    return deco


def available_schedules() -> list[str]:
    return list(_SCHEDULES)


def create_schedule(cfg: OptimConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> "Schedule":
    if cfg.schedule not in _SCHEDULES:
        raise ValueError(f"optim.schedule is '{cfg.schedule}', not one of {', '.join(_SCHEDULES)}")
    return _SCHEDULES[cfg.schedule](cfg, optimizer, steps_per_epoch)


class Schedule:
    def __init__(self, cfg: OptimConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
        self.cfg, self.optimizer, self.steps_per_epoch = cfg, optimizer, max(1, steps_per_epoch)

    def after_batch(self) -> None:
        pass

    def after_epoch(self, val_total: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@register_schedule("plateau")
class Plateau(Schedule):
    def __init__(self, cfg, optimizer, steps_per_epoch):
        super().__init__(cfg, optimizer, steps_per_epoch)
        self.inner = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=cfg.plateau_factor,
                                                                patience=cfg.plateau_patience)

    def after_epoch(self, val_total: float) -> None:
        self.inner.step(val_total)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


def cosine_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """The lr multiplier at optimiser step ``step`` (0-based) of ``total``."""
    if step < warmup:
        return 0.01 + 0.99 * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup - 1))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@register_schedule("cosine")
class Cosine(Schedule):
    def __init__(self, cfg, optimizer, steps_per_epoch):
        super().__init__(cfg, optimizer, steps_per_epoch)
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.total = cfg.epochs * self.steps_per_epoch
        self.warmup = round(cfg.warmup_epochs * self.steps_per_epoch)
        self.step = 0
        self._apply()

    def _apply(self) -> None:
        f = cosine_factor(self.step, self.total, self.warmup, self.cfg.min_lr_ratio)
        for g, base in zip(self.optimizer.param_groups, self.base):
            g["lr"] = base * f

    def after_batch(self) -> None:
        self.step += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"step": self.step, "base": list(self.base), "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.base = int(state["step"]), [float(b) for b in state["base"]]
        self._apply()
