"""Early Freeze (thesis seeds/003, §3.5, Algorithm 1) and plain early stopping.

Algorithm 1 watches each task's validation loss. A task whose loss has not gone below its
minimum for P epochs has converged: freeze the shared layers (backbone + shared FC) and
that task's layers, restore the model "to the state when Counter[i] = 0", i.e. to the
epoch when that task was best (the text: "revert the model state to earlier epoch when
that task performed best"), and go on training the other tasks' heads only.

How we read the pseudo-code, where it is silent:
- The counter restarts at 0 when the task improves (line 7's "else" branch): otherwise
  "the state when Counter[i] = 0" would not be the best epoch the text names.
- A loss equal to the minimum counts as an improvement (line 5 tests ">").
- All tasks are updated each epoch, then at most one task freezes (line 12's "break"):
  the first, in task order, that reached P.
- First freeze, while backbone + shared are still training: the *whole* model goes back
  to that task's best epoch, other heads included, since they were trained on those shared
  features; the other tasks then restart their watch from their losses at that epoch (the
  state we are now in). Later freezes (the trunk is already frozen), or any freeze when the
  trunk never trained (the linear-probe baseline): only that task's head is restored.
- A frozen task's loss leaves the training objective; the weighting renormalises.

``EarlyFreeze`` and ``EarlyStopping`` are pure logic over loss numbers (testable on
hand-made sequences); ``FreezeController`` and ``FrozenParts`` are the torch glue.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class FreezeEvent:
    epoch: int  # the epoch after whose validation the freeze happened
    task: str
    best_epoch: int
    best_loss: float
    patience: int
    freezes_trunk: bool  # this event froze backbone + shared (and restored the whole model)

    def message(self) -> str:
        what = (f"restored the whole model to epoch {self.best_epoch}, froze backbone + shared layers + "
                f"the '{self.task}' head" if self.freezes_trunk
                else f"restored the '{self.task}' head to epoch {self.best_epoch} and froze it")
        return (f"epoch {self.epoch}: early freeze of '{self.task}': its validation loss has not improved for "
                f"{self.patience} epoch{'s' if self.patience != 1 else ''} (best {self.best_loss:.4f} at epoch {self.best_epoch}); {what}")


class EarlyFreeze:
    """Algorithm 1 over validation losses; ``step`` once per epoch."""

    def __init__(self, task_names: Sequence[str], patience: int, trunk_trainable: bool = True):
        if patience < 1:
            raise ValueError(f"early freeze patience must be at least 1, got {patience}")
        self.task_names = list(task_names)
        self.patience = int(patience)
        self.trunk_trainable = bool(trunk_trainable)
        self.trunk_frozen = False
        self.frozen: list[str] = []
        self.best_loss = {n: math.inf for n in self.task_names}
        self.best_epoch = {n: -1 for n in self.task_names}
        self.counter = {n: 0 for n in self.task_names}
        self.history: dict[int, dict[str, float]] = {}
        self.events: list[FreezeEvent] = []

    @property
    def active(self) -> list[str]:
        return [n for n in self.task_names if n not in self.frozen]

    def step(self, epoch: int, val_losses: Mapping[str, float]) -> list[FreezeEvent]:
        self.history[epoch] = {n: float(v) for n, v in val_losses.items()}
        for n in self.active:
            loss = float(val_losses[n])
            if loss > self.best_loss[n]:
                self.counter[n] += 1
            else:
                self.best_loss[n], self.best_epoch[n], self.counter[n] = loss, epoch, 0
        for n in self.active:
            if self.counter[n] >= self.patience:
                return [self._freeze(epoch, n)]
        return []

    def _freeze(self, epoch: int, name: str) -> FreezeEvent:
        event = FreezeEvent(epoch, name, self.best_epoch[name], self.best_loss[name], self.patience,
                            freezes_trunk=self.trunk_trainable and not self.trunk_frozen)
        self.frozen.append(name)
        if event.freezes_trunk:
            self.trunk_frozen = True
            back = self.history[event.best_epoch]
            for n in self.active:  # the model is back at best_epoch: watch from there
                self.best_loss[n], self.best_epoch[n], self.counter[n] = back[n], event.best_epoch, 0
        self.events.append(event)
        return event

    def state_dict(self) -> dict:
        return {"task_names": self.task_names, "patience": self.patience, "trunk_trainable": self.trunk_trainable,
                "trunk_frozen": self.trunk_frozen, "frozen": list(self.frozen), "best_loss": dict(self.best_loss),
                "best_epoch": dict(self.best_epoch), "counter": dict(self.counter),
                "history": {int(k): dict(v) for k, v in self.history.items()},
                "events": [vars(e) for e in self.events]}

    def load_state_dict(self, state: Mapping) -> None:
        self.task_names = list(state["task_names"])
        self.patience, self.trunk_trainable = int(state["patience"]), bool(state["trunk_trainable"])
        self.trunk_frozen, self.frozen = bool(state["trunk_frozen"]), list(state["frozen"])
        self.best_loss, self.best_epoch = dict(state["best_loss"]), dict(state["best_epoch"])
        self.counter = dict(state["counter"])
        self.history = {int(k): dict(v) for k, v in state["history"].items()}
        self.events = [FreezeEvent(**e) for e in state["events"]]


class EarlyStopping:
    """Stop when the monitored value has not improved for ``patience`` epochs (0 = never stop)."""

    def __init__(self, patience: int):
        self.patience = int(patience)
        self.best_value = math.inf
        self.best_epoch = -1
        self.counter = 0

    def step(self, epoch: int, value: float) -> bool:
        """Record this epoch's value; True when training should stop now."""
        if value < self.best_value:
            self.best_value, self.best_epoch, self.counter = float(value), epoch, 0
        else:
            self.counter += 1
        return self.patience > 0 and self.counter >= self.patience

    def state_dict(self) -> dict:
        return {"patience": self.patience, "best_value": self.best_value, "best_epoch": self.best_epoch,
                "counter": self.counter}

    def load_state_dict(self, state: Mapping) -> None:
        self.patience, self.best_value = int(state["patience"]), float(state["best_value"])
        self.best_epoch, self.counter = int(state["best_epoch"]), int(state["counter"])


# -- torch glue -------------------------------------------------------------------------
@dataclass(frozen=True)
class FrozenParts:
    """Which parts of a MultiTaskNet do not train: the first ``backbone_stages`` backbone stages
    (-1 = the whole backbone; the speed setting), the trunk (backbone + shared, after the first
    early freeze) and the heads of frozen tasks. Frozen parameters get requires_grad False and
    frozen modules run in eval mode, so their BatchNorm statistics stay put too."""

    backbone_stages: int = 0
    trunk: bool = False
    tasks: tuple[str, ...] = field(default_factory=tuple)

    def modules(self, net: nn.Module) -> list[nn.Module]:
        mods: list[nn.Module] = []
        if self.trunk or self.backbone_stages < 0:
            mods.append(net.backbone)
        else:
            mods.extend(net.backbone.stages[: self.backbone_stages])
        if self.trunk:
            mods.append(net.shared)
        mods.extend(net.heads[t] for t in self.tasks)
        return mods

    def apply(self, net: nn.Module) -> None:
        """Set requires_grad: False for the frozen parts, True for the rest."""
        for p in net.parameters():
            p.requires_grad_(True)
        for m in self.modules(net):
            for p in m.parameters():
                p.requires_grad_(False)

    def train_mode(self, net: nn.Module) -> None:
        """net.train(), except frozen modules, which stay in eval mode."""
        net.train()
        for m in self.modules(net):
            m.eval()


class FreezeController:
    """Early Freeze applied to a net: keeps a copy of the model at each active task's best
    epoch, and on a freeze event restores it and updates the frozen parts."""

    def __init__(self, logic: EarlyFreeze, parts: FrozenParts):
        self.logic = logic
        self.parts = parts
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def after_validation(self, epoch: int, val_losses: Mapping[str, float], net: nn.Module) -> list[FreezeEvent]:
        events = self.logic.step(epoch, val_losses)
        if any(self.logic.best_epoch[n] == epoch for n in self.logic.active):
            self.snapshots[epoch] = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
        for e in events:
            self._apply(e, net)
        keep = {self.logic.best_epoch[n] for n in self.logic.active}
        self.snapshots = {k: v for k, v in self.snapshots.items() if k in keep}
        return events

    def _apply(self, event: FreezeEvent, net: nn.Module) -> None:
        snap = self.snapshots[event.best_epoch]
        if event.freezes_trunk:
            net.load_state_dict(snap)
        else:
            prefix = f"heads.{event.task}."
            net.load_state_dict({**net.state_dict(), **{k: v for k, v in snap.items() if k.startswith(prefix)}})
        self.parts = FrozenParts(self.parts.backbone_stages, self.logic.trunk_frozen, tuple(self.logic.frozen))
        self.parts.apply(net)

    def state_dict(self) -> dict:
        return {"logic": self.logic.state_dict(), "snapshots": self.snapshots,
                "parts": {"backbone_stages": self.parts.backbone_stages, "trunk": self.parts.trunk,
                          "tasks": list(self.parts.tasks)}}

    def load_state_dict(self, state: Mapping, net: nn.Module) -> None:
        self.logic.load_state_dict(state["logic"])
        self.snapshots = dict(state["snapshots"])
        p = state["parts"]
        self.parts = FrozenParts(int(p["backbone_stages"]), bool(p["trunk"]), tuple(p["tasks"]))
        self.parts.apply(net)
