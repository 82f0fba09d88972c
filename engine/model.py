"""The network stage: load a FaceAttr ONNX file, run all faces of a frame as one batch, decode.

A graph exported with a fixed batch size B (dim 0 of its input a number, not a name) runs
faces in groups of B, the last padded with blank chips whose outputs are dropped; ``notes`` says so.

The file carries its own description (``engine.modelspec``, ONNX metadata key
``faceattr``); everything task-specific (labels, bins, units) comes from it, so a model
with different tasks needs no code change. See ARCHITECTURE.md, "Model contract".

Back-ends are ONNX Runtime execution providers: ``auto`` tries TensorRT (FP16, engine
cache on disk) -> CUDA -> CPU with whatever this onnxruntime build offers and records
why it skipped a GPU in ``notes``; a GPU back-end named explicitly is never silently
replaced by another (:class:`BackendUnavailableError`).
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.modelspec import METADATA_KEY, ModelDescriptionError, ModelSpec, TaskSpec
from engine.types import Faces, TaskPrediction

BACKENDS = ("auto", "tensorrt", "cuda", "cpu")
_PROVIDER = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_BACKEND_NAME = {"tensorrt": "TensorRT", "cuda": "CUDA", "cpu": "CPU"}
_UNIT_SHORT = {"years": "y", "year": "y"}
_FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")


class BackendUnavailableError(RuntimeError):
    """A GPU back-end was asked for by name and this machine/onnxruntime cannot provide it."""


class ModelLoadError(ValueError):
    """The model file is missing, not ONNX, or does not follow the FaceAttr contract."""


class ModelFileDescriptionError(ModelLoadError, ModelDescriptionError):
    """The file's FaceAttr description is missing or invalid (catch either parent)."""


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
    if backend in ("tensorrt", "cuda") and _PROVIDER[backend] not in offered:
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
        chain = [b for b in ("tensorrt", "cuda") if _PROVIDER[b] in offered] + ["cpu"]
    notes: list[str] = []
    if backend == "auto":
        missing = [b for b in ("tensorrt", "cuda") if b not in chain]
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


def _ort_reason(error: Exception) -> str:
    """ONNX Runtime's message without its '[ONNXRuntimeError] : 7 : CODE : Load model from X failed:' prefix."""
    text = str(error).strip()
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", text)
    text = re.sub(r"^Load model from .*? failed:\s*", "", text, flags=re.S)
    return text.rstrip(".") or type(error).__name__


def _open_session(path: Path, plan: _Plan, options: ort.SessionOptions) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=list(plan.providers))
    except Exception as e:  # onnxruntime raises its own pybind exception types
        reason = _ort_reason(e)
        if "Protobuf parsing failed" in reason or "No graph was found" in reason:
            raise ModelLoadError(f"{path}: not an ONNX model file ({reason})") from e
        raise ModelLoadError(f"{path}: ONNX Runtime cannot load this model ({reason})") from e


def _static(dim) -> int | None:
    return dim if isinstance(dim, int) and dim >= 0 else None


def _expected_tail(task: TaskSpec) -> tuple[int, ...]:
    """The per-face output shape the contract asks for (after N)."""
    if task.kind in ("binary", "regression"):
        return ()
    if task.kind == "multiclass":
        return (len(task.labels),)
    if task.kind == "expectation":
        return (len(task.bins),)
    return (task.points, 2)  # landmarks


def _check_output(path: Path, task: TaskSpec, arg, name: str | None = None) -> None:
    name = name or task.name
    want = _expected_tail(task) if name == task.name else ()
    shape = list(arg.shape)
    if arg.type not in _FLOAT_TYPES:
        raise ModelLoadError(f"{path}: output '{name}' has type {arg.type}, expected a float tensor")
    tail = shape[1:]
    if not want and tail in ([1], [None]):  # [N, 1] is accepted for per-face scalars
        tail = []
    ok = len(tail) == len(want) and all(_static(d) in (None, w) for d, w in zip(tail, want))
    if not ok:
        dims = ", ".join(str(d) for d in ["N", *want])
        raise ModelLoadError(
            f"{path}: output '{name}' has shape {shape}, but task '{task.name}' ({task.kind}) "
            f"needs [{dims}]")


def _fixed_batch(session: ort.InferenceSession, input_name: str) -> int | None:
    """The batch size the graph's input is fixed to, or None when dim 0 takes any size."""
    shape = next(i for i in session.get_inputs() if i.name == input_name).shape
    return (_static(shape[0]) if shape else None) or None  # a name, None or a meaningless 0: any size


def _batch_note(path: Path, batch: int) -> str:
    how = "one at a time" if batch == 1 else f"in groups of {batch}, the last one padded with blank chips"
    return f"{path.name}: the graph takes a fixed batch of {batch}; faces run {how} (slower)"


@dataclass(frozen=True)
class _TaskIO:
    """What decoding one task needs, computed once at load."""

    task: TaskSpec
    spread: str | None  # name of the optional '<task>_spread' output (regression)
    bins: np.ndarray | None  # expectation bin values, float32
    tail: tuple[int, ...]


class FaceAttrModel:
    """A loaded FaceAttr network on one ONNX Runtime session. Use :meth:`load`."""

    def __init__(self, session: ort.InferenceSession, spec: ModelSpec, path: Path,
                 provider: str, notes: tuple[str, ...]) -> None:
        self.session = session
        self.spec = spec
        self.path = path
        self.provider = provider
        self.notes = notes
        self._input = spec.input.name
        self.batch = _fixed_batch(session, self._input)  # None: any batch size
        outputs = {o.name for o in session.get_outputs()}
        self._io = tuple(
            _TaskIO(t, f"{t.name}_spread" if t.kind == "regression" and f"{t.name}_spread" in outputs else None,
                    np.asarray(t.bins, np.float32) if t.kind == "expectation" else None,
                    _expected_tail(t))
            for t in spec.tasks)
        self._output_names = [io.task.name for io in self._io] + [io.spread for io in self._io if io.spread]
        self._has_landmarks = any(t.kind == "landmarks" for t in spec.tasks)

    def __repr__(self) -> str:
        return f"FaceAttrModel({self.spec.name!r}, path={str(self.path)!r}, provider={self.provider!r})"

    @classmethod
    def load(cls, path, backend: str = "auto", trt_cache_dir=None,
             intra_op_threads: int | None = None) -> "FaceAttrModel":
        """Open ``path`` on ``backend``; raise ModelLoadError / BackendUnavailableError with the reason."""
        path = Path(path)
        if not path.exists():
            raise ModelLoadError(f"{path}: model file not found")
        if not path.is_file():
            raise ModelLoadError(f"{path}: not a model file (it is a directory)")
        plan = _plan_providers(backend, available_providers(), trt_cache_dir)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime's intra-op threads spin-wait between calls by default. In the app the
        # network shares the CPU with HOG detection, capture and the UI, and the spinning
        # threads steal their cores: on a 2-core machine spinning off took HOG from 45 to
        # 25 ms and the network (4 faces) from 27 to 13 ms (benchmarks/RESULTS.md, ort_spinning).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # we report provider choices ourselves (notes)
        if intra_op_threads:
            options.intra_op_num_threads = int(intra_op_threads)
        session = _open_session(path, plan, options)
        meta = session.get_modelmeta().custom_metadata_map
        try:
            spec = ModelSpec.from_json(meta.get(METADATA_KEY), source=str(path))
        except ModelDescriptionError as e:
            raise ModelFileDescriptionError(str(e)) from e
        cls._check_graph(path, session, spec)
        provider = session.get_providers()[0]
        notes = list(plan.notes)
        batch = _fixed_batch(session, spec.input.name)
        if batch is not None:
            notes.append(_batch_note(path, batch))
        if provider != plan.wanted:  # the provider was offered but failed to start
            wanted = plan.wanted.replace("ExecutionProvider", "")
            if backend != "auto":
                raise BackendUnavailableError(
                    f"the {_BACKEND_NAME[backend]} backend was requested but {plan.wanted} failed to start "
                    f"on this machine (ONNX Runtime fell back to {provider}); check the GPU driver and "
                    "CUDA/TensorRT libraries, or choose --backend cpu")
            notes.append(f"{wanted} failed to start on this machine; using {provider.replace('ExecutionProvider', '')}")
        return cls(session, spec, path, provider, tuple(notes))

    @staticmethod
    def _check_graph(path: Path, session: ort.InferenceSession, spec: ModelSpec) -> None:
        inputs = {i.name: i for i in session.get_inputs()}
        arg = inputs.get(spec.input.name)
        if arg is None:
            raise ModelLoadError(f"{path}: the description names input '{spec.input.name}' but the graph's "
                                 f"inputs are {sorted(inputs)}")
        size = spec.input.size
        want = [None, size, size, 3]
        if (arg.type != "tensor(uint8)" or len(arg.shape) != 4
                or any(_static(d) not in (None, w) for d, w in zip(arg.shape[1:], want[1:]))):
            raise ModelLoadError(f"{path}: input '{arg.name}' is {arg.type} {list(arg.shape)}, "
                                 f"the contract needs uint8 [N, {size}, {size}, 3]")
        outputs = {o.name: o for o in session.get_outputs()}
        for task in spec.tasks:
            if task.name not in outputs:
                raise ModelLoadError(f"{path}: task '{task.name}' has no output of that name in the graph "
                                     f"(outputs: {sorted(outputs)})")
            _check_output(path, task, outputs[task.name])
            spread = f"{task.name}_spread"
            if task.kind == "regression" and spread in outputs:
                _check_output(path, task, outputs[spread], spread)

    # -- per frame -------------------------------------------------------------------------

    def predict_raw(self, chips_rgb: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 chips [N, size, size, 3] (RGB, untouched) -> the graph's outputs by name."""
        size = self.spec.input.size
        if chips_rgb.dtype != np.uint8 or chips_rgb.ndim != 4 or chips_rgb.shape[1:] != (size, size, 3):
            raise ValueError(f"chips must be uint8 [N, {size}, {size}, 3], got {chips_rgb.dtype} "
                             f"{list(chips_rgb.shape)}")
        n = len(chips_rgb)
        if n == 0:
            raw = {io.task.name: np.zeros((0, *io.tail), np.float32) for io in self._io}
            raw.update({io.spread: np.zeros((0,), np.float32) for io in self._io if io.spread})
            return raw
        if self.batch is None:
            values = self.session.run(self._output_names, {self._input: np.ascontiguousarray(chips_rgb)})
            return dict(zip(self._output_names, values))
        return self._run_in_groups(chips_rgb)

    def _run_in_groups(self, chips_rgb: np.ndarray) -> dict[str, np.ndarray]:
        """Run a fixed-batch graph on groups of ``self.batch`` chips, zero-padding the last group."""
        n, b = len(chips_rgb), self.batch
        parts: list[list[np.ndarray]] = [[] for _ in self._output_names]
        for start in range(0, n, b):
            group = chips_rgb[start:start + b]
            if len(group) < b:
                group = np.concatenate([group, np.zeros((b - len(group), *group.shape[1:]), np.uint8)])
            values = self.session.run(self._output_names, {self._input: np.ascontiguousarray(group)})
            for part, value in zip(parts, values):
                value = np.asarray(value)  # a batch-1 graph may give a scalar per face: make it [1]
                part.append(value.reshape(b, *value.shape[1:]) if value.ndim else value.reshape(b))
        return {name: np.concatenate(part)[:n] for name, part in zip(self._output_names, parts)}

    def decode(self, raw: dict[str, np.ndarray], chip_to_frame: np.ndarray | None = None
               ) -> dict[str, TaskPrediction]:
        """Raw outputs -> one TaskPrediction per task (see ARCHITECTURE.md, "Model contract").

        ``chip_to_frame``: [N, 2, 3] affine maps from chip pixels to frame pixels, used by
        landmark tasks only; without it their points stay in chip pixels.
        """
        out: dict[str, TaskPrediction] = {}
        for io in self._io:
            task = io.task
            r = np.asarray(raw[task.name], np.float32)
            n = len(r)
            if task.kind == "binary":
                p = r.reshape(n)
                probs = np.stack([1.0 - p, p], axis=1)
                out[task.name] = TaskPrediction(value=(p > 0.5).astype(np.float32),
                                                confidence=np.maximum(p, 1.0 - p), probs=probs)
            elif task.kind in ("multiclass", "expectation"):
                probs = r.reshape(n, *io.tail)
                value = probs @ io.bins if io.bins is not None else probs.argmax(axis=1).astype(np.float32)
                out[task.name] = TaskPrediction(value=value.astype(np.float32, copy=False),
                                                confidence=probs.max(axis=1, initial=0.0), probs=probs)
            elif task.kind == "regression":
                if io.spread:
                    spread = np.asarray(raw[io.spread], np.float32).reshape(n)
                    confidence = 1.0 / (1.0 + np.maximum(spread, 0.0))
                else:
                    confidence = np.full(n, np.nan, np.float32)
                out[task.name] = TaskPrediction(value=r.reshape(n), confidence=confidence)
            else:  # landmarks
                points = r.reshape(n, task.points, 2) * np.float32(self.spec.input.size)
                if chip_to_frame is not None:
                    a = np.asarray(chip_to_frame, np.float32).reshape(n, 2, 3)
                    points = points @ a[:, :, :2].transpose(0, 2, 1) + a[:, None, :, 2]
                nan = np.full(n, np.nan, np.float32)
                out[task.name] = TaskPrediction(value=nan, confidence=nan.copy(), points_xy=points)
        return out

    def __call__(self, faces: Faces, chips_rgb: np.ndarray) -> Faces:
        """Pipeline stage: the faces with every task's prediction (N = 0 is fine)."""
        if len(faces) != len(chips_rgb):
            raise ValueError(f"{len(faces)} faces but {len(chips_rgb)} chips")
        raw = self.predict_raw(chips_rgb)
        affines = None
        if self._has_landmarks and len(faces):
            affines = chip_to_frame_affines(faces.landmarks_xy, self.spec.alignment.chip_size,
                                            self.spec.alignment.padding)
        return faces.replace(tasks=self.decode(raw, affines))


def chip_to_frame_affines(landmarks_xy: np.ndarray, size: int, padding: float) -> np.ndarray:
    """[N, 2, 3] affine maps from chip pixels to frame pixels, as dlib places each chip.

    dlib's ``get_face_chip_details`` turns the 5 landmarks into a rotated rectangle; its
    ``get_mapping_to_chip`` maps the rectangle's corners tl, tr, br to chip pixels
    (0, 0), (cols-1, 0), (cols-1, rows-1). We solve the inverse of that mapping.
    """
    import dlib  # only models with landmark tasks need it here

    n = len(landmarks_xy)
    out = np.empty((n, 2, 3), np.float32)
    for i, pts in enumerate(np.asarray(landmarks_xy, np.float64)):
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        det = dlib.full_object_detection(
            dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
            [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
        d = dlib.get_face_chip_details(det, size=size, padding=padding)
        r = d.rect
        c = np.array([(r.left() + r.right()) / 2.0, (r.top() + r.bottom()) / 2.0])
        cos, sin = np.cos(d.angle), np.sin(d.angle)
        rot = np.array([[cos, -sin], [sin, cos]])
        corners = np.array([[r.left(), r.top()], [r.right(), r.top()], [r.right(), r.bottom()]])
        frame_pts = (corners - c) @ rot.T + c
        chip_pts = np.array([[0, 0, 1], [d.cols - 1, 0, 1], [d.cols - 1, d.rows - 1, 1]], np.float64)
        out[i] = np.linalg.solve(chip_pts, frame_pts).T
    return out


def format_value(task: TaskSpec, pred: TaskPrediction, i: int) -> str:
    """A short label for face ``i``: "34 y", "female 97%", "asian 81%"."""
    value = float(pred.value[i])
    if task.kind in ("binary", "multiclass"):
        label = task.labels[int(value)] if np.isfinite(value) else "?"
        conf = float(pred.confidence[i])
        return f"{label} {conf * 100:.0f}%" if np.isfinite(conf) else label
    if task.kind in ("regression", "expectation"):
        if not np.isfinite(value):
            return "?"
        unit = _UNIT_SHORT.get(task.unit, task.unit)
        number = f"{value:.0f}" if unit == "y" or abs(value) >= 100 else f"{value:.3g}"
        return f"{number} {unit}".strip()
    return f"{task.points} points"
