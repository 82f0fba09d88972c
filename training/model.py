"""The multi-task network of the thesis (seeds/003, Fig. 3.2) and its per-task losses.

    chips uint8 [N,150,150,3] RGB
      -> cast, normalise ((chip - mean_rgb) * scale), to the backbone's colour and size
      -> backbone (pretrained on faces, fine-tuned)            [N, F]
      -> shared FC layers: Linear -> LeakyReLU -> BatchNorm1d   (one block per shared dim)
      -> per task: penultimate Linear -> Dropout -> LeakyReLU    (head_dim; 0 = none)
      -> per task: output Linear (no dropout, no activation)

The order inside the blocks follows the thesis text ("the shared layers ... are followed by
Leaky ReLU activation unit and then Batch Normalisation layers. The penultimate task
specific layers are followed by dropout layers and Leaky ReLU activation layers").
``shared_dims=()`` and ``head_dim=0`` give the thesis's "single task baseline": the
backbone's features straight into an output layer.

The net does its own cast and normalisation, so the exported ONNX graph takes the chip
exactly as the engine makes it. Outputs are logits / raw values, shaped by each task's kind
(``training/task_heads.py``: head width, output shape, loss); ``training/export.py`` turns
them into the contract's probabilities and values.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine.modelspec import TaskSpec
from training.task_heads import soft_bin_targets, task_head  # noqa: F401  (soft_bin_targets re-exported)

CHIP_SIZE = 150
_LUMA = (0.299, 0.587, 0.114)


def _shared_block(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.LeakyReLU(0.01), nn.BatchNorm1d(n_out))


def _head(n_in: int, head_dim: int, dropout: float, n_out: int) -> nn.Sequential:
    if head_dim <= 0:
        return nn.Sequential(nn.Linear(n_in, n_out))
    return nn.Sequential(nn.Linear(n_in, head_dim), nn.Dropout(dropout), nn.LeakyReLU(0.01),
                         nn.Linear(head_dim, n_out))


class MultiTaskNet(nn.Module):
    """backbone -> shared FC -> one head per task; see the module docstring."""

    def __init__(self, backbone: nn.Module, tasks: Sequence[TaskSpec], shared_dims: Sequence[int] = (256,),
                 head_dim: int = 128, dropout: float = 0.3):
        super().__init__()
        if not tasks:
            raise ValueError("MultiTaskNet needs at least one task")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names repeat: {names}")
        self.backbone = backbone
        self.tasks = tuple(tasks)
        self.shared_dims = tuple(int(d) for d in shared_dims)
        self.head_dim = int(head_dim)
        self.dropout = float(dropout)
        blocks, n = [], int(backbone.out_features)
        for d in self.shared_dims:
            blocks.append(_shared_block(n, d))
            n = d
        self.shared = nn.Sequential(*blocks)
        self.heads = nn.ModuleDict({t.name: _head(n, self.head_dim, self.dropout, task_head(t).output_size(t))
                                    for t in tasks})
        self.register_buffer("mean_rgb", torch.tensor(backbone.mean_rgb, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.input_scale = float(backbone.scale)

    # -- input side -----------------------------------------------------------------
    def preprocess(self, chips_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        """uint8 [N,H,W,3] RGB chips -> the backbone's normalised float NCHW input."""
        x = chips_uint8_nhwc.permute(0, 3, 1, 2).float()
        x = (x - self.mean_rgb) * self.input_scale
        if self.backbone.color == "GRAY":  # normalisation is linear, so gray-after equals gray-before
            w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * w).sum(dim=1, keepdim=True)
        size = int(self.backbone.input_size)
        if x.shape[-1] != size:
            if x.shape[-1] % size == 0:  # area downscale, exports as a plain AveragePool
                x = F.avg_pool2d(x, x.shape[-1] // size)
            else:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return x

    def stem(self, chips_uint8_nhwc: torch.Tensor, n_stages: int) -> torch.Tensor:
        """The activations after the first ``n_stages`` backbone stages (what the stem cache stores)."""
        return self.backbone.stem(self.preprocess(chips_uint8_nhwc), n_stages)

    # -- output side ----------------------------------------------------------------
    def heads_from_features(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.shared(features)
        out: dict[str, torch.Tensor] = {}
        for t in self.tasks:
            out[t.name] = task_head(t).shape_output(t, self.heads[t.name](z))
        return out

    def forward(self, chips_uint8_nhwc: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits / raw values per task: binary [N], multiclass [N,C], regression [N] (0..1 of its
        range), expectation [N,B], landmarks [N,K,2]."""
        return self.heads_from_features(self.backbone(self.preprocess(chips_uint8_nhwc)))

    def forward_from_stem(self, h: torch.Tensor, first_stage: int) -> dict[str, torch.Tensor]:
        """Like forward, from the activations ``stem(chips, first_stage)`` (e.g. read from a cache)."""
        return self.heads_from_features(self.backbone.forward_from(h.float(), first_stage))

    def architecture(self) -> dict:
        """What build_from_checkpoint needs besides the weights."""
        return {"backbone": self.backbone.name, "tasks": [asdict(t) for t in self.tasks],
                "shared_dims": list(self.shared_dims), "head_dim": self.head_dim, "dropout": self.dropout}


def task_from_dict(d: Mapping) -> TaskSpec:
    rng = d.get("range")
    return TaskSpec(name=d["name"], kind=d["kind"], labels=tuple(d.get("labels", ())), unit=d.get("unit", ""),
                    range=None if rng is None else (float(rng[0]), float(rng[1])),
                    bins=tuple(float(b) for b in d.get("bins", ())), points=int(d.get("points", 0)))


def build_from_checkpoint(ckpt: Mapping) -> MultiTaskNet:
    """Rebuild the trained net from a ``faceattr-ckpt/1`` checkpoint dict (weights loaded, eval mode)."""
    from training.backbones import create_backbone
    from training.checkpoint import check_format

    check_format(ckpt)  # CheckpointError (a ValueError) names the format found
    model_cfg = ckpt["config"]["model"]
    tasks = [task_from_dict(t) for t in ckpt["tasks"]]
    backbone = create_backbone(ckpt["backbone"], pretrained=False)  # the weights come from model_state
    net = MultiTaskNet(backbone, tasks, shared_dims=model_cfg["shared_dims"], head_dim=model_cfg["head_dim"],
                       dropout=model_cfg["dropout"])
    net.load_state_dict(ckpt["model_state"])
    return net.eval()


# -- losses (each kind's: training/task_heads.py) -----------------------------------------------
def task_loss(task: TaskSpec, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The thesis's per-task loss (ch. 3.3), a scalar mean over the batch: the task kind's
    ``loss`` (training/task_heads.py).

    binary: BCE with logits, target 0/1 (probability of labels[1]).
    multiclass: cross-entropy, target the class index.
    regression: 0.5·(y - p)² averaged over the batch (thesis eq. 3.2), y and p on the 0..1 scale
        of the task's range, which keeps it in the range of the classification losses.
    expectation: cross-entropy between the softmax over bins and the target value split over its
        two nearest bins (seed 001's "age as a distribution"); target in the task's unit.
    landmarks: mean squared error of the [N,K,2] chip coordinates (0..1).
    """
    return task_head(task).loss(task, output, target)


def task_losses(outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                tasks: Sequence[TaskSpec]) -> dict[str, torch.Tensor]:
    """One scalar loss per task, keyed by task name."""
    return {t.name: task_loss(t, outputs[t.name], targets[t.name]) for t in tasks}
