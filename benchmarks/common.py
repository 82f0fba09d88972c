"""What every benchmark shares: paths, the machine's description, timing, test frames, JSON.

Timings are medians over repeated runs after warm-up. The CPU here is shared (with a
training job, other processes), so every JSON file records the load average before and
after each section: a reader can judge how much of a number is the machine's other work.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "benchmarks" / "out"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SCHEMA = "faceattr-bench/1"


def shared_dir() -> Path | None:
    """``../shared`` beside the checkout (data), or None in a user's clone."""
    path = REPO_ROOT.parent / "shared"
    return path if path.is_dir() else None


# ---------------------------------------------------------------- the machine

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def _cpu_flags() -> list[str]:
    """The SIMD extensions that matter to ONNX Runtime / dlib speed, as /proc/cpuinfo lists them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in SIMD_FLAGS if f in have]
    except OSError:
        pass
    return []


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    """CPU, cores, memory, OS, library versions, git commit and the load right now."""
    import dlib
    import onnxruntime as ort

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(), "cpu_simd": _cpu_flags(), "logical_cores": os.cpu_count(), "usable_cores": usable,
        "memory_gib": _memory_gib(), "os": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "opencv": cv2.__version__, "dlib": dlib.__version__,
        "onnxruntime": ort.__version__, "onnxruntime_providers": ort.get_available_providers(),
        "git_commit": _git_commit(), "loadavg_1_5_15": loadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def command_line() -> str:
    """How this run was started, e.g. 'python -m benchmarks.speed --quick'."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    module = spec.name if spec is not None else f"benchmarks.{Path(sys.argv[0]).stem}"
    return " ".join(["python", "-m", module, *sys.argv[1:]])


def write_json(path: Path, kind: str, body: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SCHEMA, "kind": kind, "command": command_line(), "machine": machine_info(), **body}
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(doc, indent=1, default=_jsonable))
    tmp.replace(path)
    return path


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


# ---------------------------------------------------------------- timing

@dataclass(frozen=True)
class Stat:
    """Milliseconds of repeated calls: median (the headline), p95, min, count."""

    median_ms: float
    p95_ms: float
    min_ms: float
    n: int

    @classmethod
    def of(cls, times_ms: list[float]) -> "Stat":
        a = np.asarray(times_ms, np.float64)
        return cls(float(np.median(a)), float(np.percentile(a, 95)), float(a.min()), len(a))

    def as_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def measure(fn: Callable[[], object], reps: int, warmup: int = 1) -> Stat:
    """Call ``fn`` ``warmup`` times untimed, then ``reps`` times timed."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return Stat.of(times)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, np.float64), q)) if values else None


def median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


class LoadWatch:
    """Load average at the start and end of a section, for the JSON."""

    def __init__(self) -> None:
        self.start = loadavg()

    def done(self) -> dict:
        return {"loadavg_start": self.start, "loadavg_end": loadavg()}


# ---------------------------------------------------------------- test faces and frames

def _square_around(box_xyxy: np.ndarray, margin: float, shape_hw) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box_xyxy
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    h, w = shape_hw
    side = min(side, w, h)
    left = int(np.clip(cx - side / 2, 0, w - side))
    top = int(np.clip(cy - side / 2, 0, h - side))
    return left, top, left + int(side), top + int(side)


def face_crops(limit: int = 12) -> tuple[list[np.ndarray], str]:
    """Square BGR crops centred on one real face each, and where they came from.

    The public-domain portraits of ``../shared/data/faces-pd`` when present (a user's clone
    has none), else scikit-image's astronaut (Eileen Collins, public domain).
    """
    from engine.detect import HogDetector

    detector = HogDetector(upsample=0, min_face=HogDetector.native_min_face_px)
    images: list[np.ndarray] = []
    sd = shared_dir()
    folder = sd / "data" / "faces-pd" if sd else None
    if folder is not None and folder.is_dir():
        for path in sorted(folder.glob("*.jpg"))[:limit]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                images.append(image)
        source = f"faces-pd portraits ({len(images)} of {folder})"
    if not images:
        from skimage import data

        images = [np.ascontiguousarray(data.astronaut()[:, :, ::-1])]
        source = "scikit-image astronaut (no ../shared/data/faces-pd here)"
    crops = []
    for image in images:
        faces = detector(image)
        if len(faces) == 0:
            continue
        x0, y0, x1, y1 = _square_around(faces.xyxy[0], 0.45, image.shape[:2])
        crops.append(np.ascontiguousarray(image[y0:y1, x0:x1]))
    if not crops:
        raise RuntimeError(f"no face found in the test portraits ({source})")
    return crops, source


def clip_video(video: Path, out: Path, max_frames: int) -> Path:
    """The first ``max_frames`` frames of ``video`` written to ``out`` (a --quick run's input)."""
    from engine.write import VideoWriter

    cap = cv2.VideoCapture(str(video))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    with VideoWriter(out, 30.0, size) as w:
        for _ in range(max_frames):
            ok, image = cap.read()
            if not ok:
                break
            w.write(image)
    cap.release()
    return out


def background_bgr(size_wh: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth, lightly textured background (a plain one would flatter the detector)."""
    w, h = size_wh
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (max(2, h // 60), max(2, w // 60), 3), dtype=np.uint8)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, (h, w, 3))
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def compose_frame(size_wh: tuple[int, int], n_faces: int, crops: list[np.ndarray],
                  face_side_px: int = 150, seed: int = 0) -> np.ndarray:
    """A frame with ``n_faces`` face crops on a grid (crop side ``face_side_px``, shrunk to fit).

    A crop of side 150 holds a face of about 105 px, which HOG at upsample 0 finds.
    """
    w, h = size_wh
    image = background_bgr(size_wh, seed)
    if n_faces == 0:
        return image
    cols = int(np.ceil(np.sqrt(n_faces * w / h)))
    rows = int(np.ceil(n_faces / cols))
    side = int(min(face_side_px, w // cols, h // rows))
    cell_w, cell_h = w // cols, h // rows
    for i in range(n_faces):
        r, c = divmod(i, cols)
        crop = cv2.resize(crops[i % len(crops)], (side, side), interpolation=cv2.INTER_AREA)
        x = c * cell_w + (cell_w - side) // 2
        y = r * cell_h + (cell_h - side) // 2
        image[y:y + side, x:x + side] = crop
    return image
