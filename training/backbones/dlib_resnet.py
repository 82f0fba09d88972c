"""dlib's face-recognition ResNet (29 conv layers, 150×150 RGB -> 128-D) in PyTorch.

The topology is dlib's ``anet_type`` from ``dnn_face_recognition_ex.cpp``; the weights are
read from ``dlib_face_recognition_resnet_model_v1.dat`` (public domain, shipped by the PyPI
package face-recognition-models) by our own reader, ``dlib_format.py``. Two dlib details
matter for exact parity:

- stride-2 convolutions and pools use no padding (dlib's default padding is k/2 only for
  stride 1);
- ``add_prev`` adds tensors of different shapes by zero-extending the smaller one
  (channels, rows and columns, at the end). In the last two downsampling blocks the conv
  branch is smaller than the pooled shortcut (3×3 vs 4×4, 1×1 vs 2×2), so this matters.

BatchNorm was folded into ``affine`` layers (per-channel scale and shift) when dlib saved
the model; they stay trainable here, like a frozen-statistics BatchNorm.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.backbones.dlib_format import DlibLayer, DlibNet, read_dlib_net
from training.backbones.registry import Backbone, register_backbone

MEAN_RGB = (122.782, 117.001, 104.298)
SCALE = 1.0 / 256.0
# (channels, blocks, first block downsamples) from the input side: dlib's alevel4 .. alevel0.
LEVELS = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class Affine(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[None, :, None, None] + self.beta[None, :, None, None]


def add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: elementwise sum, the smaller tensor zero-extended at the end."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def extend(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return extend(a) + extend(b)


class Stem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.affine = Affine(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.affine(self.conv(x))), 3, stride=2)


class ResBlock(nn.Module):
    """relu(x' + conv-affine-relu-conv-affine(x)), x' = x or its 2×2 average when downsampling."""

    def __init__(self, c_in: int, c_out: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.affine1 = Affine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1)
        self.affine2 = Affine(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, stride=2) if self.down else x
        return F.relu(add_prev(y, shortcut))


class DlibResNet29(Backbone):
    """Stages: [stem, 14 residual blocks]; head: global average pool -> fc (no bias) -> 128."""

    name = "dlib-resnet29"
    out_features = 128
    input_size = 150
    color = "RGB"
    mean_rgb = MEAN_RGB
    scale = SCALE

    def __init__(self) -> None:
        super().__init__()
        stages: list[nn.Module] = [Stem()]
        c_in = 32
        for channels, blocks, down in LEVELS:
            for i in range(blocks):
                stages.append(ResBlock(c_in, channels, down and i == 0))
                c_in = channels
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(256, 128, bias=False)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h.mean(dim=(2, 3)))

    def load_dlib(self, net: DlibNet) -> "DlibResNet29":
        """Copy weights from a parsed dlib file, checking the layer sequence matches ours."""
        params = [layer for layer in net.layers if layer.kind in ("con", "affine", "fc")]
        targets: list[tuple[str, nn.Module]] = []
        for stage in self.stages:
            if isinstance(stage, Stem):
                targets += [("con", stage.conv), ("affine", stage.affine)]
            else:
                targets += [("con", stage.conv1), ("affine", stage.affine1),
                            ("con", stage.conv2), ("affine", stage.affine2)]
        targets.append(("fc", self.fc))
        if [k for k, _ in targets] != [p.kind for p in params]:
            raise ValueError("the dlib file's layer sequence does not match dlib-resnet29")
        with torch.no_grad():
            for (kind, module), layer in zip(targets, params):
                _copy(kind, module, layer)
        return self


def _copy(kind: str, module: nn.Module, layer: DlibLayer) -> None:
    p = layer.params
    if kind == "con":
        if tuple(module.weight.shape) != p["weight"].shape or tuple(module.stride) != tuple(p["stride"]) \
                or tuple(module.padding) != tuple(p["padding"]):
            raise ValueError(f"conv mismatch: ours {tuple(module.weight.shape)} stride {module.stride} "
                             f"padding {module.padding}, dlib {p['weight'].shape} {p['stride']} {p['padding']}")
        module.weight.copy_(torch.from_numpy(p["weight"]))
        module.bias.copy_(torch.from_numpy(p["bias"]))
    elif kind == "affine":
        module.gamma.copy_(torch.from_numpy(p["gamma"]))
        module.beta.copy_(torch.from_numpy(p["beta"]))
    else:  # fc: dlib stores [in, out]
        module.weight.copy_(torch.from_numpy(p["weight"].T.copy()))


@register_backbone("dlib-resnet29")
def dlib_resnet29(pretrained: bool = True, weights_path: str | Path | None = None) -> DlibResNet29:
    model = DlibResNet29()
    if pretrained:
        if weights_path is None:
            from engine.assets import FACE_RESNET, dlib_model
            weights_path = dlib_model(FACE_RESNET)
        model.load_dlib(read_dlib_net(weights_path))
    return model
