"""What an output ensemble of several models would score: their test predictions combined.

    python -m training.vote runs/A/eval/predictions_test.csv runs/B/eval/predictions_test.csv ...

Reads the ``predictions_<split>.csv`` files that ``training.evaluate`` writes (one row per
face: truth and prediction per task) and scores the ensemble on the faces every model saw:
classes by majority vote (a tie goes to the first file's vote), values (age) by their mean.
It bounds what averaging networks can buy (a soup, distillation from an ensemble) at the cost
of one: the ensemble costs one network per file. Issue 10 used it to show that 6 networks
of the shipped recipe still fall short of the thesis's gender and race figures.
"""
from __future__ import annotations

import argparse
import collections
import csv
import statistics
import sys
from pathlib import Path
from typing import Sequence


def read_predictions(path: Path) -> dict[str, dict[str, str]]:
    with Path(path).open(newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


def vote(tables: Sequence[dict[str, dict[str, str]]], value_tasks: Sequence[str] = ("age",)) -> dict[str, float]:
    """Accuracy (0..1) per class task and MAE per value task of the combined predictions."""
    files = [f for f in tables[0] if all(f in t for t in tables[1:])]
    if not files:
        raise ValueError("the prediction files share no face")
    tasks = [c[:-5] for c in tables[0][files[0]] if c.endswith("_true")]
    scores: dict[str, list[float]] = {t: [] for t in tasks}
    for f in files:
        truth = tables[0][f]
        for t in tasks:
            preds = [table[f][f"{t}_pred"] for table in tables]
            if t in value_tasks:
                scores[t].append(abs(statistics.mean(map(float, preds)) - float(truth[f"{t}_true"])))
            else:
                counts = collections.Counter(preds)
                most = max(counts.values())
                winner = next(p for p in preds if counts[p] == most)  # a tie: the earliest file's vote
                scores[t].append(float(float(winner) == float(truth[f"{t}_true"])))
    out = {(f"{t}_mae" if t in value_tasks else f"{t}_acc"): statistics.mean(v) for t, v in scores.items()}
    out["faces"] = len(files)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.vote", description=__doc__.splitlines()[0])
    p.add_argument("predictions", type=Path, nargs="+", help="predictions_<split>.csv of training.evaluate, one per model")
    args = p.parse_args(argv)
    try:
        scores = vote([read_predictions(path) for path in args.predictions])
    except (OSError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cells = [f"{k} {v * 100:.2f} %" if k.endswith("_acc") else f"{k} {v:.3f}" for k, v in scores.items() if k != "faces"]
    print(f"ensemble of {len(args.predictions)}: " + ", ".join(cells) + f" ({scores['faces']} faces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
