"""A training run's checkpoint (``faceattr-ckpt/1``): everything ``--resume`` needs to go on exactly.

Keys: format, config (the TOML-shaped dict), tasks, backbone, model_state, optimizer_state,
scheduler_state, weighting_state, freeze_state (Early Freeze logic + its snapshots, early
stopping, frozen parts), epoch, best, history, max_samples, rng, git_commit, date. Every
value is a type ``torch.load(weights_only=True)`` accepts.
"""
from __future__ import annotations

import datetime
import os
import random
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from training.config import Config
    from training.freeze import FrozenParts
    from training.model import MultiTaskNet

CKPT_FORMAT = "faceattr-ckpt/1"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def save_checkpoint(path: Path, cfg: Config, net: MultiTaskNet, optimizer, scheduler, weighting, freezer,
                    stopper, parts: FrozenParts, epoch: int, best: dict, history: list,
                    max_samples: int | None = None) -> None:
    ckpt = {"format": CKPT_FORMAT, "config": cfg.to_dict(), "tasks": [asdict(t) for t in net.tasks],
            "backbone": net.backbone.name, "model_state": net.state_dict(),
            "optimizer_state": optimizer.state_dict(), "scheduler_state": scheduler.state_dict(),
            "weighting_state": weighting.state_dict(),
            "freeze_state": {"controller": freezer.state_dict() if freezer else None,
                             "stopper": stopper.state_dict(), "parts": asdict(parts)},
            "epoch": epoch, "best": best, "history": history, "max_samples": max_samples,
            "rng": rng_state(),
            "git_commit": git_commit(), "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    tmp = path.with_suffix(".pt.tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    """Every RNG the loop draws from, in types torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    kind, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
