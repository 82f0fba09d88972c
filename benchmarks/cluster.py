"""Batch throughput: files/s and frames/s with 1 and 2 workers, locally (--jobs) and on a
local Ray cluster (--cluster), and the per-file overheads a scaling plan rests on.

    python -m benchmarks.cluster [--quick] [--model PATH] [--files 8] [--frames 90] [--out benchmarks/out]

Writes ``<out>/cluster.json``. Measured, each with the load average around it:

- ``model_load_ms``: Pipeline.create in this process (what each worker pays once);
- ``ray.cluster_start_ms``: ray.init of a local cluster with W CPUs;
- ``ray.actor_start_ms``: W actors created until each has its model loaded (ready);
- ``ray.dispatch_ms``: the round trip of an empty call on a warm actor (per-task overhead);
- ``ray.run``/``local.run``: wall time, files/s and frames/s of the whole batch
  (engine.batch.annotate_one on every file; local workers are spawned processes);
- ``merge_ms``: records.csv + records.parquet from the per-file JSONL.

The videos are composed from real faces (benchmarks.common.face_crops): 640x480, four
faces moving. ``--quick`` is a smoke run on tiny sizes; its numbers are not results.
Run the real measurement on a quiet machine: the load average is in the JSON.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import OUT_DIR, LoadWatch, compose_frame, face_crops, write_json
from benchmarks.standin import choose_model
from engine.batch import FileTask, merge_records, run_pool
from engine.model import ModelLoadError
from engine.pipeline import Pipeline, PipelineConfig
from engine.write import VideoWriter


def make_videos(folder: Path, files: int, frames: int, crops: list[np.ndarray]) -> list[Path]:
    paths = []
    for i in range(files):
        base = compose_frame((640, 480), 4, crops, seed=i)
        path = folder / f"clip{i}.mp4"
        with VideoWriter(path, 30.0, (640, 480)) as w:
            for k in range(frames):
                w.write(np.roll(base, 2 * k, axis=1))
        paths.append(path)
    return paths


def tasks_for(videos: list[Path], out_dir: Path, config: PipelineConfig) -> list[FileTask]:
    return [FileTask(str(v), str(out_dir), v.name, config, jsonl=True, csv=False, video=True) for v in videos]


def throughput(results: list, wall_s: float) -> dict:
    frames = sum(r.frames for r in results)
    return {"files": len(results), "failed": sum(not r.ok for r in results), "frames": frames,
            "wall_s": round(wall_s, 3), "files_per_s": round(len(results) / wall_s, 3),
            "frames_per_s": round(frames / wall_s, 2)}


def measure_local(videos, out_dir: Path, config: PipelineConfig, workers: int) -> dict:
    watch = LoadWatch()
    results: list = []
    t0 = time.perf_counter()
    run_pool(tasks_for(videos, out_dir, config), workers, config, results.append, lambda n: None)
    return {"workers": workers, **throughput(results, time.perf_counter() - t0), **watch.done()}


def measure_ray(videos, out_dir: Path, config: PipelineConfig, workers: int, dispatch_calls: int) -> dict:
    from app.cluster import Annotator, import_ray, run_on_ray

    ray = import_ray()
    watch = LoadWatch()
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        cluster_ms = (time.perf_counter() - t0) * 1e3
        remote = ray.remote(num_cpus=1)(Annotator)
        t0 = time.perf_counter()
        actors = [remote.remote(config) for _ in range(workers)]
        ray.get([a.ready.remote() for a in actors])
        actor_ms = (time.perf_counter() - t0) * 1e3
        times = []
        for _ in range(dispatch_calls):
            t = time.perf_counter()
            ray.get(actors[0].ready.remote())
            times.append((time.perf_counter() - t) * 1e3)
        for a in actors:
            ray.kill(a)
        results: list = []
        t0 = time.perf_counter()  # run_on_ray starts its own actors: this wall time includes that
        run_on_ray(tasks_for(videos, out_dir, config), config, results.append, workers=workers)
        run = throughput(results, time.perf_counter() - t0)
    finally:
        ray.shutdown()
    return {"workers": workers, "cluster_start_ms": round(cluster_ms, 1), "actor_start_ms": round(actor_ms, 1),
            "dispatch_ms": {"median": round(float(np.median(times)), 3), "p95": round(float(np.percentile(times, 95)), 3),
                            "n": len(times)},
            "run": run, **watch.done()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run (numbers are not results)")
    p.add_argument("--model", type=Path, help="FaceAttr ONNX model (default: the shipped one, else a stand-in)")
    p.add_argument("--files", type=int, help="videos in the batch (default 8, quick 2)")
    p.add_argument("--frames", type=int, help="frames per video (default 90, quick 6)")
    p.add_argument("--workers", default="1,2", help="worker counts to measure (default 1,2)")
    p.add_argument("--no-ray", action="store_true", help="measure the local processes only")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="folder for cluster.json (default benchmarks/out)")
    args = p.parse_args(argv)
    files = args.files or (2 if args.quick else 8)
    frames = args.frames or (6 if args.quick else 90)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    try:
        choice = choose_model(args.model, allow_standin=True)
        config = PipelineConfig(model_path=choice.path, backend="cpu")
        watch = LoadWatch()
        t0 = time.perf_counter()
        pipeline = Pipeline.create(config)
        load_ms = (time.perf_counter() - t0) * 1e3
    except (FileNotFoundError, ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"cluster: {choice.note}; {files} files x {frames} frames, workers {workers}")
    body: dict = {"quick": args.quick, "model": {"path": str(choice.path), "kind": choice.kind},
                  "files": files, "frames_per_file": frames, "size_wh": [640, 480],
                  "model_load_ms": {"value": round(load_ms, 1), **watch.done()}, "local": [], "ray": []}
    crops, body["test_faces"] = face_crops()
    with tempfile.TemporaryDirectory(prefix="faceattr-bench-cluster-") as tmp:
        videos = make_videos(Path(tmp), files, frames, crops)
        last_out = None
        for w in workers:
            out = Path(tmp) / f"local-{w}"
            print(f"cluster: local, {w} worker process(es)")
            body["local"].append(measure_local(videos, out, config, w))
            last_out = out
        if args.no_ray:
            body["ray"] = "skipped (--no-ray)"
        else:
            try:
                from app.cluster import ClusterError, import_ray

                import_ray()
            except ClusterError as e:
                body["ray"] = f"skipped: {e}"
                print(f"cluster: {e}")
            else:
                for w in workers:
                    print(f"cluster: Ray, {w} actor(s)")
                    body["ray"].append(measure_ray(videos, Path(tmp) / f"ray-{w}", config, w,
                                                   5 if args.quick else 50))
        if last_out is not None:
            watch = LoadWatch()
            outputs = [[str(p)] for p in sorted(last_out.glob("*.jsonl"))]
            t0 = time.perf_counter()
            written = merge_records(last_out, outputs, pipeline.spec)
            body["merge_ms"] = {"value": round((time.perf_counter() - t0) * 1e3, 1),
                                "written": sorted(written), **watch.done()}
    path = write_json(args.out / "cluster.json", "cluster", body)
    print(f"cluster: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
