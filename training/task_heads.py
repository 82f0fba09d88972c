"""What each task kind means to training, in one place: the training side's task-kind registry.

The engine's ``engine/tasks.py`` says how a kind's graph output is read (decode, smoothing,
labels, records); this is its mirror for what produces that output. Per kind, one class:

- :meth:`TaskHead.output_size` / :meth:`TaskHead.shape_output`: the width of the task's output
  layer and the shape of its raw output (``training.model.MultiTaskNet.heads_from_features``);
- :meth:`TaskHead.scale_target`: a sample's label -> the training target (``ChipDataset``);
- :meth:`TaskHead.loss` / :meth:`TaskHead.smoothed_loss`: the thesis's loss, and the one
  ``loss.label_smoothing`` asks for (``training.losses``; the age losses stay in their own
  registry there, ``auto_age_loss`` says which of them ``loss.age = "auto"`` means);
- ``metric`` / :meth:`TaskHead.metric_sum`: the validation metric (``training.loop.validate``);
- :meth:`TaskHead.contract_output` / :meth:`TaskHead.export_output`: raw output -> the model
  contract's output (``training.export``), after the temperature for ``calibrated`` kinds;
- ``calibrated`` / :meth:`TaskHead.class_logits`: temperature scaling (``training.calibrate``);
- ``flip_invariant``: flip TTA may average the outputs of a chip and its mirror image;
- ``uncertainty_factor``: Kendall et al.'s ½ for squared-error losses (``training.weighting``);
- ``classes`` / ``report_confusion``: per-class accuracy tables, and a confusion table, in the
  reports (``training.model_card``);
- :meth:`TaskHead.recast`: a task as a task of this kind (``model.age_kind``, ``training.fit``).

Raw outputs are what the net gives: binary [N] logits, multiclass [N, C] logits, regression
[N] on the 0..1 scale of its range, expectation [N, B] logits over its bins, landmarks
[N, K, 2] chip coordinates 0..1. Targets are float tensors with NaN for "no label" (partial
labels; ``training.losses.labelled`` drops those rows before a loss or metric sees them).

A new kind is one class here with ``@register_task_head`` and one in ``engine/tasks.py`` with
``@register_task_kind``; tests/training/test_task_heads.py checks that the two registries
name the same kinds. See docs/ARCHITECTURE.md, "Task kinds".
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from engine.modelspec import TaskSpec

_REGISTRY: dict[str, "TaskHead"] = {}


def register_task_head(cls):
    """Class decorator: training knows the kind ``cls.kind`` (one instance; heads hold no state)."""
    _REGISTRY[cls.kind] = cls()
    return cls


def task_head(task: TaskSpec | str) -> "TaskHead":
    """The head of a task (or of a kind named by a string); ValueError names the known kinds."""
    kind = task if isinstance(task, str) else task.kind
    try:
        return _REGISTRY[kind]
    except KeyError:
        where = "" if isinstance(task, str) else f"task '{task.name}': "
        raise ValueError(f"{where}unknown kind '{kind}' (known: {', '.join(_REGISTRY)})") from None


def task_head_kinds() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def calibrated_kinds() -> tuple[str, ...]:
    """The kinds temperature scaling applies to, in registry order."""
    return tuple(k for k, head in _REGISTRY.items() if head.calibrated)


def as_kind(task: TaskSpec, kind: str) -> TaskSpec:
    """``task`` as a task of ``kind`` where that kind can take it (``model.age_kind``), else as it is."""
    return task_head(kind).recast(task)


# -- arithmetic shared by heads and losses ----------------------------------------------------
def soft_bin_targets(value: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """[N] values -> [N,B] distributions: each value split linearly between its two nearest bins
    (values outside the bins go wholly to the end bin), so Σ q·bins = value inside the range."""
    v = value.clamp(float(bins[0]), float(bins[-1]))
    hi = torch.searchsorted(bins, v, right=False).clamp(1, len(bins) - 1)
    lo = hi - 1
    frac = ((v - bins[lo]) / (bins[hi] - bins[lo])).clamp(0, 1)
    q = torch.zeros(len(v), len(bins), dtype=v.dtype, device=v.device)
    q.scatter_(1, lo[:, None], (1 - frac)[:, None])
    q.scatter_add_(1, hi[:, None], frac[:, None])
    return q


def expectation(task: TaskSpec, out: torch.Tensor) -> torch.Tensor:
    """Σ softmax(out)·bins: the value the engine decodes for an ``expectation`` task."""
    bins = torch.tensor(task.bins, dtype=torch.float32, device=out.device)
    return (torch.softmax(out.float(), 1) * bins).sum(1)


# -- the heads --------------------------------------------------------------------------------
class TaskHead:
    kind: ClassVar[str]
    metric: ClassVar[str | None] = None  # validation metric: "<task>_<metric>" ("acc" | "mae"); None: none
    calibrated: ClassVar[bool] = False  # logits over its labels: temperature scaling applies
    classes: ClassVar[bool] = False  # predicts one of its labels: per-class accuracy in reports
    report_confusion: ClassVar[bool] = False  # reports show its confusion table (binary's is its per-class table)
    flip_invariant: ClassVar[bool] = True  # a mirrored chip predicts the same thing (flip TTA averages it)
    uncertainty_factor: ClassVar[float] = 1.0  # ½ for a squared error (Gaussian likelihood), 1 for a likelihood
    scored: ClassVar[bool] = True  # evaluate and the reports score it against a label
    auto_age_loss: ClassVar[str | None] = None  # the age loss loss.age = "auto" means (None: this head's loss)

    def output_size(self, task: TaskSpec) -> int:
        """Width of the task's output layer."""
        raise NotImplementedError

    def shape_output(self, task: TaskSpec, y: torch.Tensor) -> torch.Tensor:
        """The output layer's [N, output_size] -> this kind's raw output."""
        return y

    def scale_target(self, task: TaskSpec, value: float) -> float:
        """A sample's label (as the dataset gives it) -> the training target."""
        return value

    def loss(self, task: TaskSpec, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The thesis's per-task loss (ch. 3.3), a scalar mean over the batch."""
        raise NotImplementedError

    def smoothed_loss(self, task: TaskSpec, output: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
        """The loss with label smoothing ``eps`` where the kind has labels to smooth; float32."""
        return self.loss(task, output.float(), target)

    def metric_name(self, task: TaskSpec) -> str | None:
        return f"{task.name}_{self.metric}" if self.metric else None

    def metric_sum(self, task: TaskSpec, out: torch.Tensor, target: torch.Tensor) -> float:
        """Sum over the batch of the validation metric (its mean is metric_sum / labelled count)."""
        return 0.0

    def contract_output(self, task: TaskSpec, y: torch.Tensor) -> torch.Tensor:
        """Raw output -> the model contract's output (engine/tasks.py reads it)."""
        return y

    def contract_value(self, task: TaskSpec, r: np.ndarray) -> np.ndarray:
        """The contract's output (numpy, float64) -> one value per face as the engine decodes it
        (label index or value in the task's unit); evaluate scores torch checkpoints with it."""
        return r.reshape(len(r), -1)[:, 0]

    def export_output(self, task: TaskSpec, y: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        """contract_output of the logits divided by ``temperature`` (calibrated kinds only)."""
        if temperature is not None:
            if not self.calibrated:
                raise ValueError(f"task '{task.name}' is {self.kind}: temperatures are for "
                                 f"{' and '.join(calibrated_kinds())} tasks")
            y = y / temperature
        return self.contract_output(task, y)

    def class_logits(self, z: np.ndarray) -> np.ndarray:
        """Float64 logits [V, N(, C)] -> [V, N, C] class logits whose softmax is the contract's
        probabilities (calibrated kinds)."""
        raise ValueError(f"temperature scaling is for {' and '.join(calibrated_kinds())} tasks, not {self.kind}")

    def recast(self, task: TaskSpec) -> TaskSpec:
        """``task`` as a task of this kind; a kind that cannot take it leaves it as it is."""
        return task


class _Labelled(TaskHead):
    metric = "acc"
    calibrated = True
    classes = True


@register_task_head
class Binary(_Labelled):
    """One logit of labels[1]; BCE against 0/1; the contract's output is sigmoid, [N]."""

    kind = "binary"

    def output_size(self, task):
        return 1

    def shape_output(self, task, y):
        return y[:, 0]

    def loss(self, task, output, target):
        return F.binary_cross_entropy_with_logits(output, target.float())

    def smoothed_loss(self, task, output, target, eps):
        if eps > 0:  # targets pulled to eps/2, 1 - eps/2
            return F.binary_cross_entropy_with_logits(output.float(), target.float() * (1 - eps) + eps / 2)
        return super().smoothed_loss(task, output, target, eps)

    def metric_sum(self, task, out, target):
        return float(((out > 0) == (target > 0.5)).sum())

    def contract_output(self, task, y):
        return torch.sigmoid(y.reshape(-1))

    def contract_value(self, task, r):
        return (r.reshape(-1) > 0.5).astype(np.float64)

    def class_logits(self, z):
        """z -> (0, z), whose softmax is (1 - sigmoid(z), sigmoid(z)): one code path with multiclass."""
        return np.stack([np.zeros_like(z), z], axis=-1)


@register_task_head
class Multiclass(_Labelled):
    """C logits; cross-entropy against the class index; the contract's output is softmax, [N, C]."""

    kind = "multiclass"
    report_confusion = True

    def output_size(self, task):
        return len(task.labels)

    def loss(self, task, output, target):
        return F.cross_entropy(output, target.long())

    def smoothed_loss(self, task, output, target, eps):
        if eps > 0:
            return F.cross_entropy(output.float(), target.long(), label_smoothing=eps)
        return super().smoothed_loss(task, output, target, eps)

    def metric_sum(self, task, out, target):
        return float((out.argmax(1) == target.long()).sum())

    def contract_output(self, task, y):
        return torch.softmax(y, dim=1)

    def contract_value(self, task, r):
        return r.argmax(axis=1).astype(np.float64)

    def class_logits(self, z):
        return z


@register_task_head
class Regression(TaskHead):
    """One value on the 0..1 scale of the task's range (as it is without a range): the target is
    scaled there, the loss is 0.5·(y - p)² (thesis eq. 3.2, which keeps it in the range of the
    classification losses), the metric and the contract's output are in the task's unit."""

    kind = "regression"
    metric = "mae"
    uncertainty_factor = 0.5

    def output_size(self, task):
        return 1

    def shape_output(self, task, y):
        return y[:, 0]

    def scale_target(self, task, value):
        if task.range is not None:
            lo, hi = task.range
            return (value - lo) / (hi - lo)
        return value

    def loss(self, task, output, target):
        return 0.5 * F.mse_loss(output, target.float())

    def metric_sum(self, task, out, target):
        lo, hi = task.range if task.range is not None else (0.0, 1.0)
        return float(((out - target).abs() * (hi - lo)).sum())

    def contract_output(self, task, y):
        y = y.reshape(-1)
        if task.range is None:
            return y
        lo, hi = task.range
        return y * float(hi - lo) + float(lo)


@register_task_head
class Expectation(TaskHead):
    """B logits over the task's bins (seed 001's "age as a distribution"): cross-entropy against
    the target value split over its two nearest bins; value = Σ softmax·bins."""

    kind = "expectation"
    metric = "mae"
    auto_age_loss = "soft_bins"  # the same cross-entropy, plus loss.age_l1's expectation term

    def output_size(self, task):
        return len(task.bins)

    def loss(self, task, output, target):
        bins = torch.tensor(task.bins, dtype=output.dtype, device=output.device)
        q = soft_bin_targets(target.to(output.dtype), bins)
        return -(q * F.log_softmax(output, dim=1)).sum(dim=1).mean()

    def metric_sum(self, task, out, target):
        return float((expectation(task, out) - target).abs().sum())

    def contract_output(self, task, y):
        return torch.softmax(y, dim=1)

    def contract_value(self, task, r):
        return r @ np.asarray(task.bins, np.float64)

    def recast(self, task):
        """A regression task -> one bin per whole unit of its range (age 21-60: 40 bins)."""
        if not isinstance(task_head(task), Regression):
            return task
        lo, hi = task.range
        return dataclasses.replace(task, kind=self.kind, range=None,
                                   bins=tuple(float(a) for a in range(int(lo), int(hi) + 1)))


@register_task_head
class Landmarks(TaskHead):
    """K points [N, K, 2] in chip coordinates 0..1; mean squared error; no validation metric.
    Never averaged with the mirror image (a mirrored face's points are not the same points)."""

    kind = "landmarks"
    flip_invariant = False
    scored = False
    uncertainty_factor = 0.5

    def output_size(self, task):
        return 2 * task.points

    def shape_output(self, task, y):
        return y.view(-1, task.points, 2)

    def loss(self, task, output, target):
        return F.mse_loss(output, target.float())
