"""How the per-task losses become the one loss that is back-propagated.

Every scheme is an ``nn.Module`` with ``forward(losses) -> (objective, weights)``:
``losses`` maps task name -> scalar loss of the tasks still training (a task frozen by
Early Freeze is simply left out), ``objective`` is what ``backward()`` is called on, and
``weights`` the weight each present task got, as plain floats for the log. Learned
weights are ``nn.Parameter`` s of the module, so they train with the network (same
optimizer; under DDP the module is wrapped with the net so they stay in sync).

Schemes (``make_weighting(kind, task_names, ...)``):
- ``loss_weight_layer``: the thesis's Loss Weight Layer (seeds/003, §3.4, eq. 3.5).
- ``equal``: the thesis's "Average Loss": every task weight 1/t.
- ``uncertainty``: Kendall, Gal & Cipolla 2018, learned homoscedastic log-variances.
- ``dynamic``: seed 004's dynamic weights (the hard task gets the larger weight).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from training.task_heads import task_head

def _stack(losses: Mapping[str, torch.Tensor], names: Sequence[str]) -> tuple[list[str], list[int], torch.Tensor]:
    present = [n for n in names if n in losses]
    unknown = set(losses) - set(names)
    if unknown:
        raise KeyError(f"weighting got losses of unknown tasks {sorted(unknown)} (knows {list(names)})")
    if not present:
        raise ValueError("weighting got no losses (every task is frozen?)")
    index = [names.index(n) for n in present]
    return present, index, torch.stack([losses[n] for n in present])


class LossWeightLayer(nn.Module):
    """The thesis's Loss Weight Layer: L_total = Σ w_i·L_i + λ·‖W‖², Σ w_i = 1 (eq. 3.5).

    The thesis passes the task losses "through a Linear Layer with no bias"; its output is the
    combined loss, so that layer's weight vector W = (w_1..w_t) *is* the vector of task
    weights, and ‖W‖² = Σ w_i². We keep Σ w_i = 1 and w_i > 0 by holding the weights as a
    softmax of free logits θ (w = softmax(θ)); the penalty is taken on W itself, the layer's
    weights as the thesis defines them, not on θ. On the simplex Σ w_i² is smallest at
    w_i = 1/t, so the λ term keeps the layer from putting all its weight on the task whose
    loss is smallest (which is where minimising Σ w_i·L_i alone would drive it): the
    minimiser is w_i = max(0, (μ - L_i) / 2λ) with μ fixing Σ w_i = 1. λ = 0.1 (thesis §5.4).
    The logits start random ("These weights are set randomly initially"), from ``seed``.
    Tasks left out of ``losses`` (frozen) are dropped and the rest renormalised.
    """

    def __init__(self, task_names: Sequence[str], lam: float = 0.1, seed: int = 0):
        super().__init__()
        self.task_names = list(task_names)
        self.lam = float(lam)
        g = torch.Generator().manual_seed(int(seed))
        self.logits = nn.Parameter(0.5 * torch.randn(len(self.task_names), generator=g))

    def forward(self, losses: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        present, index, stacked = _stack(losses, self.task_names)
        w = torch.softmax(self.logits[index], dim=0)
        objective = (w * stacked).sum() + self.lam * (w * w).sum()
        return objective, dict(zip(present, w.detach().tolist()))


class EqualWeights(nn.Module):
    """The thesis's "Average Loss": the mean of the task losses."""

    def __init__(self, task_names: Sequence[str]):
        super().__init__()
        self.task_names = list(task_names)

    def forward(self, losses: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        present, _, stacked = _stack(losses, self.task_names)
        return stacked.mean(), {n: 1.0 / len(present) for n in present}


class UncertaintyWeights(nn.Module):
    """Kendall, Gal & Cipolla 2018 ("Multi-task learning using uncertainty to weigh losses").

    With s_i = log σ_i² learned per task: a regression-type task (Gaussian likelihood, the loss
    being a squared error: its kind's ``uncertainty_factor`` ½, training/task_heads.py) adds
    ½·exp(-s_i)·L_i + ½·s_i; a classification task (scaled softmax) adds exp(-s_i)·L_i + ½·s_i
    (their eqs. 7 and 10 with log σ = s/2). s starts at 0. The reported weight is the factor in
    front of L_i (c_i·exp(-s_i)); these do not sum to 1.
    """

    def __init__(self, task_names: Sequence[str], task_kinds: Sequence[str]):
        super().__init__()
        self.task_names = list(task_names)
        factors = [task_head(k).uncertainty_factor for k in task_kinds]  # ½ for the squared-error kinds
        self.register_buffer("factors", torch.tensor(factors))
        self.log_vars = nn.Parameter(torch.zeros(len(self.task_names)))

    def forward(self, losses: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        present, index, stacked = _stack(losses, self.task_names)
        s = self.log_vars[index]
        w = self.factors[index] * torch.exp(-s)
        objective = (w * stacked + 0.5 * s).sum()
        return objective, dict(zip(present, w.detach().tolist()))


class DynamicWeights(nn.Module):
    """Seed 004 (Ming et al. 2019, "Dynamic deep multi-task learning ..."): w = softmax(ψ),
    trained with its own loss L_ψ = Σ w_i / L_i in which the task losses are constants,
    while the network trains on Σ w_i·L_i with the weights held constant (their eqs. 1, 7,
    11, 12). Minimising Σ w_i / L_i moves weight to the task whose loss is *largest*, so
    training focuses on the hard task and shifts as losses fall.

    Both updates come from one backward pass: objective = Σ sg(w_i)·L_i + Σ w_i / sg(L_i),
    where sg stops the gradient. Deviation, stated: in the paper w is produced from the
    shared features by a softmax layer (ψ·Z + b); here ψ is a free logit per task (the bias
    alone), so the weights are per epoch, not per image. ψ starts at 0 (equal weights), as
    the paper's analysis assumes.
    """

    def __init__(self, task_names: Sequence[str], eps: float = 1e-8):
        super().__init__()
        self.task_names = list(task_names)
        self.eps = float(eps)
        self.logits = nn.Parameter(torch.zeros(len(self.task_names)))

    def forward(self, losses: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        present, index, stacked = _stack(losses, self.task_names)
        w = torch.softmax(self.logits[index], dim=0)
        objective = (w.detach() * stacked).sum() + (w / (stacked.detach() + self.eps)).sum()
        return objective, dict(zip(present, w.detach().tolist()))


# name -> factory(task_names, task_kinds, lam, seed); a new scheme is one module and one entry.
Factory = Callable[[Sequence[str], Sequence[str], float, int], nn.Module]
_WEIGHTINGS: dict[str, Factory] = {
    "loss_weight_layer": lambda names, kinds, lam, seed: LossWeightLayer(names, lam=lam, seed=seed),
    "equal": lambda names, kinds, lam, seed: EqualWeights(names),
    "uncertainty": lambda names, kinds, lam, seed: UncertaintyWeights(names, kinds),
    "dynamic": lambda names, kinds, lam, seed: DynamicWeights(names),
}
KINDS = tuple(_WEIGHTINGS)


def register_weighting(name: str, factory: Factory) -> None:
    if name in _WEIGHTINGS:
        raise ValueError(f"weighting '{name}' is already registered")
    _WEIGHTINGS[name] = factory


def available_weightings() -> list[str]:
    return list(_WEIGHTINGS)


def make_weighting(kind: str, task_names: Sequence[str], task_kinds: Sequence[str], lam: float = 0.1,
                   seed: int = 0) -> nn.Module:
    """The weighting module named by the config's ``weighting.kind``."""
    factory = _WEIGHTINGS.get(kind)
    if factory is None:
        raise ValueError(f"weighting kind '{kind}' is not known (known: {', '.join(_WEIGHTINGS)})")
    return factory(task_names, task_kinds, lam, seed)
