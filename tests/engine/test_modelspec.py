"""engine/modelspec.py: every field of a model's JSON description is checked and named when wrong."""
from __future__ import annotations

import copy
import json
import re

import pytest

from engine.modelspec import ModelDescriptionError, ModelSpec
from tests.conftest import tiny_model_spec

SOURCE = "models/test.onnx"
# Task indices in the base description: 0 gender (binary), 1 race (multiclass),
# 2 age (regression), 3 age_bins (expectation), 4 eyes (landmarks).
BASE = json.loads(tiny_model_spec(landmarks=True).to_json())


def _steps(path: str) -> list:
    """'tasks[2].range' -> ['tasks', 2, 'range']."""
    out: list = []
    for part in path.split("."):
        m = re.fullmatch(r"(\w+)((?:\[\d+\])*)", part)
        out.append(m.group(1))
        out += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return out


def _with(path: str, value=None, delete: bool = False) -> str:
    """The base description as JSON text with the field at ``path`` set to ``value`` (or deleted)."""
    d = copy.deepcopy(BASE)
    *parents, last = _steps(path)
    target = d
    for step in parents:
        target = target[step]
    if delete:
        del target[last]
    else:
        target[last] = value
    return json.dumps(d)


def _leaf_paths(d, prefix: str = "") -> set[str]:
    """Every field path of a description; training/metrics are free-form objects (one field each)."""
    paths = set()
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("training", "metrics"):
            paths |= _leaf_paths(value, path + ".")
        elif key == "tasks":
            paths.add(path)
            for i, task in enumerate(value):
                paths.add(f"tasks[{i}]")
                paths |= _leaf_paths(task, f"tasks[{i}].")
        else:
            paths.add(path)
    return paths


# (field path, malformed value, what the message must say it should be)
MALFORMED = [
    ("format", 1, "a string"),
    ("name", 3, "a non-empty string"),
    ("name", "", "a non-empty string"),
    ("backbone", None, "a string"),
    ("tasks", {}, "a non-empty list of tasks"),
    ("tasks", [], "a non-empty list of tasks"),
    ("tasks[2]", 5, "an object"),
    ("tasks[0]", ["gender"], "an object"),
    ("tasks[0].name", 7, "a non-empty string"),
    ("tasks[0].kind", "ternary", "one of binary, multiclass, regression, expectation, landmarks"),
    ("tasks[0].kind", ["binary"], "one of binary"),
    ("tasks[0].labels", [1, 2], "a list of 2 strings"),
    ("tasks[0].labels", ["male", "female", "other"], "a list of 2 strings"),
    ("tasks[1].labels", "white", "a list of at least 2 strings"),
    ("tasks[1].labels", ["white"], "a list of at least 2 strings"),
    ("tasks[2].unit", 3, "a string"),
    ("tasks[2].range", 5, "a list of 2 numbers, low then high"),
    ("tasks[2].range", ["21", "60"], "a list of 2 numbers, low then high"),
    ("tasks[2].range", [60, 21], "a list of 2 numbers, low then high"),
    ("tasks[2].range", [21, 40, 60], "a list of 2 numbers, low then high"),
    ("tasks[3].bins", ["a"], "a list of at least 2 numbers"),
    ("tasks[3].bins", [5], "a list of at least 2 numbers"),
    ("tasks[3].bins", [5, True], "a list of at least 2 numbers"),
    ("tasks[4].points", "5", "a whole number above 0"),
    ("tasks[4].points", True, "a whole number above 0"),
    ("tasks[4].points", 0, "a whole number above 0"),
    ("tasks[4].points", 2.5, "a whole number above 0"),
    ("tasks[0].range", 5, "a list of 2 numbers"),  # a field the kind does not use is still checked
    ("input", "chips", "an object"),
    ("input.name", 1, "a non-empty string"),
    ("input.dtype", "float32", '"uint8"'),
    ("input.layout", "NCHW", '"NHWC"'),
    ("input.color", "BGR", '"RGB"'),
    ("input.size", 150.0, "a whole number above 0"),
    ("input.size", -1, "a whole number above 0"),
    ("input.normalisation", [], "an object"),
    ("input.normalisation.mean", "x", "a list of 3 numbers"),
    ("input.normalisation.mean", [1, 2], "a list of 3 numbers"),
    ("input.normalisation.scale", "1/256", "a number above 0"),
    ("input.normalisation.scale", 0, "a number above 0"),
    ("input.normalisation.inside_graph", "yes", "true or false"),
    ("alignment", None, "an object"),
    ("alignment.landmarks", "dlib-68", '"dlib-5"'),
    ("alignment.chip_size", "150", "a whole number above 0"),
    ("alignment.padding", -0.1, "a number of 0 or more"),
    ("training", [1], "an object"),
    ("metrics", "good", "an object"),
]


@pytest.mark.parametrize("path, value, should", MALFORMED, ids=[f"{p}={json.dumps(v)}" for p, v, _ in MALFORMED])
def test_malformed_field_is_refused_naming_source_field_and_what_it_should_be(path, value, should):
    with pytest.raises(ModelDescriptionError) as e:
        ModelSpec.from_json(_with(path, value), source=SOURCE)
    msg = str(e.value)
    assert msg.startswith(f"{SOURCE}: FaceAttr description field '{path}' should be {should}")
    assert msg.endswith(f", got {json.dumps(value)}")
    assert "\n" not in msg


def test_every_field_of_the_description_has_a_malformed_case():
    def general(path: str) -> str:
        return re.sub(r"tasks\[\d+\]", "tasks[i]", path)

    missing = {general(p) for p in _leaf_paths(BASE)} - {general(p) for p, _, _ in MALFORMED}
    assert not missing, f"fields without a malformed case: {sorted(missing)}"


@pytest.mark.parametrize("path", ["format", "name", "tasks", "backbone", "tasks[0].labels", "tasks[1].labels",
                                  "tasks[3].bins", "tasks[4].points", "tasks[2].kind", "input.size",
                                  "input.normalisation.mean", "input.normalisation.scale", "alignment.padding"])
def test_missing_required_field_is_refused_naming_its_path(path):
    with pytest.raises(ModelDescriptionError) as e:
        ModelSpec.from_json(_with(path, delete=True), source=SOURCE)
    assert str(e.value) == f"{SOURCE}: the FaceAttr description lacks '{path}'"


@pytest.mark.parametrize("path, attribute, default", [
    ("tasks[2].range", lambda s: s.tasks[2].range, None),
    ("tasks[2].unit", lambda s: s.tasks[2].unit, ""),
    ("input.normalisation.inside_graph", lambda s: s.input.normalisation.inside_graph, True),
    ("training", lambda s: s.training, {}),
    ("metrics", lambda s: s.metrics, {}),
])
def test_optional_field_absent_or_null_takes_its_default(path, attribute, default):
    assert attribute(ModelSpec.from_json(_with(path, delete=True))) == default
    assert attribute(ModelSpec.from_json(_with(path, None))) == default


def test_valid_descriptions_round_trip_unchanged():
    for spec in (tiny_model_spec(), tiny_model_spec(spread=True, landmarks=True)):
        assert ModelSpec.from_json(spec.to_json()) == spec
    parsed = ModelSpec.from_json(json.dumps(BASE))
    assert parsed.task("age").range == (21.0, 60.0) and parsed.task("eyes").points == 5
    assert parsed.input.normalisation.mean == (122.782, 117.001, 104.298)


def test_unsupported_format_repeated_task_names_and_non_object_are_refused():
    with pytest.raises(ModelDescriptionError, match=r"description format 'faceattr-model/2' is not supported"):
        ModelSpec.from_json(_with("format", "faceattr-model/2"), source=SOURCE)
    with pytest.raises(ModelDescriptionError, match=r"task names repeat: \['gender', 'gender'"):
        ModelSpec.from_json(_with("tasks[1].name", "gender"), source=SOURCE)
    with pytest.raises(ModelDescriptionError, match=r"^models/test\.onnx: the FaceAttr description is not a JSON "
                                                    r"object, it is \[1, 2\]$"):
        ModelSpec.from_json("[1, 2]", source=SOURCE)
    with pytest.raises(ModelDescriptionError, match="not valid JSON"):
        ModelSpec.from_json("{", source=SOURCE)


def test_long_malformed_value_is_cut_short_in_the_message():
    with pytest.raises(ModelDescriptionError) as e:
        ModelSpec.from_json(_with("tasks[3].bins", ["x"] * 100), source=SOURCE)
    assert str(e.value).endswith('...') and len(str(e.value)) < 200


@pytest.mark.parametrize("value", [10 ** 400, float("nan"), float("inf")], ids=["huge-int", "NaN", "Infinity"])
def test_numbers_beyond_float_range_or_not_finite_are_refused(value):
    with pytest.raises(ModelDescriptionError, match=r"field 'alignment\.padding' should be a number of 0 or more"):
        ModelSpec.from_json(_with("alignment.padding", value), source=SOURCE)
