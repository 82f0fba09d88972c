"""Batch annotation, sequential against pipelined, in one run (the annotate section's 'modes').

    python -m benchmarks.speed --sections annotate

``engine.annotate.annotate_file`` on the same video (default: the 640x480 sample, 300
frames), detection on every frame (``detect_every=1``), annotated mp4 + JSONL, for each
mode of :data:`MODES`:

- sequential: every stage in one thread, one frame after the other (``pipelined=False``);
  with ``model_threads=1`` it is the single-threaded path, the issue's baseline (decoding,
  in the capture thread, and libx264's own threads aside, as in every mode);
- pipelined (the default since issue 12): detection ahead on detector threads, rendering,
  encoding and writing on a writer thread, the rest in the caller's thread;
- pipelined + frames overlapped (``PipelineConfig.overlap_network``): besides, each frame is
  aligned and tracked on a thread of its own while the one before goes through the network.

Each mode runs ``repeats`` times, in the order of MODES then reversed (drift in the load
falls on both sides); fps is frames / median seconds. Ratios compare modes of the same
run. The records of a pipelined mode are compared with the sequential mode's of the same
thread count: they must be byte-identical (``records_identical``).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path


from benchmarks.common import LoadWatch, clip_video, median
from engine.annotate import annotate_file
from engine.model import FaceAttrModel
from engine.pipeline import Pipeline, PipelineConfig

TARGET_FPS = 55.0  # issue 12: batch annotation, 640x480 sample, detection every frame
TARGET_RATIO = 1.8  # issue 12: >= 1.8x the single-threaded path on 2 cores


@dataclass(frozen=True)
class Mode:
    name: str
    pipelined: bool
    model_threads: int | None  # ONNX Runtime intra-op threads (None: its default, all cores)
    detect_threads: int | None = None  # pipelined: detector threads (None: PipelineConfig's default)
    overlap: bool = False  # PipelineConfig.overlap_network: each frame located while the one before is labelled


MODES = (
    Mode("sequential, model_threads=1 (single-threaded path)", False, 1),
    Mode("sequential, model_threads=default", False, None),
    Mode("pipelined, model_threads=1", True, 1),
    Mode("pipelined, model_threads=default", True, None),
    Mode("pipelined, model_threads=1, 1 detector thread", True, 1, 1),
    Mode("pipelined + frames overlapped, model_threads=1", True, 1, overlap=True),
    Mode("pipelined + frames overlapped, model_threads=default", True, None, overlap=True),
)
BASELINE = MODES[0].name


def _clip(video: Path, folder: Path, max_frames: int) -> Path:
    """The first ``max_frames`` frames of ``video`` (a --quick run)."""
    folder.mkdir(parents=True, exist_ok=True)
    return clip_video(video, folder / "clip.mp4", max_frames)


def measure_annotation_modes(model_path: Path, video: Path, max_frames: int | None = None, repeats: int = 2,
                             modes: tuple[Mode, ...] = MODES, detect_threads: int | None = None,
                             log=print) -> dict:
    """Seconds and fps of each mode on ``video`` (see the module), ratios, record identity."""
    watch = LoadWatch()
    base = PipelineConfig(model_path=Path(model_path), backend="cpu", detect_every=1)
    if detect_threads:
        base = replace(base, detect_threads=int(detect_threads))
    shared = Pipeline.create(base)  # one detector and aligner for all (HOG takes seconds to build)
    models = {base.model_threads: shared.model}
    pipelines: dict[str, Pipeline] = {}
    seconds: dict[str, list[float]] = {m.name: [] for m in modes}
    frames: dict[str, int] = {}
    records: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="faceattr-bench-modes-") as tmp:
        src = _clip(Path(video), Path(tmp), max_frames) if max_frames else Path(video)
        (Path(tmp) / "warm").mkdir()
        warm = _clip(src, Path(tmp) / "warm", 5)
        for mode in modes:
            config = replace(base, model_threads=mode.model_threads, overlap_network=mode.overlap,
                             detect_threads=mode.detect_threads or base.detect_threads)
            if mode.model_threads not in models:
                models[mode.model_threads] = FaceAttrModel.load(model_path, backend="cpu", precision=config.precision,
                                                                intra_op_threads=mode.model_threads)
            pipe = pipelines[mode.name] = Pipeline(config, models[mode.model_threads], shared.detector, shared.aligner)
            # warm the session; the first pipelined run copies the detector for its threads
            annotate_file(warm, Path(tmp) / "warm-out", pipe, pipelined=mode.pipelined)
        order = list(modes) + list(reversed(modes))
        for k in range(repeats):
            for mode in order[len(modes) * (k % 2):][:len(modes)]:
                out = Path(tmp) / f"{k}-{modes.index(mode)}"
                t0 = time.perf_counter()
                summary = annotate_file(src, out, pipelines[mode.name], jsonl=True, video=True,
                                        pipelined=mode.pipelined)
                seconds[mode.name].append(time.perf_counter() - t0)
                if summary.error:
                    raise RuntimeError(f"annotation of {src} ({mode.name}) failed: {summary.error}")
                frames[mode.name] = summary.frames
                records.setdefault(mode.name, (out / f"{src.name}.jsonl").read_bytes())
                log(f"  annotate {mode.name}: {summary.frames} frames in {seconds[mode.name][-1]:.2f} s "
                    f"({summary.frames / seconds[mode.name][-1]:.1f} fps)")
    rows = []
    for mode in modes:
        s = median(seconds[mode.name])
        rows.append({"mode": mode.name, "pipelined": mode.pipelined, "model_threads": mode.model_threads,
                     "overlap_network": mode.overlap,
                     "detect_threads": pipelines[mode.name].config.detect_threads if mode.pipelined else 0,
                     "frames": frames[mode.name], "seconds": [round(x, 3) for x in seconds[mode.name]],
                     "median_s": round(s, 3), "fps": round(frames[mode.name] / s, 2)})
    fps = {r["mode"]: r["fps"] for r in rows}
    for r in rows:
        r["ratio_to_single_threaded"] = round(r["fps"] / fps[BASELINE], 3) if BASELINE in fps else None
        twin = next((m for m in modes if m.pipelined != r["pipelined"] and m.model_threads == r["model_threads"]), None)
        if r["pipelined"] and twin is not None:
            r["ratio_to_sequential_same_threads"] = round(r["fps"] / fps[twin.name], 3)
            r["records_identical"] = records[r["mode"]] == records[twin.name]
    best = max((r for r in rows if r["pipelined"]), key=lambda r: r["fps"], default=None)
    result = {"video": str(video), "detect_every": 1, "outputs": "annotated mp4 + JSONL", "repeats": repeats,
              "detect_threads": base.detect_threads, "rows": rows, "baseline": BASELINE,
              "target_fps": TARGET_FPS, "target_ratio": TARGET_RATIO, **watch.done()}
    if best is not None:
        result.update(best=best["mode"], best_fps=best["fps"], best_ratio=best["ratio_to_single_threaded"],
                      meets_fps_target=bool(best["fps"] >= TARGET_FPS),
                      meets_ratio_target=bool((best["ratio_to_single_threaded"] or 0) >= TARGET_RATIO),
                      records_identical=all(r.get("records_identical", True) for r in rows))
    return result


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def report_lines(sec: dict) -> list[str]:
    """The RESULTS.md lines for ``speed.json``'s ``annotate.modes``."""
    L = ["#### Sequential vs pipelined (one run)", "",
         f"`annotate_file` on `{Path(sec['video']).name}`, detection every frame, {sec['outputs']}, each mode "
         f"{sec['repeats']} time(s) (order reversed on the second), fps = frames / median seconds; pipelined: "
         f"{sec['detect_threads']} detector thread(s) ahead (unless the mode says 1) and a writer thread. "
         f"Ratio: fps / fps of '{sec['baseline']}'. Load {sec['loadavg_start']} -> {sec['loadavg_end']}.", ""]
    rows = []
    for r in sec["rows"]:
        same = r.get("records_identical")
        rows.append([r["mode"], str(r["frames"]), f"{r['median_s']:.2f}", f"{r['fps']:.1f}",
                     f"{r['ratio_to_single_threaded']:.2f}" if r["ratio_to_single_threaded"] is not None else "-",
                     f"{r['ratio_to_sequential_same_threads']:.2f}" if "ratio_to_sequential_same_threads" in r else "-",
                     "-" if same is None else ("yes" if same else "**NO**")])
    L += _table(["mode", "frames", "median s", "fps", "ratio to single-threaded", "ratio to sequential, same threads",
                 "records identical to sequential"], rows)
    return L


def summary_rows(sec: dict) -> list[list[str]]:
    """Summary lines: the issue's fps and ratio targets, by the fastest pipelined mode."""
    if "best" not in sec:
        return []
    return [[f"batch annotation, {Path(sec['video']).name}, detection every frame ({sec['best']})",
             f">= {sec['target_fps']:g} fps", f"{sec['best_fps']:.1f} fps",
             "met" if sec["meets_fps_target"] else "missed"],
            [f"batch annotation pipelined / single-threaded ({sec['best']})", f">= {sec['target_ratio']:g}x",
             f"{sec['best_ratio']:.2f}x" + ("" if sec["records_identical"] else " (records differ!)"),
             "met" if sec["meets_ratio_target"] and sec["records_identical"] else "missed"]]
