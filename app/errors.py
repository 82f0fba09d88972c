"""One sentence for any failure the user can cause: what the CLI prints and the GUI shows.

The engine's error types already carry a sentence naming the input and the reason
(SourceError, ModelLoadError, ModelDescriptionError, BackendUnavailableError, WriteError).
This module only avoids naming the input twice, turns ``OSError``'s "[Errno 2] ..." into
the same shape, and marks anything else as unexpected (still one line, no traceback).
"""
from __future__ import annotations

from engine.model import BackendUnavailableError, ModelLoadError
from engine.modelspec import ModelDescriptionError

PROG = "faceattr"

# What a user can cause: bad input, bad model, missing backend, unwritable output.
# SourceError is a RuntimeError, WriteError an OSError.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, ModelLoadError, ModelDescriptionError, BackendUnavailableError)


def _source_error() -> type[BaseException] | None:
    try:
        from engine.sources import SourceError
    except ImportError:  # pragma: no cover - the engine always has it
        return None
    return SourceError


def error_sentence(error: BaseException, subject: str | None = None) -> str:
    """``error`` as one line: '<subject>: <reason>' (the subject is not repeated)."""
    expected = EXPECTED_ERRORS + tuple(e for e in (_source_error(),) if e is not None)
    if isinstance(error, OSError) and error.strerror:
        where = error.filename if error.filename is not None else subject
        text = f"{where}: {error.strerror[0].lower()}{error.strerror[1:]}" if where else error.strerror
    else:
        text = " ".join(str(error).split()) or type(error).__name__
        if not isinstance(error, expected):
            text = f"unexpected {type(error).__name__}: {text}"
    if subject and not text.startswith(str(subject)):
        text = f"{subject}: {text}"
    return text


def error_line(error: BaseException | str, subject: str | None = None) -> str:
    """The CLI's error line: 'faceattr: error: <subject>: <reason>'."""
    text = error if isinstance(error, str) else error_sentence(error, subject)
    return f"{PROG}: error: {text}"
