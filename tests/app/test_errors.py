"""Failures become one sentence that names the input once."""
from __future__ import annotations

from app.errors import error_line, error_sentence
from engine.model import BackendUnavailableError
from engine.sources import SourceError


def test_an_engine_error_that_names_its_input_is_not_prefixed_twice():
    e = SourceError("/v/a.mp4: not a readable video")
    assert error_line(e, "/v/a.mp4") == "faceattr: error: /v/a.mp4: not a readable video"


def test_an_error_without_the_input_gets_it_as_subject():
    e = BackendUnavailableError("the CUDA backend was requested but ...")
    assert error_sentence(e, "m.onnx") == "m.onnx: the CUDA backend was requested but ..."


def test_os_errors_read_as_a_sentence_without_errno():
    e = FileNotFoundError(2, "No such file or directory", "/x/y.mp4")
    assert error_sentence(e) == "/x/y.mp4: no such file or directory"


def test_unexpected_errors_are_marked_and_stay_on_one_line():
    text = error_sentence(KeyError("frame\nindex"), "clip.mp4")
    assert text == "clip.mp4: unexpected KeyError: 'frame\\nindex'"
    assert "\n" not in error_sentence(RuntimeError("two\nlines"))
