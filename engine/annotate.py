"""Batch annotation of one input: the annotated video (or images) plus JSONL / CSV records.

:func:`annotate_file` never raises for a problem with the input or an output (missing,
not a video, truncated, unreadable images, a full disk): it returns an
:class:`AnnotateSummary` whose ``error`` says what went wrong, so a batch goes on with
the next input. Outputs get their final names only when they are complete
(:mod:`engine.write`); after a write error or an interruption what was written is kept
under the temporary names and listed in ``outputs``. Ctrl+C (and SIGTERM, which the CLI
turns into the same) ends the input with ``interrupted`` set.

Output names carry the input's whole file name, so ``x.jpg`` and ``x.mp4`` never share
one: ``x.mp4.annotated.mp4``, ``x.mp4.jsonl``, ``x.jpg.annotated.jpg``, a folder
``photos`` gives ``photos.annotated/`` and ``photos.jsonl``. Pass ``name`` to choose
another base (the CLI does for two inputs of the same name in different folders).

Pipelined (the default): the input's frames are detected ahead on detector threads
(``Pipeline.run(pipelined=True)``, ``engine/detect_ahead.py``) and rendered, encoded and
written on a writer thread (:func:`render_and_write_behind`), while the calling thread
aligns, runs the network, tracks and smooths: the same outputs as ``pipelined=False``,
record for record, in less time on more than one core.
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from engine.modelspec import ModelSpec
from engine.pipeline import EndReason, Pipeline, PipelineConfig
from engine.render import Renderer
from engine.sources import ImageSource, SourceError, open_source
from engine.types import Faces, FrameResult
from engine.write import CsvWriter, ImageWriter, JsonlWriter, VideoWriter, WriteError, image_suffix

ProgressFn = Callable[[int, "int | None"], None]
WRITE_QUEUE_FRAMES = 4  # results waiting for the writer thread (bounded memory)
_POLL_S = 0.05


@dataclass(frozen=True)
class AnnotateSummary:
    input: Path
    frames: int = 0
    faces: int = 0  # face records (one per face per frame)
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None  # why the input could not be (fully) annotated
    end_reason: str | None = None  # why the input ended early (truncated file), if it did
    warnings: tuple[str, ...] = ()  # skipped over (unreadable images in a folder)
    unreadable: tuple[Path, ...] = ()  # images of a folder that could not be read
    interrupted: bool = False  # Ctrl+C / SIGTERM stopped it; outputs are the partial ones

    @property
    def ok(self) -> bool:
        return self.error is None and not self.interrupted

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def output_paths(input_path: str | Path, out_dir: str | Path, name: str | None = None) -> dict[str, Path]:
    """Where each output of ``input_path`` goes, named after its whole file name (or ``name``)."""
    input_path = Path(input_path)
    base = name or input_path.name or "input"
    out_dir = Path(out_dir)
    return {"video": out_dir / f"{base}.annotated.mp4",
            "image": out_dir / f"{base}.annotated{image_suffix(input_path)}",
            "images": out_dir / f"{base}.annotated", "jsonl": out_dir / f"{base}.jsonl",
            "csv": out_dir / f"{base}.csv"}


RenderFn = Callable[[np.ndarray, Faces], np.ndarray]  # a Renderer, or what calls the one in effect
FrameFn = Callable[[FrameResult, "np.ndarray | None"], None]


def render_and_write(results: Iterable[FrameResult], sinks: Sequence, renderer: RenderFn | None,
                     on_frame: FrameFn | None = None, show: bool = False) -> None:
    """The one render-then-write loop (annotate, the window's worker, the self-test).

    Each result is rendered once, when a sink is ``visual`` (wants the drawn frame) or the
    caller shows it (``show``), handed to every sink (``sink.write(result, image_bgr)``),
    then to ``on_frame(result, image_bgr)`` (``image_bgr`` None when nothing was drawn).
    """
    draw = renderer is not None and (show or any(s.visual for s in sinks))
    for result in results:
        image_bgr = renderer(result.frame.image_bgr, result.faces) if draw else None
        for sink in sinks:
            sink.write(result, image_bgr)
        if on_frame is not None:
            on_frame(result, image_bgr)


def render_and_write_behind(results: Iterable[FrameResult], sinks: Sequence, renderer: RenderFn | None,
                            on_frame: FrameFn | None = None, depth: int = WRITE_QUEUE_FRAMES) -> None:
    """:func:`render_and_write` on a writer thread ("faceattr-write") while this thread
    iterates ``results`` (inference): the same calls in the same order.

    Every result taken from ``results`` is written before this returns or raises (an
    error or Ctrl+C in this thread still leaves the outputs a sequential loop would;
    a second Ctrl+C while waiting drops what is queued). An error in the writer thread
    (a full disk) stops the iteration and is raised here. The thread is always joined.
    """
    pending: queue.Queue = queue.Queue(depth)
    done = object()
    failed: list[BaseException] = []
    drop = threading.Event()

    def queued() -> Iterable[FrameResult]:
        while True:
            item = pending.get()
            if item is done or drop.is_set():
                return
            yield item

    def write() -> None:
        try:
            render_and_write(queued(), sinks, renderer, on_frame)
        except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
            failed.append(e)
            while True:  # unblock the caller's puts until it sees the error
                if pending.get() is done:
                    return

    writer = threading.Thread(target=write, name="faceattr-write", daemon=True)
    writer.start()
    try:
        for result in results:
            while not failed:
                try:
                    pending.put(result, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue
            if failed:
                break
    finally:
        _finish_writer(writer, pending, done, drop)
    if failed:
        raise failed[0]


def _finish_writer(writer: threading.Thread, pending: queue.Queue, done: object, drop: threading.Event) -> None:
    """Tell the writer there is no more, wait for it to write what is queued; a Ctrl+C
    while waiting drops the queue (the writer stops after its frame) and waits again."""
    while writer.is_alive():
        try:
            try:
                pending.put(done, timeout=_POLL_S)
            except queue.Full:
                continue
            writer.join()
        except KeyboardInterrupt:
            drop.set()
            with contextlib.suppress(queue.Empty):
                while True:
                    pending.get_nowait()
            pending.put(done)
            writer.join()
            raise


def _open_sinks(source, input_path: Path, paths: dict[str, Path], spec: ModelSpec,
                video: bool, jsonl: bool, csv: bool) -> list:
    sinks: list = []
    try:
        if video:
            if isinstance(source, ImageSource):
                folder = input_path.is_dir()
                sinks.append(ImageWriter(paths["images"] if folder else paths["image"], folder))
            else:
                sinks.append(VideoWriter(paths["video"], source.fps, source.size_wh))
        if jsonl:
            sinks.append(JsonlWriter(paths["jsonl"], spec))
        if csv:
            sinks.append(CsvWriter(paths["csv"], spec))
    except BaseException:
        for sink in sinks:  # a later sink failed to open: the earlier ones leave nothing behind
            for p in sink.abort():
                if p.is_file():
                    p.unlink(missing_ok=True)
        raise
    return sinks


def _close_all(sinks: list) -> tuple[list[Path], str | None]:
    """Close each sink (final names); one that fails is reported and the rest still close."""
    outputs: list[Path] = []
    error = None
    for sink in sinks:
        try:
            outputs += sink.close()
        except WriteError as e:
            error = error or str(e)
            outputs += sink.abort()
    return outputs, error


def annotate_file(input_path: str | Path, out_dir: str | Path, config: PipelineConfig | Pipeline,
                  jsonl: bool = True, csv: bool = False, video: bool = True,
                  progress: ProgressFn | None = None, renderer: Renderer | None = None,
                  name: str | None = None, stop: threading.Event | None = None,
                  pipelined: bool = True) -> AnnotateSummary:
    """Annotate one video or image file (or a folder of images) into ``out_dir``.

    ``progress(done, total)`` is called after each frame (total None when unknown).
    ``stop`` set from another thread ends the input like Ctrl+C does (``interrupted``,
    outputs finished under their temporary names).
    A model that cannot be loaded from ``config`` raises (it is not a per-file problem).
    ``pipelined``: detection, inference and writing overlap on threads (see the module);
    False runs every stage in this thread, one frame after the other (same outputs).
    With ``pipelined``, ``progress`` is called from the writer thread.
    """
    t0 = time.perf_counter()
    input_path = Path(input_path)
    pipeline = config if isinstance(config, Pipeline) else Pipeline.create(config)
    renderer = renderer or Renderer()
    paths = output_paths(input_path, out_dir, name)
    try:
        source = open_source(input_path)
    except SourceError as e:
        return AnnotateSummary(input_path, seconds=time.perf_counter() - t0, error=str(e))

    sinks: list = []
    counts = {"frames": 0, "faces": 0}
    error = None
    interrupted = False
    outputs: list[Path] = []
    end_reason = None

    def on_frame(result: FrameResult, image_bgr: np.ndarray | None) -> None:
        counts["frames"] += 1
        counts["faces"] += len(result.faces)
        if progress is not None:
            progress(counts["frames"], source.frame_count)

    try:
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(f"{out_dir}: cannot create the output folder ({e.strerror or e})") from e
        sinks = _open_sinks(source, input_path, paths, pipeline.spec, video, jsonl, csv)
        run = pipeline.run(source, live=False, stop=stop, pipelined=pipelined)
        write = render_and_write_behind if pipelined else render_and_write
        with contextlib.closing(run):  # joins the capture (and detector) threads even if a sink fails
            write(run, sinks, renderer if video else None, on_frame)
        if run.outcome.reason is EndReason.STOPPED:
            raise KeyboardInterrupt  # stopped from outside: the same ending as Ctrl+C
        end_reason = run.outcome.detail if run.outcome.reason is EndReason.TRUNCATED else None
        outputs, error = _close_all(sinks)
        sinks = []  # closed: nothing left to abort
    except KeyboardInterrupt:
        interrupted = True
    except (SourceError, WriteError) as e:
        error = str(e)
    except OSError as e:
        error = f"{input_path}: {e.strerror or e}"
    finally:
        source.close()  # run() closes it too; this covers a failure before run started
    outputs += [p for s in sinks for p in s.abort()]  # sinks left open by an error or Ctrl+C
    unreadable = tuple(getattr(source, "unreadable", ()))
    if error is None and unreadable:
        total = len(getattr(source, "paths", ()))
        names = ", ".join(p.name for p in unreadable)
        error = f"{input_path}: {len(unreadable)} of {total} images could not be read ({names})"
    return AnnotateSummary(
        input_path, counts["frames"], counts["faces"], time.perf_counter() - t0, outputs, error,
        end_reason, tuple(source.warnings), unreadable, interrupted)
