"""ONNX Runtime execution providers: which back-ends exist here and the order to try them.

``auto`` tries TensorRT (FP16, engine cache on disk) -> CUDA -> CPU with whatever this
onnxruntime build offers and records why it skipped a GPU in the plan's ``notes``; a GPU
back-end named explicitly is never silently replaced by another
(:class:`BackendUnavailableError`). :func:`backend_problem` says in words why a back-end
cannot be used here (the GUI disables it with that as its tooltip).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

BACKENDS = ("auto", "tensorrt", "cuda", "cpu")
GPU_BACKENDS = ("tensorrt", "cuda")  # in the order auto tries them
_PROVIDER = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
BACKEND_TITLES = {"auto": "Auto (best available)", "tensorrt": "TensorRT", "cuda": "CUDA", "cpu": "CPU"}
_BACKEND_NAME = {b: BACKEND_TITLES[b] for b in _PROVIDER}  # the back-ends' names in sentences


class BackendUnavailableError(RuntimeError):
    """A GPU back-end was asked for by name and this machine/onnxruntime cannot provide it."""


def available_providers() -> list[str]:
    """ONNX Runtime execution providers this installation offers, in its preference order."""
    return list(ort.get_available_providers())


def default_trt_cache_dir() -> Path:
    """Where TensorRT engines are cached between runs (building one takes a while)."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "faceattr" / "trt"


@dataclass(frozen=True)
class _Plan:
    """Providers to hand to ONNX Runtime, and what was skipped on the way (notes)."""

    providers: tuple  # names or (name, options) pairs
    wanted: str  # provider expected first
    notes: tuple[str, ...]


def _plan_providers(backend: str, offered: list[str], trt_cache_dir: Path | None) -> _Plan:
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend '{backend}' (choose from: {', '.join(BACKENDS)})")
    if backend in GPU_BACKENDS and _PROVIDER[backend] not in offered:
        raise BackendUnavailableError(
            f"the {_BACKEND_NAME[backend]} backend was requested but this onnxruntime has no "
            f"{_PROVIDER[backend]} (it offers: {', '.join(offered)}); install the 'gpu' extra "
            "(onnxruntime-gpu) or choose --backend cpu")
    if backend == "cpu":
        chain = ["cpu"]
    elif backend == "cuda":
        chain = ["cuda", "cpu"]
    elif backend == "tensorrt":
        chain = ["tensorrt"] + (["cuda"] if _PROVIDER["cuda"] in offered else []) + ["cpu"]
    else:
        chain = [b for b in GPU_BACKENDS if _PROVIDER[b] in offered] + ["cpu"]
    notes: list[str] = []
    if backend == "auto":
        missing = [b for b in GPU_BACKENDS if b not in chain]
        if missing:
            names = " and ".join(_BACKEND_NAME[b] for b in missing)
            provs = " or ".join(_PROVIDER[b] for b in missing)
            notes.append(f"{names} not available (onnxruntime has no {provs}); "
                         f"using {_BACKEND_NAME[chain[0]]}")
    providers: list = []
    for b in chain:
        if b == "tensorrt":
            cache = Path(trt_cache_dir) if trt_cache_dir else default_trt_cache_dir()
            options = {"trt_fp16_enable": True}
            try:
                cache.mkdir(parents=True, exist_ok=True)
                options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache),
                               trt_timing_cache_enable=True, trt_timing_cache_path=str(cache))
            except OSError as e:
                notes.append(f"TensorRT engine cache disabled: cannot create {cache} ({e.strerror})")
            providers.append((_PROVIDER[b], options))
        else:
            providers.append(_PROVIDER[b])
    return _Plan(tuple(providers), _PROVIDER[chain[0]], tuple(notes))


def short_provider(provider: str) -> str:
    """'CUDAExecutionProvider' -> 'CUDA' (how messages, notes and the status bar name a provider)."""
    return provider.replace("ExecutionProvider", "")


def backend_problem(backend: str, offered: list[str] | None = None) -> str | None:
    """Why ``backend`` cannot run on this installation, in words; None when it can."""
    offered = available_providers() if offered is None else offered
    if backend in ("auto", "cpu") or _PROVIDER.get(backend) in offered:
        return None
    return (f"this onnxruntime has no {_PROVIDER[backend]} (install the 'gpu' extra, "
            "onnxruntime-gpu, on a machine with an NVIDIA GPU)")
