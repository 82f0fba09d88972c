"""Average the validated weights of runs fine-tuned from one another (a "model soup").

Two runs of the same network, one fine-tuned from the other, often sit in one basin of the
loss: the average of their weights is a network too, and it lands between them on each
metric (Wortsman et al., "Model soups", ICML 2022). ``allages_v4`` drew the age bands
equally often and bought the over-60 band with the 21-40 band; the average of it and the
``allages_v2`` it started from keeps most of the gain at half the price (the model card).

    python -m training.soup runs/allages_v2/best.pt runs/allages_v4/best.pt -o runs/allages_soup/best.pt

The soup is a checkpoint like any other (``training.export``, ``training.evaluate`` and
``training.calibrate`` read it): the last ingredient's checkpoint with ``model_state``
replaced by the weighted mean of every ingredient's ``model_state`` (the weights that were
validated, the EMA's where it was on). Integer buffers (BatchNorm's batch counters) are the
last ingredient's. Its history, optimizer state and config are the last ingredient's and
do not describe the soup (it is no run to resume); its ``soup`` key names the ingredients.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from training.checkpoint import CheckpointError, load_checkpoint


def soup_state(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """The weighted mean of float tensors across ``states`` (the last state's other tensors)."""
    keys = list(states[-1])
    for i, state in enumerate(states):
        if list(state) != keys or any(state[k].shape != states[-1][k].shape for k in keys):
            raise CheckpointError(f"ingredient {i + 1}: its weights do not match the last ingredient's "
                                  "(a soup needs one network: same backbone, heads and tasks)")
    total = float(sum(weights))
    out = {}
    for k in keys:
        last = states[-1][k]
        if last.is_floating_point():
            mean = sum(float(w) / total * s[k].double() for s, w in zip(states, weights))
            out[k] = mean.to(last.dtype)
        else:
            out[k] = last.clone()
    return out


def make_soup(paths: Sequence[Path], weights: Sequence[float] | None = None) -> dict:
    weights = list(weights) if weights else [1.0] * len(paths)
    if len(paths) < 2 or len(weights) != len(paths) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise CheckpointError("give two checkpoints or more, and one non-negative weight for each (not all 0)")
    ckpts = [load_checkpoint(Path(p)) for p in paths]
    soup = dict(ckpts[-1])
    soup["model_state"] = soup_state([c["model_state"] for c in ckpts], weights)
    soup["train_model_state"] = soup["model_state"]
    soup["soup"] = [{"checkpoint": str(p), "weight": float(w), "config": c["config"].get("name")}
                    for p, w, c in zip(paths, weights, ckpts)]
    return soup


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", type=Path, nargs="+", help="best.pt files of runs of one network")
    p.add_argument("--weights", type=float, nargs="+", help="one per checkpoint (default: equal)")
    p.add_argument("-o", "--out", type=Path, required=True, help="the soup's checkpoint to write")
    args = p.parse_args(argv)
    try:
        soup = make_soup(args.checkpoints, args.weights)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(soup, args.out)
    parts = ", ".join(f"{s['checkpoint']} x {s['weight']:g}" for s in soup["soup"])
    print(f"wrote {args.out}: the mean of {parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
