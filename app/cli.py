"""The command line: ``annotate`` files in a batch, and ``info`` about this installation.

Neither imports Qt. Every failure the user can cause ends as one line
``faceattr: error: <input>: <reason>`` and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from app.errors import PROG, error_line, error_sentence
from engine.annotate import AnnotateSummary, annotate_file, output_paths
from engine.assets import default_model_path
from engine.detect import DETECTORS
from engine.model import BACKENDS, FaceAttrModel, available_providers
from engine.pipeline import Pipeline, PipelineConfig
from engine.sources import list_cameras


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model_options(parser: argparse.ArgumentParser, remembered: bool = False) -> None:
    """--model and --backend; ``remembered``: the GUI's defaults are its saved settings."""
    default = "the last one used, else " if remembered else ""
    parser.add_argument("--model", type=Path, default=None,
                        help=f"FaceAttr ONNX model (default: {default}{default_model_path()})")
    parser.add_argument("--backend", choices=BACKENDS, default=None if remembered else "auto",
                        help=f"ONNX Runtime back-end: auto tries TensorRT, CUDA, then CPU (default: {default}auto)")


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detector", choices=DETECTORS, default="hog",
                        help="face detector: hog (fast) or cnn (dlib's mmod, slow on CPU) (default: hog)")
    parser.add_argument("--detect-every", type=positive_int, default=1, metavar="K",
                        help="detect on every K-th frame and track in between (default: 1)")


# -- annotate -------------------------------------------------------------------------------

def annotate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} annotate",
        description="Annotate videos, images or folders of images: an annotated video (or image) "
                    "per input, and per-face records with --jsonl / --csv.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video file, image file or folder of images")
    p.add_argument("-o", "--out", dest="out_dir", type=Path, required=True, metavar="OUTDIR",
                   help="folder for the outputs (created if needed)")
    p.add_argument("--jsonl", action="store_true", help="write <name>.jsonl: one JSON record per face and frame")
    p.add_argument("--csv", action="store_true", help="write <name>.csv: the same records as CSV")
    p.add_argument("--no-video", action="store_true", help="do not write the annotated video / images")
    add_model_options(p)
    add_detector_options(p)
    return p


def _config(args) -> PipelineConfig:
    return PipelineConfig(model_path=args.model or default_model_path(), backend=args.backend,
                          detector=args.detector, detect_every=args.detect_every)


class _ProgressBar:
    """A tqdm bar for one file, opened at its first frame (a file that fails to open shows none)."""

    def __init__(self, name: str, stream: TextIO) -> None:
        self.name = name
        self.stream = stream
        self.bar = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(desc=self.name, unit="frame", file=self.stream, total=total, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_input(path: Path, seen: dict[Path, Path], out_dir: Path) -> str | None:
    """Problems found before opening: missing input, outputs that would overwrite another's."""
    if not path.exists():
        return f"{path}: no such file or folder"
    key = output_paths(path, out_dir)["jsonl"]  # every output is named after the input's stem
    other = seen.get(key)
    if other is not None and other.resolve() != path.resolve():
        return (f"{path}: its outputs would overwrite those of {other} (same name); "
                "annotate it into another folder")
    seen[key] = path
    return None


def annotate_main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = annotate_parser().parse_args(argv)
    if args.no_video and not (args.jsonl or args.csv):
        print(error_line("nothing to write: --no-video without --jsonl or --csv"), file=err)
        return 2
    config = _config(args)
    try:
        pipeline = Pipeline.create(config)  # one model for all files
    except Exception as e:  # noqa: BLE001 - one line, no traceback
        print(error_line(e, str(config.model_path)), file=err)
        return 1
    for note in pipeline.notes:
        print(f"{PROG}: note: {note}", file=err)
    print(f"{PROG}: model {pipeline.spec.name} on {pipeline.provider}", file=err)

    summaries: list[AnnotateSummary] = []
    seen: dict = {}
    for text in args.inputs:
        path = Path(text)
        problem = _check_input(path, seen, args.out_dir)
        if problem:
            summary = AnnotateSummary(path, error=problem)
        else:
            bar = _ProgressBar(path.name, err)
            try:
                summary = annotate_file(path, args.out_dir, pipeline, jsonl=args.jsonl, csv=args.csv,
                                        video=not args.no_video, progress=bar)
            except Exception as e:  # noqa: BLE001 - one bad file does not stop the others
                summary = AnnotateSummary(path, error=error_sentence(e, str(path)))
            finally:
                bar.close()
        if summary.error is None and summary.end_reason:  # a truncated input: kept, but not a success
            summary = dataclasses.replace(summary, error=summary.end_reason)
        for warning in summary.warnings:
            print(f"{PROG}: warning: {warning}", file=err)
        if summary.error:
            print(error_line(summary.error, str(path)), file=err)
        summaries.append(summary)
    print(summary_table(summaries), file=out)
    return 0 if all(s.ok for s in summaries) else 1


def summary_table(summaries: list[AnnotateSummary]) -> str:
    """file | frames | faces | fps | outputs (or the error), aligned in columns."""
    rows = [("file", "frames", "faces", "fps", "outputs / error")]
    for s in summaries:
        if s.ok:
            what = ", ".join(str(p) for p in s.outputs) or "(no outputs)"
        else:
            kept = f" (kept: {', '.join(str(p) for p in s.outputs)})" if s.outputs else ""
            what = f"FAILED: {s.error}{kept}"
        rows.append((str(s.input), str(s.frames), str(s.faces), f"{s.fps:.1f}", what))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in (1, 2, 3)] + [r[4]]
        lines.append("  ".join(cells))
    ok = sum(s.ok for s in summaries)
    lines.append(f"{ok} of {len(summaries)} file(s) annotated" + ("" if ok == len(summaries) else
                                                                  f", {len(summaries) - ok} failed"))
    return "\n".join(lines)


# -- info -----------------------------------------------------------------------------------

def info_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{PROG} info",
                                description="Versions, ONNX Runtime providers, cameras, and the model's description.")
    add_model_options(p)
    return p


def _version(dist: str, module: str | None = None) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
    if module:  # a PyInstaller bundle may lack the metadata; the module knows its version
        try:
            mod = __import__(module)
            return str(getattr(mod, "__version__", "unknown"))
        except ImportError:
            return "not installed"
    return "not installed"


def versions() -> dict[str, str]:
    import app

    faceattr = _version("faceattr")
    if faceattr == "not installed":
        faceattr = f"{app.__version__} (from source)"
    return {
        "faceattr": faceattr,
        "python": platform.python_version(),
        "numpy": _version("numpy", "numpy"),
        "opencv": _version("opencv-python-headless", "cv2"),
        "dlib": _version("dlib-bin", "dlib") if _version("dlib-bin") != "not installed" else _version("dlib", "dlib"),
        "onnxruntime": _version("onnxruntime", "onnxruntime") if _version("onnxruntime") != "not installed"
        else _version("onnxruntime-gpu", "onnxruntime"),
        "PySide6": _version("PySide6-Essentials", "PySide6") if _version("PySide6-Essentials") != "not installed"
        else _version("PySide6", "PySide6"),
    }


def info_main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = info_parser().parse_args(argv)
    for name, version in versions().items():
        print(f"{name + ':':13}{version}", file=out)
    print(f"{'providers:':13}{', '.join(available_providers())}", file=out)
    cameras = list_cameras()
    listed = ", ".join(f"{c.index} '{c.name}'" for c in cameras) if cameras else "none found"
    print(f"{'cameras:':13}{listed}", file=out)
    path = args.model or default_model_path()
    print(f"{'model:':13}{path}", file=out)
    try:
        model = FaceAttrModel.load(path, backend=args.backend)
    except Exception as e:  # noqa: BLE001
        out.flush()
        print(error_line(e, str(path)), file=err)
        return 1
    print(f"{'backend:':13}{args.backend} -> provider in use: {model.provider}", file=out)
    for note in model.notes:
        print(f"{'note:':13}{note}", file=out)
    description = json.loads(model.spec.to_json())
    print("description:", file=out)
    print(json.dumps(description, indent=2, ensure_ascii=False), file=out)
    tasks = "; ".join(_task_line(t) for t in model.spec.tasks)
    print(f"{'tasks:':13}{tasks}", file=out)
    return 0


def _task_line(task) -> str:
    d = {k: v for k, v in asdict(task).items() if v not in ((), "", None, 0) and k not in ("name", "kind")}
    details = ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in d.items())
    return f"{task.name} ({task.kind}{': ' + details if details else ''})"
