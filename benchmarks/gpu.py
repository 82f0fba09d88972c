"""GPU numbers, for a session that has a GPU machine: the network's faces/s at batch 1-256
and the pipeline's fps there, with the device recorded.

    python -m benchmarks.gpu [--model PATH] [--backend auto|cuda|tensorrt] [--out benchmarks/out/gpu.json]

Needs onnxruntime-gpu (the ``gpu`` extra) on that machine. ``python -m benchmarks.speed``
then includes ``benchmarks/out/gpu.json`` in its GPU section. ``--backend cpu`` runs the
same measurements on the CPU (a dry run of this script where no GPU is lent).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import OUT_DIR, face_crops, measure, write_json
from benchmarks.live import measure_live, LIVE_VARIANTS
from benchmarks.network import faces_and_chips
from benchmarks.standin import choose_model
from engine import assets
from engine.align import Aligner
from engine.annotate import annotate_file
from engine.model import BackendUnavailableError, FaceAttrModel, ModelLoadError
from engine.pipeline import Pipeline, PipelineConfig

BATCHES = (1, 8, 32, 64, 128, 256)


def _device() -> dict:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            return {"nvidia_smi": out.stdout.strip().splitlines()}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"nvidia_smi": None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path)
    p.add_argument("--backend", default="auto", choices=("auto", "cuda", "tensorrt", "cpu"))
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--seconds", type=float, default=10.0, help="live playback per setting")
    p.add_argument("--out", type=Path, default=OUT_DIR / "gpu.json")
    args = p.parse_args(argv)
    try:
        choice = choose_model(args.model, allow_standin=True)
        model = FaceAttrModel.load(choice.path, backend=args.backend, precision="fp32")
    except (FileNotFoundError, ModelLoadError, BackendUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"gpu: {choice.note}; provider {model.provider}; notes {list(model.notes)}")
    crops, source = face_crops()
    _, _, chips, _ = faces_and_chips(crops, Aligner.create())
    rows = {}
    for b in (int(x) for x in args.batches.split(",")):
        batch = chips[np.arange(b) % len(chips)]
        stat = measure(lambda: model.predict_raw(batch), args.reps, warmup=5)
        rows[str(b)] = {"batch_ms": stat.as_dict(), "ms_per_face": round(stat.median_ms / b, 4),
                        "faces_per_s": round(1000 * b / stat.median_ms, 1)}
        print(f"  batch {b}: {rows[str(b)]['faces_per_s']} faces/s")
    video = assets.sample_video_path()
    config = PipelineConfig(model_path=choice.path, backend=args.backend)
    pipeline = Pipeline.create(config)
    t0 = time.perf_counter()
    summary = annotate_file(video, args.out.parent / "gpu-annotate", pipeline, jsonl=True, video=True)
    annotate = {"frames": summary.frames, "seconds": round(time.perf_counter() - t0, 3),
                "fps": round(summary.frames / max(summary.seconds, 1e-9), 2), "error": summary.error}
    live = measure_live(choice.path, video, args.seconds, LIVE_VARIANTS[:3], backend=args.backend)
    write_json(args.out, "gpu", {"device": _device(), "backend": args.backend, "provider": model.provider,
                                 "notes": list(model.notes), "model": {"path": str(choice.path), "note": choice.note},
                                 "test_faces": source, "network": rows, "annotate_sample": annotate, "live": live})
    print(f"gpu: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
