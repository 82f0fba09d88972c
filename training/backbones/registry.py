"""Backbone registry: ``@register_backbone(name)`` + ``create_backbone(name, pretrained)``.

A backbone is an ``nn.Module`` split into ``stages`` (run in order) and a ``head`` (pooling
+ projection to ``out_features``). The split lets training freeze and cache the early
stages' activations (``stem``) and run only the rest (``forward_from``). Each backbone also
carries its preprocessing contract: chip size, colour, and the normalisation
``(chip - mean_rgb) * scale`` that the exported graph applies to uint8 chips.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class Backbone(nn.Module):
    name: str = ""
    out_features: int = 0
    input_size: int = 150
    color: str = "RGB"  # "RGB" or "GRAY"
    mean_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    stages: nn.ModuleList

    def head(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: float NCHW, already normalised."""
        return self.forward_from(x, 0)

    def stem(self, x: torch.Tensor, n_stages: int) -> torch.Tensor:
        """Run only ``stages[:n_stages]`` (the part training may freeze and cache)."""
        for stage in self.stages[:n_stages]:
            x = stage(x)
        return x

    def forward_from(self, h: torch.Tensor, first_stage: int) -> torch.Tensor:
        for stage in self.stages[first_stage:]:
            h = stage(h)
        return self.head(h)


_REGISTRY: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    def decorate(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"backbone '{name}' is already registered")
        _REGISTRY[name] = factory
        return factory
    return decorate


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(name: str, pretrained: bool = True) -> Backbone:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone '{name}' (available: {', '.join(available_backbones())})")
    return _REGISTRY[name](pretrained=pretrained)
