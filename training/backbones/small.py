"""Small backbones trained from scratch: a plain ResNet and seed 000's 50×50 grayscale CNN.

They let the multi-task heads, losses and fit loop be exercised (and compared) without the
pretrained dlib ResNet; neither is expected to match it on UTKFace.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.backbones.registry import Backbone, register_backbone


class _ConvBnRelu(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class _Basic(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_ConvBnRelu(c_in, c_out, stride),
                                  nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class ResNetSmall(Backbone):
    """A plain 4-level ResNet on 150×150 RGB chips (≈0.7 M parameters)."""

    name = "resnet-small"
    out_features = 128
    input_size = 150
    color = "RGB"
    mean_rgb = (127.5, 127.5, 127.5)
    scale = 1 / 127.5

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([
            nn.Sequential(_ConvBnRelu(3, 24, 2), nn.MaxPool2d(3, 2)),
            _Basic(24, 32, 1), _Basic(32, 64, 2), _Basic(64, 96, 2), _Basic(96, 128, 2),
        ])

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return h.mean(dim=(2, 3))


class Cnn50Gray(Backbone):
    """Seed 000's network: 50×50 grayscale input, three conv-pool blocks, a dense layer.

    The chip is resized to 50×50 and converted to grey inside the network, so it takes the
    same 150×150 RGB chip as every other backbone (one preprocessing contract).
    """

    name = "cnn50-gray"
    out_features = 128
    input_size = 150
    color = "RGB"
    mean_rgb = (127.5, 127.5, 127.5)
    scale = 1 / 127.5

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([
            nn.Sequential(_ConvBnRelu(1, 32), nn.MaxPool2d(2)),   # 50 -> 25
            nn.Sequential(_ConvBnRelu(32, 64), nn.MaxPool2d(2)),  # 25 -> 12
            nn.Sequential(_ConvBnRelu(64, 128), nn.MaxPool2d(2)),  # 12 -> 6
        ])
        self.fc = nn.Linear(128 * 6 * 6, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(self.to_gray50(x), 0)

    def stem(self, x: torch.Tensor, n_stages: int) -> torch.Tensor:
        return super().stem(self.to_gray50(x), n_stages)

    @staticmethod
    def to_gray50(x: torch.Tensor) -> torch.Tensor:
        gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        return F.interpolate(gray, size=(50, 50), mode="bilinear", align_corners=False)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(h.flatten(1)))


@register_backbone("resnet-small")
def resnet_small(pretrained: bool = False) -> ResNetSmall:
    if pretrained:
        raise ValueError("resnet-small has no pretrained weights; set pretrained = false")
    return ResNetSmall()


@register_backbone("cnn50-gray")
def cnn50_gray(pretrained: bool = False) -> Cnn50Gray:
    if pretrained:
        raise ValueError("cnn50-gray has no pretrained weights; set pretrained = false")
    return Cnn50Gray()
