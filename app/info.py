"""``faceattr info``: versions, ONNX Runtime providers, cameras, and the model's description.

No Qt: it runs on machines without a display. A model that cannot be loaded is one line
naming it and the reason, exit 1.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
from dataclasses import asdict
from typing import TextIO

from app.cli import add_model_options
from app.errors import PROG, error_line
from engine.assets import default_model_path
from engine.model import FaceAttrModel, available_providers
from engine.sources import list_cameras

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
        model = FaceAttrModel.load(path, backend=args.backend, precision=args.precision)
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
    if len(d.get("bins", ())) > 8:  # a distribution over many bins: its range, not every bin
        bins = d["bins"]
        d["bins"] = f"{len(bins)} bins {bins[0]:g}–{bins[-1]:g}"
    details = ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in d.items())
    return f"{task.name} ({task.kind}{': ' + details if details else ''})"
