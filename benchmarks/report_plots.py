"""The PNG plots of RESULTS.md (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402


def _plain(axis) -> None:
    """Plain numbers on a log axis (not 4x10^1)."""
    f = ScalarFormatter()
    f.set_scientific(False)
    axis.set_major_formatter(f)
    axis.set_minor_formatter(NullFormatter())

SCALING_STAGES = ("detect_hog_up0", "align", "network", "render", "decode", "encode")


def plot_scaling(rows: list[dict], path: Path) -> Path:
    """Left: per-frame cost of each stage vs faces per frame (one line style per resolution).
    Right: HOG detection cost vs megapixels (upsample 0 and 1)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    resolutions = sorted({(r["width"], r["height"]) for r in rows})
    styles = ["-", "--", ":", "-."]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ri, wh in enumerate(resolutions):
        sub = sorted((r for r in rows if (r["width"], r["height"]) == wh), key=lambda r: r["faces_found"])
        faces = [r["faces_found"] for r in sub]
        for si, stage in enumerate(SCALING_STAGES):
            ax1.plot(faces, [r["stages"][stage]["median_ms"] for r in sub], styles[ri % len(styles)], marker="o",
                     color=colors[si % len(colors)], label=f"{stage}" if ri == 0 else None)
        ax1.plot(faces, [r["frame_total_hog_up0_ms"] for r in sub], styles[ri % len(styles)], marker="s",
                 color="black", label="frame total" if ri == 0 else None)
    ax1.set_xlabel("faces per frame")
    ax1.set_ylabel("ms per frame (median)")
    ax1.set_title("cost vs faces (" + ", ".join(f"{s} {w}x{h}" for s, (w, h) in
                                                zip(("solid", "dashed", "dotted"), resolutions)) + ")", fontsize=9)
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    for stage, marker in (("detect_hog_up0", "o"), ("detect_hog_up1", "^"), ("detect_cnn_up0", "s")):
        pts = sorted({(r["width"] * r["height"] / 1e6, r["stages"][stage]["median_ms"])
                      for r in rows if stage in r["stages"]})
        if pts:
            mp = {}
            for x, y in pts:
                mp.setdefault(x, []).append(y)
            xs = sorted(mp)
            ax2.plot(xs, [sum(mp[x]) / len(mp[x]) for x in xs], marker=marker, label=stage)
    ax2.set_xlabel("megapixels per frame (full-frame detection)")
    ax2.set_ylabel("ms per frame (median)")
    ax2.set_yscale("log")
    _plain(ax2.yaxis)
    ax2.set_title("detection vs resolution", fontsize=9)
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_network(n: dict, path: Path) -> Path:
    """ms per face vs batch size: FaceAttr's threads variants and every peer variant."""
    fig, ax = plt.subplots(figsize=(11, 4.2))
    for name, v in n["faceattr"].items():
        b = [int(k) for k in v["batches"]]
        ax.plot(b, [r["ms_per_face"] for r in v["batches"].values()], marker="o", linewidth=2.5,
                label=f"FaceAttr ({', '.join(n['tasks'])}), {name}")
    for pname, p in n["peers"].items():
        for vname, v in p.get("variants", {}).items():
            b = [int(k) for k in v["batches"]]
            ax.plot(b, [r["both_ms_per_face"] for r in v["batches"].values()], marker="^", linestyle="--",
                    label=f"{pname} (gender+age): {vname}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    batches = sorted({int(k) for v in n["faceattr"].values() for k in v["batches"]})
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = ax.get_ylim()
    ticks = [t for t in (0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500) if lo <= t <= hi]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("batch size (faces)")
    ax.set_ylabel("ms per face (median)")
    ax.set_title("network cost per face, CPU", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
