"""Startup marks for ``benchmarks/startup.py`` ("app start to first labelled frame").

With ``FACEATTR_STARTUP_PROBE=PATH`` in the environment the app notes the wall-clock time
of a few moments (entering ``main``, the window shown, the first frame shown, the first
frame shown with labelled faces), writes them to PATH as JSON at the first labelled frame
and quits. The benchmark starts the clock before it launches the process, so the figures
include the interpreter, the imports, the model load and the first detection. Without the
variable every call here does nothing.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "FACEATTR_STARTUP_PROBE"
_PATH = os.environ.get(ENV)  # read once: enabled() is asked on every frame shown
_marks: dict[str, float] = {}


def enabled() -> bool:
    return bool(_PATH)


def mark(name: str) -> None:
    """Note when ``name`` first happened (later calls keep the first time)."""
    if enabled() and name not in _marks:
        _marks[name] = time.time()


def finish(**info) -> None:
    """Write the marks (and ``info``) to the probe file, whole or not at all."""
    path = Path(_PATH)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps({"marks": _marks, **info}))
    part.replace(path)
