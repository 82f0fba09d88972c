"""Time one full fine-tuning step (forward + backward + Adam) of a backbone + heads on random chips,
per precision / memory layout, to decide ``speed.bf16`` and ``speed.channels_last`` on a machine.

    python -m training.stepbench [--backbone dlib-resnet29] [--batch 64] [--steps 5]

Prints the median seconds per step of each variant, the load average before and after (a
number taken while other jobs run is not the machine's speed), and whether the CPU has
native bf16 (AVX-512 BF16 / AMX).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from training.augment import create_augmenter
from training.config import AugmentConfig, LossConfig
from training.utkface import utk_tasks
from training.loop import cpu_has_native_bf16
from training.losses import create_losses
from training.model import MultiTaskNet


def time_steps(backbone: str, batch: int, steps: int, bf16: bool, channels_last: bool, augment: bool) -> float:
    from training.backbones import create_backbone

    torch.manual_seed(0)
    tasks = utk_tasks("coral")
    net = MultiTaskNet(create_backbone(backbone, pretrained=False), tasks)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-5)
    losses = create_losses(LossConfig(), tasks)
    aug = create_augmenter(AugmentConfig(scale=0.05, rotate=5, shift=0.03, brightness=0.1, contrast=0.2, blur=0.2),
                           flip=True) if augment else None
    chips = torch.randint(0, 256, (batch, 150, 150, 3), dtype=torch.uint8)
    targets = {"gender": torch.randint(0, 2, (batch,)).float(), "race": torch.randint(0, 5, (batch,)).float(),
               "age": torch.rand(batch)}
    times = []
    for i in range(steps + 1):  # the first step warms up (oneDNN primitive creation)
        t0 = time.perf_counter()
        x = aug(chips) if aug else chips
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = sum(losses(out, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.stepbench", description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="dlib-resnet29")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}, "
          f"load average before: {os.getloadavg()}")
    for name, bf16, cl, aug in (("fp32", False, False, False), ("fp32 channels_last", False, True, False),
                                ("bf16 channels_last", True, True, False), ("fp32 channels_last + augment", False, True, True)):
        s = time_steps(args.backbone, args.batch, args.steps, bf16, cl, aug)
        print(f"{name:30s} {s:.3f} s/step (median of {args.steps}, batch {args.batch})")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
