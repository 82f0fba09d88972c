"""A run's per-epoch record as CSV (``log.csv``) and as loss / weight / metric curves (``curves.png``).

Both are rewritten whole from the run's history after every epoch, so a resumed run's
files are the same as an uninterrupted run's.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Mapping, Sequence


def csv_columns(task_names: Sequence[str], metric_names: Sequence[str]) -> list[str]:
    cols = ["epoch", "lr", "seconds", "val_total"]
    for t in task_names:
        cols += [f"train_loss_{t}", f"val_loss_{t}", f"weight_{t}"]
    return cols + list(metric_names) + ["frozen", "events"]


def csv_row(record: Mapping, task_names: Sequence[str], metric_names: Sequence[str]) -> list:
    row = [record["epoch"], f"{record['lr']:.3g}", f"{record['seconds']:.1f}", f"{record['val_total']:.6f}"]
    for t in task_names:
        w = record["weights"].get(t)
        row += [f"{record['train_loss'][t]:.6f}", f"{record['val_loss'][t]:.6f}", "" if w is None else f"{w:.6f}"]
    row += [f"{record['metrics'][m]:.6f}" for m in metric_names]
    return row + [";".join(record["frozen"]), " | ".join(record["events"])]


def write_log_csv(path: Path, history: Sequence[Mapping], task_names: Sequence[str],
                  metric_names: Sequence[str]) -> None:
    tmp = Path(path).with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(csv_columns(task_names, metric_names))
        for record in history:
            w.writerow(csv_row(record, task_names, metric_names))
    os.replace(tmp, path)


def plot_curves(path: Path, history: Sequence[Mapping], task_names: Sequence[str],
                metric_names: Sequence[str]) -> None:
    """Losses (train dashed, valid solid), task weights and validation metrics per epoch;
    a dotted vertical line marks each early freeze."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, t in enumerate(task_names):
        color = f"C{i}"
        axes[0].plot(epochs, [r["train_loss"][t] for r in history], "--", color=color, label=f"{t} train")
        axes[0].plot(epochs, [r["val_loss"][t] for r in history], "-", color=color, label=f"{t} valid")
        axes[1].plot(epochs, [r["weights"].get(t, float("nan")) for r in history], "-o", ms=3, color=color, label=t)
    for j, m in enumerate(metric_names):
        axes[2].plot(epochs, [r["metrics"][m] for r in history], "-o", ms=3, color=f"C{j}", label=m)
    for r in history:
        for ax in axes:
            for _ in r["events"]:
                ax.axvline(r["epoch"], color="k", ls=":", lw=1)
    for ax, title in zip(axes, ("loss", "task weight", "validation metrics")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
