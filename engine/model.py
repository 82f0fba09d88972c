"""The network stage: load a FaceAttr ONNX file, run all faces of a frame as one batch, decode.

A graph exported with a fixed batch size B (dim 0 of its input a number, not a name) runs
faces in groups of B, the last padded with blank chips whose outputs are dropped; ``notes`` says so.

The file carries its own description (``engine.modelspec``, ONNX metadata key
``faceattr``); everything task-specific (labels, bins, units) comes from it, so a model
with different tasks needs no code change. See docs/ARCHITECTURE.md, "The model contract".

Back-ends and their order are ``engine.providers``; decoding each task's output is its
kind's (``engine.tasks``); where each chip lies in the frame is ``engine.align``.
"""
from __future__ import annotations

import re
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.align import chip_to_frame_affines
from engine.modelspec import METADATA_KEY, ModelDescriptionError, ModelSpec, TaskSpec
from engine.providers import (_BACKEND_NAME, _PROVIDER, BACKENDS, BackendUnavailableError, _Plan,  # noqa: F401
                              _plan_providers, available_providers, default_trt_cache_dir, short_provider)
from engine.tasks import format_value, task_kind  # noqa: F401 - format_value: the labels' text
from engine.types import Faces, TaskPrediction

_FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")


class ModelLoadError(ValueError):
    """The model file is missing, not ONNX, or does not follow the FaceAttr contract."""


class ModelFileDescriptionError(ModelLoadError, ModelDescriptionError):
    """The file's FaceAttr description is missing or invalid (catch either parent)."""


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


PRECISIONS = ("auto", "int8", "fp32")


def int8_sibling(path: Path) -> Path:
    """Where ``python -m training.quantize`` puts the INT8 model of float ``path``: ``<stem>.int8.onnx``
    (an INT8 file is its own sibling)."""
    return path if path.name.endswith(".int8.onnx") else path.with_name(f"{path.stem}.int8.onnx")


def _int8_stale(int8_spec: ModelSpec, float_path: Path) -> str | None:
    """Why an INT8 file does not belong to ``float_path`` (None: it was quantized from it).

    ``training.quantize`` records the float file's SHA-256; after a new default model is exported
    the old INT8 sibling must not silently keep serving the previous network. Hashing is paid once
    per load, only when a sibling exists (23 MB: 95 ms measured at load average 12 on 2 cores)."""
    import hashlib

    want = int8_spec.training.get("source_sha256")
    if not want:
        return f"its description does not say it was quantized from {float_path.name}"
    h = hashlib.sha256()
    with float_path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != want:
        return f"it was quantized from another version of {float_path.name} (SHA-256 differs)"
    return None


def _static(dim) -> int | None:
    return dim if isinstance(dim, int) and dim >= 0 else None


def _expected_tail(task: TaskSpec) -> tuple[int, ...]:
    """The per-face output shape the contract asks for (after N)."""
    return task_kind(task.kind).output_tail(task)


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
    extras: tuple[str, ...]  # optional outputs of the task's kind that this graph has
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
        self.precision = "fp32"  # "int8" for a model made by training.quantize (set by load)
        self._input = spec.input.name
        self.batch = _fixed_batch(session, self._input)  # None: any batch size
        outputs = {o.name for o in session.get_outputs()}
        self._io = tuple(
            _TaskIO(t, tuple(x for x in task_kind(t.kind).optional_outputs(t) if x in outputs), _expected_tail(t))
            for t in spec.tasks)
        self._output_names = [io.task.name for io in self._io] + [x for io in self._io for x in io.extras]
        self._has_points = any(task_kind(t.kind).has_points for t in spec.tasks)

    def __repr__(self) -> str:
        return f"FaceAttrModel({self.spec.name!r}, path={str(self.path)!r}, provider={self.provider!r})"

    @classmethod
    def load(cls, path, backend: str = "auto", trt_cache_dir=None,
             intra_op_threads: int | None = None, precision: str = "auto") -> "FaceAttrModel":
        """Open ``path`` on ``backend``; raise ModelLoadError / BackendUnavailableError with the reason.

        ``precision``: ``fp32`` runs ``path`` itself; ``int8`` runs its INT8 sibling
        (:func:`int8_sibling`, made by ``python -m training.quantize``); ``auto`` runs the sibling
        when it exists, was quantized from this very file and the provider is the CPU (GPU
        providers keep the float graph: TensorRT builds its own FP16 engine from it), else
        ``path``. The file that runs is ``self.path``, its precision ``self.precision``.
        """
        path = Path(path)
        if precision not in PRECISIONS:
            raise ModelLoadError(f"unknown precision '{precision}' (choose from: {', '.join(PRECISIONS)})")
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
        notes = list(plan.notes)
        float_path, sibling = path, int8_sibling(path)
        if precision == "int8" and not sibling.is_file():
            raise ModelLoadError(f"{sibling}: INT8 model file not found (--precision int8; make it with "
                                 f"`python -m training.quantize {path} --calib CHIPS`, or use --precision fp32)")
        if precision == "int8" or (precision == "auto" and sibling.is_file()
                                   and plan.wanted == _PROVIDER["cpu"]):
            path = sibling
        session, spec = cls._open_described(path, plan, options)
        if path != float_path:
            stale = _int8_stale(spec, float_path)
            if stale and precision == "int8":
                raise ModelLoadError(f"{path}: {stale}; rerun `python -m training.quantize {float_path} --calib CHIPS`")
            if stale:
                notes.append(f"{path.name} not used: {stale}; running {float_path.name} (fp32)")
                path = float_path
                session, spec = cls._open_described(path, plan, options)
            else:
                notes.append(f"precision int8: running {path.name} (--precision fp32 runs {float_path.name})")
        elif precision == "auto" and sibling != float_path and sibling.is_file():
            notes.append(f"precision fp32 on {short_provider(plan.wanted)}: "
                         f"{sibling.name} is used on the CPU only")
        cls._check_graph(path, session, spec)
        provider = session.get_providers()[0]
        batch = _fixed_batch(session, spec.input.name)
        if batch is not None:
            notes.append(_batch_note(path, batch))
        if provider != plan.wanted:  # the provider was offered but failed to start
            wanted = short_provider(plan.wanted)
            if backend != "auto":
                raise BackendUnavailableError(
                    f"the {_BACKEND_NAME[backend]} backend was requested but {plan.wanted} failed to start "
                    f"on this machine (ONNX Runtime fell back to {provider}); check the GPU driver and "
                    "CUDA/TensorRT libraries, or choose --backend cpu")
            notes.append(f"{wanted} failed to start on this machine; using {short_provider(provider)}")
        model = cls(session, spec, path, provider, tuple(notes))
        model.precision = "int8" if spec.training.get("precision") == "int8" else "fp32"
        return model

    @staticmethod
    def _open_described(path: Path, plan: _Plan, options: ort.SessionOptions) -> tuple[ort.InferenceSession, ModelSpec]:
        session = _open_session(path, plan, options)
        meta = session.get_modelmeta().custom_metadata_map
        try:
            return session, ModelSpec.from_json(meta.get(METADATA_KEY), source=str(path))
        except ModelDescriptionError as e:
            raise ModelFileDescriptionError(str(e)) from e

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
            for extra in task_kind(task.kind).optional_outputs(task):  # e.g. '<name>_spread'
                if extra in outputs:
                    _check_output(path, task, outputs[extra], extra)

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
            raw.update({x: np.zeros((0,), np.float32) for io in self._io for x in io.extras})
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
        """Raw outputs -> one TaskPrediction per task (see docs/ARCHITECTURE.md, "Task kinds").

        ``chip_to_frame``: [N, 2, 3] affine maps from chip pixels to frame pixels, used by
        landmark tasks only; without it their points stay in chip pixels.
        """
        out: dict[str, TaskPrediction] = {}
        size = np.float32(self.spec.input.size)
        for io in self._io:
            extra = {x: raw[x] for x in io.extras}
            raw_task = np.asarray(raw[io.task.name], np.float32)
            pred = task_kind(io.task.kind).decode(io.task, raw_task, extra, chip_to_frame, size)
            out[io.task.name] = dataclasses.replace(pred, task=io.task)
        return out

    def __call__(self, faces: Faces, chips_rgb: np.ndarray) -> Faces:
        """Pipeline stage: the faces with every task's prediction (N = 0 is fine)."""
        if len(faces) != len(chips_rgb):
            raise ValueError(f"{len(faces)} faces but {len(chips_rgb)} chips")
        raw = self.predict_raw(chips_rgb)
        affines = None
        if self._has_points and len(faces):
            affines = chip_to_frame_affines(faces.landmarks_xy, self.spec.alignment.chip_size,
                                            self.spec.alignment.padding)
        return faces.replace(tasks=self.decode(raw, affines))
