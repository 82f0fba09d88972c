"""The training losses as configured (``[loss]``): one registry of age losses, label smoothing.

    losses = create_losses(cfg.loss, tasks)
    per_task = losses(outputs, targets)     # {task: scalar}

Age (a task of kind ``regression`` or ``expectation``) takes the loss named by ``loss.age``;
``auto`` keeps the thesis's choice for the kind (½·MSE on the 0..1 scale for regression,
the two-nearest-bins cross-entropy for expectation: the kind's ``auto_age_loss``). The other
tasks use their kind's loss (``training/task_heads.py``), with ``loss.label_smoothing`` on the
classifiers (the kind's ``smoothed_loss``).

Age losses are registered (``@register_age_loss(name, kinds)``) as
``fn(task, output, target, cfg) -> scalar``; ``kinds`` are the task kinds they accept.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from engine.modelspec import TaskSpec
from training.config import LossConfig
from training.task_heads import expectation, task_head

AgeLoss = Callable[[TaskSpec, torch.Tensor, torch.Tensor, LossConfig], torch.Tensor]
_AGE_LOSSES: dict[str, tuple[AgeLoss, tuple[str, ...]]] = {}


class LossConfigError(ValueError):
    """A [loss] setting that does not fit the model's tasks."""


def register_age_loss(name: str, kinds: tuple[str, ...]):
    def deco(fn: AgeLoss) -> AgeLoss:
        _AGE_LOSSES[name] = (fn, kinds)
        return fn
    return deco


def available_age_losses() -> list[str]:
    return ["auto", *_AGE_LOSSES]


@register_age_loss("mse", ("regression",))
def mse(task: TaskSpec, out: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """½·(y - p)² on the 0..1 scale of the range (thesis eq. 3.2)."""
    return 0.5 * F.mse_loss(out, target.float())


@register_age_loss("l1", ("regression",))
def l1(task: TaskSpec, out: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """|y - p| on the 0..1 scale of the range (the metric itself, MAE)."""
    return F.l1_loss(out, target.float())


@register_age_loss("soft_bins", ("expectation",))
def soft_bins(task: TaskSpec, out: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Cross-entropy against the age split over its two nearest bins (the expectation kind's loss)."""
    return task_head(task).loss(task, out, target) + _expectation_l1(task, out, target, cfg)


def gaussian_targets(age: torch.Tensor, bins: torch.Tensor, sigma: float) -> torch.Tensor:
    """[N] ages -> [N,B] label distributions: a Gaussian of ``sigma`` years around each age,
    normalised over the bins (DLDL, Gao et al. 2017)."""
    q = torch.exp(-0.5 * ((bins[None, :] - age[:, None]) / sigma) ** 2)
    return q / q.sum(1, keepdim=True).clamp_min(1e-12)


@register_age_loss("dldl", ("expectation",))
def dldl(task: TaskSpec, out: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """KL(q ‖ softmax(out)) with the Gaussian target q (sigma ``loss.age_sigma``): 0 at the target,
    so its size is comparable across sigmas; plus the optional expectation L1 term."""
    bins = torch.tensor(task.bins, dtype=torch.float32, device=out.device)
    q = gaussian_targets(target.float(), bins, cfg.age_sigma)
    logp = F.log_softmax(out.float(), dim=1)
    kl = (q * (torch.log(q.clamp_min(1e-12)) - logp)).sum(1).mean()
    return kl + _expectation_l1(task, out, target, cfg)


def _expectation_l1(task: TaskSpec, out: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    if cfg.age_l1 <= 0:
        return out.new_zeros((), dtype=torch.float32)
    width = max(task.bins[-1] - task.bins[0], 1.0)
    return cfg.age_l1 * (expectation(task, out) - target.float()).abs().mean() / width


def smoothed_loss(task: TaskSpec, out: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """The kind's loss with label smoothing ``eps`` for binary (targets pulled to eps/2, 1 - eps/2)
    and multiclass, on float32 outputs (training/task_heads.py ``smoothed_loss``)."""
    return task_head(task).smoothed_loss(task, out, target, eps)


def labelled(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows whose target is known: a sample without a label for a task (NaN, as
    ``training.chip_dataset.ChipDataset`` gives it when the sample's dataset lacks the task) trains
    and scores nothing for that task."""
    known = torch.isfinite(target)
    if bool(known.all()):
        return output, target
    return output[known], target[known]


class TaskLosses:
    """{task: loss} for a batch, as ``[loss]`` says; outputs are cast to float32 first (bf16-safe)."""

    def __init__(self, cfg: LossConfig, tasks: Sequence[TaskSpec]):
        self.cfg, self.tasks = cfg, tuple(tasks)
        self.age_fn: AgeLoss | None = None
        age = next((t for t in self.tasks if t.name == "age"), None)
        if cfg.age != "auto" and age is not None:
            if cfg.age not in _AGE_LOSSES:
                raise LossConfigError(f"loss.age is '{cfg.age}', not one of {', '.join(available_age_losses())}")
            fn, kinds = _AGE_LOSSES[cfg.age]
            if age.kind not in kinds:
                raise LossConfigError(f"loss.age = '{cfg.age}' needs model.age_kind {' or '.join(kinds)}, "
                                      f"but the age task is '{age.kind}'")
            self.age_fn = fn
        if cfg.age_sigma <= 0 or not math.isfinite(cfg.age_sigma):
            raise LossConfigError(f"loss.age_sigma must be a positive number of years, got {cfg.age_sigma}")

    def __call__(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                 tasks: Sequence[TaskSpec] | None = None) -> dict[str, torch.Tensor]:
        out = {}
        for t in tasks or self.tasks:
            y, target = labelled(outputs[t.name].float(), targets[t.name])
            if len(target) == 0:
                out[t.name] = outputs[t.name].float().sum() * 0.0  # no label in this batch: no gradient
            elif t.name == "age" and self.age_fn is not None:
                out[t.name] = self.age_fn(t, y, target, self.cfg)
            elif t.name == "age" and task_head(t).auto_age_loss is not None:  # loss.age = "auto"
                out[t.name] = _AGE_LOSSES[task_head(t).auto_age_loss][0](t, y, target, self.cfg)
            else:
                out[t.name] = smoothed_loss(t, y, target, self.cfg.label_smoothing)
        return out


def create_losses(cfg: LossConfig, tasks: Sequence[TaskSpec]) -> TaskLosses:
    return TaskLosses(cfg, tasks)
