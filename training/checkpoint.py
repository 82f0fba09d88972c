"""A training run's checkpoint (``faceattr-ckpt/1``): the one place that knows its format.

    save_checkpoint(path, cfg, state, max_samples)      # state: training.state.TrainState
    ckpt = load_checkpoint(path)                        # a dict; CheckpointError otherwise

Keys: format, config (the TOML-shaped dict), tasks, backbone, model_state (the weights that
were validated: the EMA's when ``optim.ema`` is on, else the network's; what export and
evaluate load), and everything ``--resume`` needs to go on exactly: train_model_state
(the network's own weights when they differ from model_state), optimizer_state,
scheduler_state, weighting_state, freeze_state, ema_state, epoch, best, history, stopped,
rng; then max_samples, git_commit, date. Every value is a type
``torch.load(weights_only=True)`` accepts.
"""
from __future__ import annotations

import datetime
import os
import random
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from training.config import Config
    from training.state import TrainState

CKPT_FORMAT = "faceattr-ckpt/1"
REPO_ROOT = Path(__file__).resolve().parent.parent


class CheckpointError(ValueError):
    """A file that is not a readable FaceAttr checkpoint; the message names it."""


def git_commit(repo: Path = REPO_ROOT) -> str:
    """``git rev-parse HEAD`` of the repository, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def save_checkpoint(path: Path, cfg: Config, state: TrainState, max_samples: int | None = None) -> None:
    """Write ``state`` whole, atomically (a crash mid-write leaves the previous file)."""
    ckpt: dict[str, Any] = {"format": CKPT_FORMAT, "config": cfg.to_dict(), **state.state_dict(),
                            "max_samples": max_samples, "git_commit": git_commit(),
                            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    tmp = Path(path).with_suffix(".pt.tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """A ``faceattr-ckpt/1`` checkpoint as a dict (on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    check_format(ckpt, str(path))
    return ckpt


def check_format(ckpt: Any, source: str = "checkpoint") -> None:
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{source}: not a FaceAttr checkpoint (format {found!r}, expected '{CKPT_FORMAT}')")


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
