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

BatchNorm's running statistics do not average: the mean of two runs' statistics is not the
statistics of the mean network. With ``--bn-data`` and ``--bn-chips`` (the ingredients'
training data) they are recomputed on the soup's weights over training batches (precise
BatchNorm, ``training.loop.recompute_bn_stats``). Measured on the three seeds of
``utkface_thesis_v2 --overlay backbone_lr01 --overlay shared_init`` (validation split,
``training.evaluate SOUP --chips cache/utkface --split valid``): the plain mean scored
97.82 % / 83.60 % / 5.18 years, the mean with recomputed statistics 97.82 % / 87.20 % / 4.39,
against 97.74-97.78 % / 87.01-87.16 % / 4.36-4.43 for the seeds one by one.
"""
from __future__ import annotations

import argparse
import dataclasses
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


def recompute_soup_bn(soup: dict, image_dir: str, chips_dir: str, n_batches: int, log=print) -> int:
    """Replace the soup's BatchNorm statistics by those of its own weights over ``n_batches``
    training batches of its config's data (without augmentation); how many batches were used."""
    from training.config import config_from_dict
    from training.fit import chip_split, load_datasets
    from training.loop import Dist, recompute_bn_stats
    from training.model import build_from_checkpoint

    cfg = config_from_dict(soup["config"], "the soup's config")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_dir=image_dir, chips_dir=chips_dir))
    train = chip_split(load_datasets(cfg, None, log).train)
    net = build_from_checkpoint(soup)
    used = recompute_bn_stats(net, 0, train.train_batches(cfg.optim.batch_size, cfg.seed, 200_000), n_batches, Dist())
    soup["model_state"] = net.state_dict()
    soup["train_model_state"] = soup["model_state"]
    soup["bn_recomputed"] = {"batches": used, "batch_size": cfg.optim.batch_size, "data": image_dir, "chips": chips_dir}
    return used


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", type=Path, nargs="+", help="best.pt files of runs of one network")
    p.add_argument("--weights", type=float, nargs="+", help="one per checkpoint (default: equal)")
    p.add_argument("-o", "--out", type=Path, required=True, help="the soup's checkpoint to write")
    p.add_argument("--bn-data", help="recompute BatchNorm statistics on this image folder's training split (with --bn-chips)")
    p.add_argument("--bn-chips", help="its chip cache (training.chips)")
    p.add_argument("--bn-batches", type=int, default=100, help="training batches for the statistics (default 100)")
    args = p.parse_args(argv)
    if bool(args.bn_data) != bool(args.bn_chips):
        print("error: --bn-data and --bn-chips go together (the training images and their chip cache)", file=sys.stderr)
        return 2
    try:
        soup = make_soup(args.checkpoints, args.weights)
        if args.bn_data:
            used = recompute_soup_bn(soup, args.bn_data, args.bn_chips, args.bn_batches)
            print(f"BatchNorm statistics recomputed on {used} training batches")
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(soup, args.out)
    parts = ", ".join(f"{s['checkpoint']} x {s['weight']:g}" for s in soup["soup"])
    print(f"wrote {args.out}: the mean of {parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
