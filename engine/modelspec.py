"""The model file contract: the JSON description stored in an ONNX file's metadata.

Training writes it (``training/export.py``), the engine reads and validates it
(``engine/model.py``). Both go through :class:`ModelSpec`, so the two cannot drift.
See docs/ARCHITECTURE.md, "The model contract".
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "faceattr-model/1"
METADATA_KEY = "faceattr"
from engine.tasks import task_kind, task_kinds  # noqa: E402 - the kinds' registry

TASK_KINDS = task_kinds()


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


# -- parsing: every field is checked for its type and named by its path when it is wrong --


class _Check:
    """What a field must be: ``what`` is said to the user, ``ok`` tests, ``convert`` keeps."""

    def __init__(self, what: str, ok, convert=lambda v: v) -> None:
        self.what, self.ok, self.convert = what, ok, convert


def _is_number(v: Any) -> bool:
    """A finite JSON number (not true/false, NaN, Infinity or an integer beyond float range)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _is_whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _numbers(v: Any, n: int | None = None, least: int = 0) -> bool:
    return (isinstance(v, list) and all(_is_number(x) for x in v)
            and (len(v) == n if n is not None else len(v) >= least))


def _strings(v: Any, n: int | None = None, least: int = 0) -> bool:
    return (isinstance(v, list) and all(isinstance(x, str) for x in v)
            and (len(v) == n if n is not None else len(v) >= least))


def _literal(value: str, why: str) -> _Check:
    return _Check(f"{json.dumps(value)} ({why})", lambda v: v == value)


STRING = _Check("a string", lambda v: isinstance(v, str))
NAME = _Check("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()))
POSITIVE_INT = _Check("a whole number above 0", lambda v: _is_whole(v) and v > 0, int)
POSITIVE = _Check("a number above 0", lambda v: _is_number(v) and v > 0, float)
NON_NEGATIVE = _Check("a number of 0 or more", lambda v: _is_number(v) and v >= 0, float)
BOOL = _Check("true or false", lambda v: isinstance(v, bool))
OBJECT = _Check("an object ({...})", lambda v: isinstance(v, dict), dict)
TASK_LIST = _Check("a non-empty list of tasks", lambda v: isinstance(v, list) and len(v) > 0)
KIND = _Check(f"one of {', '.join(TASK_KINDS)}", lambda v: isinstance(v, str) and v in task_kinds())
RANGE = _Check("a list of 2 numbers, low then high",
               lambda v: _numbers(v, 2) and v[0] < v[1], lambda v: (float(v[0]), float(v[1])))
BINS = _Check("a list of at least 2 numbers", lambda v: _numbers(v, least=2),
              lambda v: tuple(float(x) for x in v))
MEAN = _Check("a list of 3 numbers (R, G, B)", lambda v: _numbers(v, 3), lambda v: tuple(float(x) for x in v))
ANY_LABELS = _Check("a list of strings", _strings, tuple)


def _labels_check(kind) -> _Check:
    """Labels as the kind wants them: exactly ``label_count``, or at least 2."""
    if "labels" not in kind.needs:
        return ANY_LABELS
    if kind.label_count:
        n = kind.label_count
        return _Check(f"a list of {n} strings", lambda v: _strings(v, n), tuple)
    return _Check("a list of at least 2 strings", lambda v: _strings(v, least=2), tuple)
_MISSING = object()


def _show(value: Any) -> str:
    """The value as it appears in the JSON, cut short when long."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Fields:
    """One JSON object of the description, at ``path`` inside the file ``source``."""

    def __init__(self, value: Any, path: str, source: str) -> None:
        self.path, self.source = path, source
        if not isinstance(value, dict):
            raise self.error(path, OBJECT, value)
        self.d = value

    def error(self, path: str, check: _Check, value: Any) -> ModelDescriptionError:
        what = f"one of {', '.join(task_kinds())}" if check is KIND else check.what  # kinds may be added
        return ModelDescriptionError(f"{self.source}: FaceAttr description field '{path}' should be "
                                     f"{what}, got {_show(value)}")

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, check: _Check, default: Any = _MISSING) -> Any:
        """The field converted by ``check``; an absent optional field (or null) gives ``default``."""
        if key not in self.d and default is _MISSING:
            raise ModelDescriptionError(f"{self.source}: the FaceAttr description lacks '{self.where(key)}'")
        value = self.d.get(key)
        if value is None and default is not _MISSING:
            return default
        if not check.ok(value):
            raise self.error(self.where(key), check, value)
        return check.convert(value)

    def child(self, key: str) -> "_Fields":
        self.get(key, OBJECT)
        return _Fields(self.d[key], self.where(key), self.source)


def _parse_task(t: Any, i: int, source: str) -> TaskSpec:
    """One task: the fields its kind needs must be there, every field present is checked,
    and the spec keeps the fields its kind uses (``engine.tasks``)."""
    f = _Fields(t, f"tasks[{i}]", source)
    name = f.get("name", NAME)
    kind = task_kind(f.get("kind", KIND))

    def field(key: str, check: _Check, empty: Any) -> Any:
        value = f.get(key, check, _MISSING if key in kind.needs else empty)
        return value if key in kind.keeps else empty

    return TaskSpec(name=name, kind=kind.name, unit=field("unit", STRING, ""),
                    labels=field("labels", _labels_check(kind), ()), range=field("range", RANGE, None),
                    bins=field("bins", BINS, ()), points=field("points", POSITIVE_INT, 0))


def _parse(d: Any, source: str) -> ModelSpec:
    if not isinstance(d, dict):
        raise ModelDescriptionError(f"{source}: the FaceAttr description is not a JSON object, "
                                    f"it is {_show(d)}")
    top = _Fields(d, "", source)
    fmt = top.get("format", STRING)
    if fmt != FORMAT:
        raise ModelDescriptionError(f"{source}: description format '{fmt}' is not supported (expected '{FORMAT}')")
    name = top.get("name", NAME)
    tasks = tuple(_parse_task(t, i, source) for i, t in enumerate(top.get("tasks", TASK_LIST)))
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ModelDescriptionError(f"{source}: task names repeat: {names}")
    inp = top.child("input")
    norm = inp.child("normalisation")
    normalisation = Normalisation(mean=norm.get("mean", MEAN), scale=norm.get("scale", POSITIVE),
                                  inside_graph=norm.get("inside_graph", BOOL, True))
    input_spec = InputSpec(
        name=inp.get("name", NAME),
        dtype=inp.get("dtype", _literal("uint8", "chips are fed as bytes")),
        layout=inp.get("layout", _literal("NHWC", "batch, height, width, channels")),
        color=inp.get("color", _literal("RGB", "the channel order FaceAttr feeds")),
        size=inp.get("size", POSITIVE_INT),
        normalisation=normalisation,
    )
    al = top.child("alignment")
    alignment = AlignmentSpec(
        landmarks=al.get("landmarks", _literal("dlib-5", "the only alignment FaceAttr does")),
        chip_size=al.get("chip_size", POSITIVE_INT),
        padding=al.get("padding", NON_NEGATIVE),
    )
    return ModelSpec(
        name=name, tasks=tasks, backbone=top.get("backbone", STRING),
        input=input_spec, alignment=alignment,
        training=top.get("training", OBJECT, {}), metrics=top.get("metrics", OBJECT, {}), format=fmt,
    )
