"""Write MTCNN's three networks as ONNX files under assets/detectors/ (run once, by a developer).

MTCNN (Zhang et al., 2016) is a cascade of three small CNNs: P-Net scans an image pyramid
for candidate faces, R-Net and O-Net re-score and refine the candidates (O-Net also gives
five landmarks). Its trained weights ship in the PyPI package ``facenet-pytorch`` (MIT
licence, ``facenet_pytorch/data/{pnet,rnet,onet}.pt``); this tool rebuilds the three
networks in torch from those state dicts and exports them, so the engine runs them with
ONNX Runtime and never needs torch. Needs the ``train`` extra (torch) and the weights:

    pip download facenet-pytorch --no-deps -d /tmp/fp && unzip -o /tmp/fp/*.whl -d /tmp/fp
    python tools/export_mtcnn.py --weights /tmp/fp/facenet_pytorch/data

The networks keep the original Caffe model's layout: R-Net and O-Net flatten their last
feature map transposed (width before height), which is how their dense weights are laid out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "assets" / "detectors"
NAMES = ("pnet", "rnet", "onet")


def _conv(cin: int, cout: int, k: int) -> tuple[nn.Conv2d, nn.PReLU]:
    return nn.Conv2d(cin, cout, k), nn.PReLU(cout)


class PNet(nn.Module):
    """Fully convolutional: a 12×12 window per output cell, stride 2. Outputs (face
    probability [N,1,h,w], box offsets [N,4,h,w])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 10, 3)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _conv(10, 16, 3)
        self.conv3, self.prelu3 = _conv(16, 32, 3)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1)[:, 1:2], self.conv4_2(x)


class RNet(nn.Module):
    """24×24 crops -> (face probability [N], box offsets [N,4])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 28, 3)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _conv(28, 48, 3)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = _conv(48, 64, 2)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).flatten(1)
        x = self.prelu4(self.dense4(x))
        return torch.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """48×48 crops -> (face probability [N], box offsets [N,4], landmarks [N,10]: five x
    then five y, as fractions of the box)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 32, 3)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _conv(32, 64, 3)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = _conv(64, 64, 3)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = _conv(64, 128, 2)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).flatten(1)
        x = self.prelu5(self.dense5(x))
        return torch.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


NETS = {"pnet": (PNet, 12, ("prob", "offsets")),
        "rnet": (RNet, 24, ("prob", "offsets")),
        "onet": (ONet, 48, ("prob", "offsets", "landmarks"))}


def export(weights_dir: Path, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (cls, size, outputs) in NETS.items():
        net = cls().eval()
        net.load_state_dict(torch.load(weights_dir / f"{name}.pt", map_location="cpu"))
        dynamic = {"image": {0: "n", 2: "h", 3: "w"}} if name == "pnet" else {"image": {0: "n"}}
        dynamic.update({o: {0: "n"} for o in outputs})
        path = out_dir / f"mtcnn_{name}.onnx"
        torch.onnx.export(net, torch.zeros(1, 3, size, size), str(path), input_names=["image"],
                          output_names=list(outputs), dynamic_axes=dynamic, opset_version=17, dynamo=False)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True,
                    help="folder holding facenet-pytorch's pnet.pt, rnet.pt, onet.pt")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)
    missing = [n for n in NAMES if not (args.weights / f"{n}.pt").is_file()]
    if missing:
        print(f"{args.weights}: no {', '.join(m + '.pt' for m in missing)} there", file=sys.stderr)
        return 2
    for path in export(args.weights, args.out):
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
