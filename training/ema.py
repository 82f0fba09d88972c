"""An exponential moving average of a network's weights (``optim.ema``).

After every optimiser step: ``ema = d·ema + (1 - d)·weights`` for the floating-point
parameters and buffers (BatchNorm running statistics included; integer buffers are
copied). The decay warms up as ``min(d, (1 + n) / (10 + n))`` after n updates, so the
average does not keep the pretrained start for thousands of steps. ``model`` is a full copy
of the network holding the averaged weights: it is what the loop validates and saves as
``model_state`` when EMA is on.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    def __init__(self, net: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"optim.ema must be in (0, 1) (0 = off), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.model = copy.deepcopy(net).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = net.state_dict()
        for k, v in self.model.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach(), alpha=1 - d)
            else:
                v.copy_(src[k])

    @torch.no_grad()
    def reset(self, net: nn.Module) -> None:
        """Start again from the network's weights (after Early Freeze restores an older state)."""
        self.model.load_state_dict(net.state_dict())

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        self.model.load_state_dict(state["model"])
