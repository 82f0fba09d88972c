"""The model file contract: the JSON description stored in an ONNX file's metadata.

Training writes it (``training/export.py``), the engine reads and validates it
(``engine/model.py``). Both go through :class:`ModelSpec`, so the two cannot drift.
See ARCHITECTURE.md, "Model contract".
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "faceattr-model/1"
METADATA_KEY = "faceattr"
TASK_KINDS = ("binary", "multiclass", "regression", "expectation", "landmarks")


class ModelDescriptionError(ValueError):
    """The model file has no valid FaceAttr description; the message says why."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    labels: tuple[str, ...] = ()  # binary (2), multiclass (C)
    unit: str = ""  # regression, expectation
    range: tuple[float, float] | None = None  # regression: the trained value range
    bins: tuple[float, ...] = ()  # expectation: the value of each bin
    points: int = 0  # landmarks: K


@dataclass(frozen=True)
class Normalisation:
    mean: tuple[float, float, float]
    scale: float
    inside_graph: bool = True


@dataclass(frozen=True)
class InputSpec:
    name: str = "chips"
    dtype: str = "uint8"
    layout: str = "NHWC"
    color: str = "RGB"
    size: int = 150
    normalisation: Normalisation = field(
        default_factory=lambda: Normalisation((122.782, 117.001, 104.298), 1 / 256))


@dataclass(frozen=True)
class AlignmentSpec:
    landmarks: str = "dlib-5"
    chip_size: int = 150
    padding: float = 0.25


@dataclass(frozen=True)
class ModelSpec:
    name: str
    tasks: tuple[TaskSpec, ...]
    backbone: str
    input: InputSpec = field(default_factory=InputSpec)
    alignment: AlignmentSpec = field(default_factory=AlignmentSpec)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)

    def to_json(self) -> str:
        d = asdict(self)
        d = {"format": d.pop("format"), **d}
        for t in d["tasks"]:  # keep each task's description to the fields its kind uses
            for key in ("labels", "unit", "range", "bins", "points"):
                if t[key] in ((), "", None, 0, []):
                    del t[key]
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str | None, source: str = "model") -> "ModelSpec":
        """Parse and validate; raise ModelDescriptionError naming ``source`` and the field."""
        if not text:
            raise ModelDescriptionError(
                f"{source}: no FaceAttr description (ONNX metadata key '{METADATA_KEY}' is missing); "
                "export models with `python -m training.export`")
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelDescriptionError(f"{source}: the FaceAttr description is not valid JSON ({e})") from e
        return _parse(d, source)


def _need(d: dict, key: str, where: str, source: str, types=None):
    if not isinstance(d, dict) or key not in d:
        raise ModelDescriptionError(f"{source}: the FaceAttr description lacks '{where}{key}'")
    value = d[key]
    if types is not None and not isinstance(value, types):
        raise ModelDescriptionError(
            f"{source}: '{where}{key}' should be {getattr(types, '__name__', types)}, got {value!r}")
    return value


def _parse_task(t: dict, i: int, source: str) -> TaskSpec:
    where = f"tasks[{i}]."
    name = _need(t, "name", where, source, str)
    kind = _need(t, "kind", where, source, str)
    if kind not in TASK_KINDS:
        raise ModelDescriptionError(f"{source}: task '{name}' has unknown kind '{kind}' (known: {', '.join(TASK_KINDS)})")
    labels: tuple[str, ...] = ()
    bins: tuple[float, ...] = ()
    rng = None
    points = 0
    if kind in ("binary", "multiclass"):
        labels = tuple(_need(t, "labels", where, source, list))
        want = "exactly 2" if kind == "binary" else "at least 2"
        if (kind == "binary" and len(labels) != 2) or len(labels) < 2:
            raise ModelDescriptionError(f"{source}: task '{name}' ({kind}) needs {want} labels, has {len(labels)}")
    if kind == "expectation":
        bins = tuple(float(b) for b in _need(t, "bins", where, source, list))
        if len(bins) < 2:
            raise ModelDescriptionError(f"{source}: task '{name}' (expectation) needs at least 2 bins")
    if kind == "regression" and t.get("range") is not None:
        rng = tuple(float(v) for v in t["range"])
    if kind == "landmarks":
        points = int(_need(t, "points", where, source, int))
    return TaskSpec(name=name, kind=kind, labels=labels, unit=str(t.get("unit", "")),
                    range=rng, bins=bins, points=points)


def _parse(d: Any, source: str) -> ModelSpec:
    if not isinstance(d, dict):
        raise ModelDescriptionError(f"{source}: the FaceAttr description is not a JSON object")
    fmt = _need(d, "format", "", source, str)
    if fmt != FORMAT:
        raise ModelDescriptionError(f"{source}: description format '{fmt}' is not supported (expected '{FORMAT}')")
    name = _need(d, "name", "", source, str)
    raw_tasks = _need(d, "tasks", "", source, list)
    if not raw_tasks:
        raise ModelDescriptionError(f"{source}: the FaceAttr description lists no tasks")
    tasks = tuple(_parse_task(t, i, source) for i, t in enumerate(raw_tasks))
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ModelDescriptionError(f"{source}: task names repeat: {names}")
    inp = _need(d, "input", "", source, dict)
    norm = _need(inp, "normalisation", "input.", source, dict)
    normalisation = Normalisation(
        mean=tuple(float(v) for v in _need(norm, "mean", "input.normalisation.", source, list)),
        scale=float(_need(norm, "scale", "input.normalisation.", source, (int, float))),
        inside_graph=bool(norm.get("inside_graph", True)),
    )
    input_spec = InputSpec(
        name=_need(inp, "name", "input.", source, str),
        dtype=_need(inp, "dtype", "input.", source, str),
        layout=_need(inp, "layout", "input.", source, str),
        color=_need(inp, "color", "input.", source, str),
        size=int(_need(inp, "size", "input.", source, int)),
        normalisation=normalisation,
    )
    if (input_spec.dtype, input_spec.layout, input_spec.color) != ("uint8", "NHWC", "RGB"):
        raise ModelDescriptionError(
            f"{source}: input must be uint8 NHWC RGB chips, the file says "
            f"{input_spec.dtype} {input_spec.layout} {input_spec.color}")
    al = _need(d, "alignment", "", source, dict)
    alignment = AlignmentSpec(
        landmarks=_need(al, "landmarks", "alignment.", source, str),
        chip_size=int(_need(al, "chip_size", "alignment.", source, int)),
        padding=float(_need(al, "padding", "alignment.", source, (int, float))),
    )
    if alignment.landmarks != "dlib-5":
        raise ModelDescriptionError(f"{source}: alignment '{alignment.landmarks}' is not supported (only dlib-5)")
    return ModelSpec(
        name=name, tasks=tasks, backbone=_need(d, "backbone", "", source, str),
        input=input_spec, alignment=alignment,
        training=dict(d.get("training", {})), metrics=dict(d.get("metrics", {})), format=fmt,
    )
