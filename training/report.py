"""The human side of ``training.evaluate``: report.md with tables, PNG confusion matrices and
age-error plots (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Sequence

import numpy as np

from training.metrics import SplitResult
from training.task_heads import task_head


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def _num(v, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def plot_confusion(path: Path, title: str, labels: Sequence[str], confusion: np.ndarray) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion)
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape, float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(0.9 * len(labels) + 2.2, 0.8 * len(labels) + 1.6))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{confusion[i, j]}\n{100 * share[i, j]:.1f}%", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_value_errors(path: Path, title: str, truth: np.ndarray, pred: np.ndarray, unit: str) -> None:
    """Left: histogram of signed errors. Right: MAE by true value (5-unit bins)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    err = pred - truth
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.hist(err, bins=np.arange(np.floor(err.min()) - 0.5, np.ceil(err.max()) + 1.5, 1.0) if len(err) else 10)
    a.axvline(0, color="k", lw=0.8)
    a.set_xlabel(f"predicted - true ({unit})")
    a.set_ylabel("faces")
    a.set_title(f"{title}: error")
    if len(err):
        edges = np.arange(np.floor(truth.min() / 5) * 5, truth.max() + 5, 5)
        which = np.clip(np.digitize(truth, edges) - 1, 0, len(edges) - 1)
        centres, maes, counts = [], [], []
        for k in range(len(edges)):
            m = which == k
            if m.any():
                centres.append(edges[k] + 2.5)
                maes.append(np.abs(err[m]).mean())
                counts.append(int(m.sum()))
        b.bar(centres, maes, width=4.5)
        for x, y, n in zip(centres, maes, counts):
            b.text(x, y, str(n), ha="center", va="bottom", fontsize=7)
    b.set_xlabel(f"true value ({unit}), 5-unit bins; numbers = faces")
    b.set_ylabel(f"MAE ({unit})")
    b.set_title(f"{title}: MAE by true value")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def class_table(block: dict) -> list[str]:
    """A classifier's per-class table: true class, faces, accuracy on them (recall)."""
    lines = ["| true class | faces | accuracy |", "|---|---|---|"]
    for label in block["labels"]:
        lines.append(f"| {label} | {block['support'][label]:,} | {_pct(block['per_class'][label])} |")
    return lines


_SCORE_COLUMNS = (("age_mae", "age MAE", _num), ("age_bias", "age bias", _num),
                  ("gender_acc", "gender acc", _pct), ("race_acc", "race acc", _pct))


def _score_lines(rows: Sequence[dict], keys: Sequence[tuple[str, str]]) -> list[str]:
    cols = [c for c in _SCORE_COLUMNS if rows and c[0] in rows[0]]
    lines = ["| " + " | ".join(title for _, title in keys) + " | n | " + " | ".join(t for _, t, _ in cols) + " |",
             "|" + "---|" * (len(keys) + 1 + len(cols))]
    for r in rows:
        lines.append("| " + " | ".join(str(r[k]) for k, _ in keys) + f" | {r['n']:,} | "
                     + " | ".join(fmt(r.get(k)) for k, _, fmt in cols) + " |")
    return lines


def band_lines(bands: Sequence[dict]) -> list[str]:
    """The age-band table (band of true age, n, age MAE and bias, gender and race accuracy)."""
    return _score_lines(bands, [("band", "age band")])


def estimated_band_lines(bands: Sequence[dict]) -> list[str]:
    """Per band of the model's age estimate: n and each classifier's accuracy."""
    cols = [k for k in bands[0] if k.endswith("_acc")]
    return (["| model's age | n | " + " | ".join(k.removesuffix("_acc") + " acc" for k in cols) + " |",
             "|" + "---|" * (2 + len(cols))]
            + [f"| {b['band']} | {b['n']:,} | " + " | ".join(_pct(b.get(k)) for k in cols) + " |" for b in bands])


def group_lines(groups: Sequence[dict]) -> list[str]:
    """The race x gender table."""
    return _score_lines(groups, [("race", "race"), ("gender", "gender")])


def _headline(metrics: dict) -> list[str]:
    splits = metrics["splits"]
    keys = []
    for m in splits.values():
        keys += [k for k in m if k.endswith(("_acc", "_mae", "_cs5")) and k not in keys]
    head = "| | " + " | ".join(keys) + " | evaluated | skipped |"
    lines = [head, "|" + "---|" * (len(keys) + 3)]
    for split, m in splits.items():
        cells = [_pct(m.get(k)) if not k.endswith("_mae") else _num(m.get(k)) for k in keys]
        lines.append(f"| ours, {split} | " + " | ".join(cells) + f" | {m['evaluated']} | {sum(m['skipped'].values())} |")
    ref = metrics.get("reference")
    if ref:
        cells = [(_pct(ref[k]) if not k.endswith("_mae") else _num(ref[k])) if k in ref else "–" for k in keys]
        lines.append(f"| {ref['label']} | " + " | ".join(cells) + " | 3,287 images | – |")
    return lines


def write_report(metrics: dict, results: Sequence[SplitResult], out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    lines = [f"# Evaluation of `{metrics['model_name']}`", "",
             f"- model: `{metrics['model']}` ({metrics['runtime']})",
             f"- data: `{metrics['data']}`, protocol `{metrics['protocol']}`",
             f"- chips: {metrics['source']}",
             f"- date: {dt.date.today().isoformat()}"]
    if metrics.get("command"):
        lines.append(f"- reproduce: `{metrics['command']}`")
    if metrics.get("protocol") == "mtfl":
        lines += ["", "MTFL: the labelled face of an image is the detection holding the centre of its given "
                  "landmarks; images where no detection does are not scored (\"faces found\")."]
    else:
        lines += ["", "`test_dedup` = the test split without the files byte-identical to a training file."]
    lines += ["CS@5 = share of faces with |age error| <= 5 years.", "", "## Headline", ""]
    lines += _headline(metrics)
    for r in results:
        m = metrics["splits"][r.name]
        lines += ["", f"## Split `{r.name}`", "",
                  f"{m['listed']} listed, {m['evaluated']} evaluated, skipped: "
                  + (", ".join(f"{k} {v}" for k, v in sorted(m["skipped"].items())) or "none") + "."]
        found = m.get("faces_found")
        if found and found["of"]:
            lines += ["", f"Faces found: {found['found']:,} of {found['of']:,} ({_pct(found['share'])})."]
        for name, block in m["tasks"].items():
            lines += ["", f"### {name}", ""]
            head = task_head(block["kind"])
            if head.classes:
                labels = block["labels"]
                lines.append(f"Accuracy {_pct(block['accuracy'])} over {block['n']} faces. Per class (recall): "
                             + ", ".join(f"{k} {_pct(v)}" for k, v in block["per_class"].items()) + ".")
                if head.report_confusion and "support" in block:
                    lines += [""] + class_table(block)
                lines += ["", "| true \\ predicted | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
                for label, row in zip(labels, block["confusion"]):
                    lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
                png = f"confusion_{name}_{r.name}.png"
                plot_confusion(out_dir / png, f"{name} ({r.name})", labels, np.array(block["confusion"]))
                lines += ["", f"![{name} confusion]({png})"]
            else:
                lines.append(f"MAE {_num(block['mae'])} {block['unit']}, CS@5 {_pct(block['cs5'])}, "
                             f"bias {_num(block['bias'])}, RMSE {_num(block['rmse'])} over {block['n']} faces.")
                png = f"{name}_error_{r.name}.png"
                plot_value_errors(out_dir / png, f"{name} ({r.name})", r.truth[name], r.pred[name], block["unit"])
                lines += ["", f"![{name} error]({png})"]
        if m.get("bands"):
            lines += ["", "### By age band (true age)", ""] + band_lines(m["bands"])
        if m.get("estimated_age_bands"):
            lines += ["", "### By the model's age estimate (the data labels no age; the band is the model's reading)",
                      ""] + estimated_band_lines(m["estimated_age_bands"])
        if m["groups"]:
            lines += ["", "### By race x gender (true labels)", ""] + group_lines(m["groups"])
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
