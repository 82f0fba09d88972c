"""Batched chip augmentation in torch: one call per batch, no per-sample Python.

    augment = create_augmenter(cfg.augment, flip=cfg.data.flip)
    x = augment(chips_uint8_nhwc)          # float32 [N,H,W,3] in 0..255, same layout

Each augmentation is registered (``@register_augment(name)``) as a function
``(x float [N,3,H,W] 0..255, cfg: AugmentConfig) -> x`` that draws its own random numbers
from torch's global RNG (seeded and checkpointed by the fit loop, so a resumed run draws
the same numbers). ``create_augmenter`` keeps the ones the config switches on, in
registry order: geometry first (flip, then one affine resample for scale + rotation +
shift), then photometric (brightness, contrast, saturation, low light, greyscale), then
degradation (blur, downscale, occlusion).

The geometric part is one ``affine_grid`` + ``grid_sample`` on the whole batch: the chip
is already aligned by the engine (eyes and mouth at fixed places), so the jitter stays
small; its effect on the face centre is bounded by ``max_centre_shift_px`` (tested).
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from training.config import AugmentConfig

AugmentFn = Callable[[torch.Tensor, AugmentConfig], torch.Tensor]
_REGISTRY: dict[str, tuple[AugmentFn, Callable[[AugmentConfig, bool], bool]]] = {}


def register_augment(name: str, enabled: Callable[[AugmentConfig, bool], bool]):
    """Register an augmentation and the test that says whether a config turns it on."""
    def deco(fn: AugmentFn) -> AugmentFn:
        if name in _REGISTRY:
            raise ValueError(f"augmentation '{name}' is already registered")
        _REGISTRY[name] = (fn, enabled)
        return fn
    return deco


def available_augments() -> list[str]:
    return list(_REGISTRY)


def _uniform(n: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, dtype=like.dtype, device=like.device) * (hi - lo) + lo


@register_augment("flip", lambda c, flip: flip)
def flip(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    return flip_with_mask(x)[0]


def flip_with_mask(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each chip mirrored left-right with probability 0.5; also returns which were (the
    Augmenter mirrors their side-swapping labels with them)."""
    flipped = torch.rand(len(x), device=x.device) < 0.5
    return torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x), flipped


@register_augment("affine", lambda c, flip: c.scale > 0 or c.rotate > 0 or c.shift > 0)
def affine(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Zoom, rotate and shift about the chip centre, one bilinear resample; the border is replicated."""
    n = len(x)
    zoom = _uniform(n, 1 - cfg.scale, 1 + cfg.scale, x)
    angle = _uniform(n, -cfg.rotate, cfg.rotate, x) * (math.pi / 180)
    shift = _uniform(2 * n, -cfg.shift, cfg.shift, x).view(n, 2) * 2  # grid units: the side is 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # output -> input sampling map
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def max_centre_shift_px(cfg: AugmentConfig, side: int, point_from_centre_px: float = 0.0) -> float:
    """Upper bound on how far ``affine`` moves a point ``point_from_centre_px`` from the chip centre:
    the shift, plus what zoom and rotation do at that radius."""
    r = point_from_centre_px
    zoom = max(1 / (1 - cfg.scale), 1 + cfg.scale) if cfg.scale < 1 else float("inf")
    radial = r * (zoom - 1)
    turn = 2 * r * zoom * math.sin(math.radians(cfg.rotate) / 2)
    return math.hypot(cfg.shift * side, cfg.shift * side) + radial + turn


@register_augment("brightness", lambda c, flip: c.brightness > 0)
def brightness(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    return x + _uniform(len(x), -cfg.brightness, cfg.brightness, x).view(-1, 1, 1, 1) * 255


@register_augment("contrast", lambda c, flip: c.contrast > 0)
def contrast(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(len(x), 1 - cfg.contrast, 1 + cfg.contrast, x).view(-1, 1, 1, 1) + mean


@register_augment("saturation", lambda c, flip: c.saturation > 0)
def saturation(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    gray = (x * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return (x - gray) * _uniform(len(x), 1 - cfg.saturation, 1 + cfg.saturation, x).view(-1, 1, 1, 1) + gray


@register_augment("low_light", lambda c, flip: c.low_light > 0)
def low_light(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """A dim webcam on a random share ``cfg.low_light`` of the chips: gamma U(1.5, 2.5) darkens
    the mid-tones, then sensor noise (sigma 4 grey levels) on the dark image."""
    n = len(x)
    pick = (torch.rand(n, device=x.device) < cfg.low_light).view(-1, 1, 1, 1)
    gamma = _uniform(n, 1.5, 2.5, x).view(-1, 1, 1, 1)
    dark = 255 * (x.clamp(0, 255) / 255) ** gamma + torch.randn_like(x) * 4
    return torch.where(pick, dark, x)


@register_augment("grey", lambda c, flip: c.grey > 0)
def grey(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Greyscale (a monochrome or IR camera) on a random share ``cfg.grey`` of the chips."""
    g = (x * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    pick = (torch.rand(len(x), device=x.device) < cfg.grey).view(-1, 1, 1, 1)
    return torch.where(pick, g.expand_as(x), x)


def _gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    k = torch.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)
    return k / k.sum(1, keepdim=True)  # [N, 2r+1]


@register_augment("blur", lambda c, flip: c.blur > 0)
def blur(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Separable Gaussian blur, a per-chip sigma, on a random share ``cfg.blur`` of the batch
    (one grouped convolution for the whole batch: each chip's 3 channels are one group each)."""
    n, c, h, w = x.shape
    pick = torch.rand(n, device=x.device) < cfg.blur
    sigma = _uniform(n, 0.3, max(cfg.blur_sigma, 0.31), x)
    radius = max(1, math.ceil(2 * cfg.blur_sigma))
    k = _gaussian_kernels(sigma, radius).repeat_interleave(c, 0)  # [N*C, K]
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c).view(n, c, h, w)
    return torch.where(pick.view(-1, 1, 1, 1), y, x)


@register_augment("downscale", lambda c, flip: c.downscale > 0)
def downscale(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Down to U(downscale_min, 1) of the side (one size per batch, so one resize call) and back up,
    on a random share ``cfg.downscale`` of the chips: the detail loss of low resolution / JPEG."""
    n, _, h, w = x.shape
    f = float(_uniform(1, cfg.downscale_min, 1.0, x))
    small = F.interpolate(x, size=(max(8, round(h * f)), max(8, round(w * f))), mode="bilinear",
                          align_corners=False, antialias=True)
    y = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    pick = torch.rand(n, device=x.device) < cfg.downscale
    return torch.where(pick.view(-1, 1, 1, 1), y, x)


@register_augment("occlude", lambda c, flip: c.occlude > 0)
def occlude(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Partial occlusion (a hand, a mug, a microphone) on a random share ``cfg.occlude`` of the
    chips: one rectangle of 15-35 % of each side, at a random place, filled with one random grey."""
    n, _, h, w = x.shape
    rh = (_uniform(n, 0.15, 0.35, x) * h).long().view(-1, 1)
    rw = (_uniform(n, 0.15, 0.35, x) * w).long().view(-1, 1)
    y0 = (torch.rand(n, 1, device=x.device) * (h - rh)).long()
    x0 = (torch.rand(n, 1, device=x.device) * (w - rw)).long()
    rows = torch.arange(h, device=x.device).view(1, -1)
    cols = torch.arange(w, device=x.device).view(1, -1)
    inside = (((rows >= y0) & (rows < y0 + rh)).view(n, 1, h, 1) & ((cols >= x0) & (cols < x0 + rw)).view(n, 1, 1, w))
    pick = (torch.rand(n, device=x.device) < cfg.occlude).view(-1, 1, 1, 1)
    fill = _uniform(n, 0, 255, x).view(-1, 1, 1, 1)
    return torch.where(inside & pick, fill, x)


def mirror_targets(targets: dict[str, torch.Tensor], flipped: torch.Tensor,
                   mirror: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Targets of mirrored chips: a task whose labels swap sides under a horizontal flip (head
    pose: left <-> right) takes ``mirror[task][label]`` on the flipped rows; unlabelled rows
    (NaN) stay NaN."""
    out = dict(targets)
    for name, perm in mirror.items():
        t = targets.get(name)
        if t is None:
            continue
        known = torch.isfinite(t)
        mapped = perm.to(t.device)[t.nan_to_num(0).long().clamp(0, len(perm) - 1)].to(t.dtype)
        out[name] = torch.where(flipped & known, mapped, t)
    return out


class Augmenter:
    """The config's augmentations in registry order, on uint8 [N,H,W,3] chips -> float [N,H,W,3] 0..255.

    Called with the batch's targets too (``augment(chips, targets) -> (x, targets)``), the flip
    mirrors the labels that swap sides (``mirror``: task -> label permutation, from the
    datasets, e.g. MTFL's head pose); without targets it returns the chips alone."""

    def __init__(self, cfg: AugmentConfig, names: list[str], mirror: Mapping[str, Sequence[int]] | None = None):
        self.cfg, self.names = cfg, names
        self.fns = [_REGISTRY[n][0] for n in names]
        self.mirror = {k: torch.tensor(v, dtype=torch.long) for k, v in (mirror or {}).items()}

    def __call__(self, chips: torch.Tensor, targets: dict[str, torch.Tensor] | None = None):
        if not self.fns:
            return chips if targets is None else (chips, targets)
        x = chips.permute(0, 3, 1, 2).float()
        for name, fn in zip(self.names, self.fns):
            if name == "flip":  # the one step that may change labels
                x, flipped = flip_with_mask(x)
                if targets is not None and self.mirror:
                    targets = mirror_targets(targets, flipped, self.mirror)
            else:
                x = fn(x, self.cfg)
        x = x.clamp_(0, 255).permute(0, 2, 3, 1).contiguous()  # NHWC again: the net's NCHW view is channels_last
        return x if targets is None else (x, targets)


def create_augmenter(cfg: AugmentConfig, flip: bool = False, mirror: Mapping[str, Sequence[int]] | None = None
                     ) -> Augmenter:
    return Augmenter(cfg, [name for name, (_, on) in _REGISTRY.items() if on(cfg, flip)], mirror)
