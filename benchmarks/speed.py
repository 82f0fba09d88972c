"""Speed: per-stage cost, the network against the peers, the live pipeline, batch annotation.

    python -m benchmarks.speed [--quick] [--model PATH] [--out benchmarks/out] [--sections live_hd,...]

Writes ``<out>/speed.json`` (then ``python -m benchmarks.report`` writes RESULTS.md).
Medians after warm-up; ratios against the peers come from the same run. The load average
is recorded around every section, since this CPU may be shared. ``--quick`` runs every
section on tiny sizes (a CI smoke run, < 30 s); its numbers are not results.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.annotate_modes import MODES as ANNOTATE_MODES, measure_annotation_modes
from benchmarks.common import OUT_DIR, compose_frame, face_crops, write_json
from benchmarks.live import LIVE_VARIANTS, measure_annotation, measure_live
from benchmarks.live_hd import HD_VARIANTS, QUICK_VARIANTS, measure_live_hd
from benchmarks.composed_videos import VIDEOS
from benchmarks.network import measure_network
from benchmarks.stages import QUICK_STAGES, StagePlan, measure_stages
from benchmarks.standin import choose_model
from benchmarks.startup import measure_startup
from engine import assets
from engine.model import FaceAttrModel, ModelLoadError
from engine.write import VideoWriter

SECTIONS = ("stages", "network", "live", "live_hd", "annotate", "startup")


def _fallback_video(folder: Path, crops: list[np.ndarray], seconds: float) -> Path:
    """A moving-faces clip when the sample video is absent (a partial checkout)."""
    path = folder / "fallback.mp4"
    base = compose_frame((640, 480), 4, crops, seed=1)
    with VideoWriter(path, 30.0, (640, 480)) as w:
        for i in range(int(seconds * 30)):
            w.write(np.roll(base, 3 * i, axis=1))
    return path


def gpu_section(out_dir: Path) -> dict:
    path = out_dir / "gpu.json"
    if path.is_file():
        return {"available": True, "source": str(path), **json.loads(path.read_text())}
    return {"available": False,
            "note": "no GPU machine was available to this run; GPU numbers are filled in from "
                    f"{path} when a session with a GPU writes it"}


def _only(variants: tuple, text: str | None) -> tuple:
    """The settings whose name holds any of the comma-separated texts (all without ``text``)."""
    wanted = [t.strip() for t in (text or "").split(",") if t.strip()]
    return tuple(v for v in variants if not wanted or any(t in v.name for t in wanted))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run (numbers are not results)")
    p.add_argument("--model", type=Path, help="FaceAttr ONNX model (default: the shipped default model, "
                   "or a timing stand-in with its architecture while it does not exist)")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="folder for speed.json (default benchmarks/out)")
    p.add_argument("--video", type=Path, help="video for the live and annotation sections "
                   "(default: assets/samples/sample.mp4)")
    p.add_argument("--seconds", type=float, help="seconds of live playback per setting (default 10, quick 1)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    p.add_argument("--no-peers", action="store_true", help="skip the peer networks")
    p.add_argument("--hd-videos", help=f"live_hd: comma list of {', '.join(VIDEOS)} (default: all); "
                   "built into <out>/videos when missing")
    p.add_argument("--only", help="live and live_hd: only the settings whose name holds one of these "
                   "comma-separated texts "
                   "(e.g. 'mtcnn,window defaults')")
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    bad = [v for v in (args.hd_videos or "").split(",") if v.strip() and v.strip() not in VIDEOS]
    if bad:
        p.error(f"unknown --hd-videos {bad}; choose from {', '.join(VIDEOS)}")

    try:
        choice = choose_model(args.model, allow_standin=True)
        model = FaceAttrModel.load(choice.path, backend="cpu", precision="fp32")
    except (FileNotFoundError, ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"speed: {choice.note} ({model.spec.name}); provider {model.provider}")
    t_start = time.perf_counter()
    crops, faces_source = face_crops()
    body: dict = {"quick": args.quick, "model": {"path": str(choice.path), "kind": choice.kind, "note": choice.note,
                                                 "name": model.spec.name, "backbone": model.spec.backbone,
                                                 "tasks": [t.name for t in model.spec.tasks]},
                  "test_faces": faces_source, "sections": {}}
    with tempfile.TemporaryDirectory(prefix="faceattr-bench-speed-") as tmp:
        seconds = args.seconds or (1.0 if args.quick else 10.0)
        video = args.video or assets.sample_video_path()
        if not Path(video).is_file():
            print(f"speed: {video} not found; using a composed clip instead")
            video = _fallback_video(Path(tmp), crops, max(seconds, 1.0))
        body["video"] = str(video)
        if "stages" in sections:
            print("speed: stages")
            body["sections"]["stages"] = measure_stages(model, crops, QUICK_STAGES if args.quick else StagePlan())
        if "network" in sections:
            print("speed: network per face")
            body["sections"]["network"] = measure_network(
                choice.path, crops, batches=(1, 8, 32) if not args.quick else (1, 4),
                reps=20 if not args.quick else 2, warmup=3 if not args.quick else 1,
                threads=(1, 2) if not args.quick else (1,), peers=not args.no_peers,
                spin_frame=compose_frame((640, 480), 4, crops, seed=4))
        if "live" in sections:
            print("speed: live pipeline")
            variants = _only(LIVE_VARIANTS if not args.quick else LIVE_VARIANTS[:2], args.only)
            body["sections"]["live"] = measure_live(choice.path, Path(video), seconds, variants)
        if "live_hd" in sections:
            print("speed: live pipeline on composed HD videos")
            names = [s.strip() for s in args.hd_videos.split(",")] if args.hd_videos else None
            body["sections"]["live_hd"] = measure_live_hd(
                choice.path, seconds, args.out / "videos", names,
                variants=_only(QUICK_VARIANTS if args.quick else HD_VARIANTS, args.only), quick=args.quick)
        if "annotate" in sections:
            print("speed: batch annotation")
            body["sections"]["annotate"] = measure_annotation(choice.path, Path(video),
                                                              max_frames=15 if args.quick else None)
            print("speed: batch annotation, sequential vs pipelined")
            body["sections"]["annotate"]["modes"] = measure_annotation_modes(
                choice.path, Path(video), max_frames=15 if args.quick else None, repeats=1 if args.quick else 2,
                modes=(ANNOTATE_MODES[0], ANNOTATE_MODES[2]) if args.quick else ANNOTATE_MODES)
    if "startup" in sections:
        print("speed: app start to first labelled frame")
        body["sections"]["startup"] = measure_startup(args.model, runs=2 if args.quick else 5)
    body["gpu"] = gpu_section(args.out)
    body["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    path = write_json(args.out / "speed.json", "speed", body)
    print(f"speed: wrote {path} ({body['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
