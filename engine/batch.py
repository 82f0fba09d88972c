"""Batch annotation of many inputs: one per-file function, a resumable manifest, one table.

Every way of running a batch — in this process, ``--jobs N`` worker processes, or Ray
actors on a cluster (:mod:`app.cluster`) — hands a :class:`FileTask` to
:func:`annotate_one` and gets a :class:`FileResult` back. Both are plain picklable
dataclasses, so the same call crosses a process pool or a Ray object store unchanged,
and the outputs of a file are exactly those of a local run (:func:`engine.annotate.annotate_file`
writes them under ``*.part.*`` names and renames them when complete).

A worker that dies mid-file leaves that file's ``*.part.*`` outputs behind; the retry
(another process, a restarted actor, or the next run) removes them before it starts, so
no output or record is ever written twice. The driver alone writes
``OUTDIR/manifest.jsonl`` (:class:`Manifest`), one line per input as it finishes, and at
the end merges all records into ``records.parquet`` / ``records.csv`` (:func:`merge_records`).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from engine.annotate import annotate_file, output_paths
from engine.pipeline import Pipeline, PipelineConfig
from engine.records import task_columns
from engine.write import part_path

MANIFEST_NAME = "manifest.jsonl"
RECORDS_PARQUET = "records.parquet"
RECORDS_CSV = "records.csv"
# Test-only fault injection: while the file named here exists, the first worker to reach
# frame CRASH_FRAME of any input deletes it and exits at once (as a killed worker would).
CRASH_ONCE_ENV = "FACEATTR_TEST_CRASH_ONCE"
CRASH_FRAME = 3


@dataclass(frozen=True)
class FileTask:
    """One input to annotate: where it is, where its outputs go and how."""
    input: str
    out_dir: str
    name: str  # base name of its outputs (engine.outdir.unique_names)
    config: PipelineConfig
    jsonl: bool = True
    csv: bool = False
    video: bool = True


@dataclass(frozen=True)
class FileResult:
    input: str
    name: str
    status: str  # "done" | "failed" | "interrupted"
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    error: str | None = None
    outputs: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    worker: str = ""  # host:pid that ran it

    @property
    def ok(self) -> bool:
        return self.status == "done"


# -- the per-file function ---------------------------------------------------------------

_pipelines: dict[PipelineConfig, Pipeline] = {}  # per process: the model loads once


def worker_pipeline(config: PipelineConfig) -> Pipeline:
    """This process's pipeline for ``config``, loaded on first use."""
    if config not in _pipelines:
        _pipelines[config] = Pipeline.create(config)
    return _pipelines[config]


def part_outputs(task: FileTask) -> list[Path]:
    """The temporary names a (dead) attempt at ``task`` may have left."""
    paths = output_paths(task.input, task.out_dir, task.name)
    parts = [part_path(paths[k]) for k in ("video", "image", "jsonl", "csv")]
    return parts + [paths["images"].with_name(paths["images"].name + ".part")]


def clean_parts(task: FileTask) -> None:
    for p in part_outputs(task):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()


def _maybe_crash(frame: int) -> None:
    marker = os.environ.get(CRASH_ONCE_ENV)
    if marker and frame == CRASH_FRAME:
        try:
            os.unlink(marker)  # only one process wins the unlink
        except FileNotFoundError:
            return
        os._exit(70)


def annotate_one(task: FileTask, pipeline: Pipeline | None = None,
                 progress: Callable[[int, int | None], None] | None = None) -> FileResult:
    """Annotate ``task.input``: the one function every batch path calls.

    Leftover ``*.part.*`` outputs of an earlier attempt are removed first. Never raises for
    a problem with the input or an output (the result says ``failed`` and why); Ctrl+C ends
    the file as ``interrupted`` with its partial outputs kept as ``*.part.*``.
    """
    pipeline = pipeline or worker_pipeline(task.config)
    clean_parts(task)

    def on_frame(done: int, total: int | None) -> None:
        _maybe_crash(done)
        if progress is not None:
            progress(done, total)

    summary = annotate_file(task.input, task.out_dir, pipeline, jsonl=task.jsonl, csv=task.csv,
                            video=task.video, progress=on_frame, name=task.name)
    error = summary.error or summary.end_reason  # a truncated input is kept, but not a success
    status = "interrupted" if summary.interrupted else "failed" if error else "done"
    return FileResult(task.input, task.name, status, summary.frames, summary.faces, round(summary.seconds, 3),
                      error, tuple(str(p) for p in summary.outputs), tuple(summary.warnings), worker_id())


def worker_id() -> str:
    return f"{os.uname().nodename if hasattr(os, 'uname') else 'host'}:{os.getpid()}"


# -- worker processes (--jobs N) -----------------------------------------------------------

_busy = False  # inside annotate_one: SIGINT interrupts the file; between files it is ignored
_progress_queue = None


def _on_sigint(signum, frame) -> None:
    if _busy:
        raise KeyboardInterrupt


def init_worker(config: PipelineConfig, progress_queue=None) -> None:
    """Process-pool initializer: load the model once; SIGINT only interrupts a running file
    (the driver sends it on Ctrl+C / SIGTERM, so each file ends its outputs as ``*.part.*``)."""
    global _progress_queue
    signal.signal(signal.SIGINT, _on_sigint)
    _progress_queue = progress_queue
    worker_pipeline(config)


def run_in_worker(task: FileTask) -> FileResult:
    global _busy
    last = [0, time.monotonic()]

    def progress(done: int, total: int | None) -> None:
        now = time.monotonic()
        if _progress_queue is not None and now - last[1] > 0.2:
            _progress_queue.put(done - last[0])
            last[:] = [done, now]

    _busy = True
    try:
        result = annotate_one(task, progress=progress)
    except KeyboardInterrupt:
        result = FileResult(task.input, task.name, "interrupted", worker=worker_id())
    finally:
        _busy = False
    if _progress_queue is not None and result.frames > last[0]:
        _progress_queue.put(result.frames - last[0])
    return result


# -- the manifest --------------------------------------------------------------------------

def file_stamp(path: str | Path) -> tuple[int | None, float | None]:
    """(size, mtime) of an input; a folder's is its images' total size and newest mtime."""
    path = Path(path)
    try:
        st = path.stat()
        if not path.is_dir():
            return st.st_size, st.st_mtime
        stats = [p.stat() for p in path.iterdir() if p.is_file()]
        return sum(s.st_size for s in stats), max([st.st_mtime] + [s.st_mtime for s in stats])
    except OSError:
        return None, None


class Manifest:
    """``OUTDIR/manifest.jsonl``: one JSON line per input as it finishes (the last line of
    an input wins). A re-run skips an input whose last line says ``done`` with the same
    size and mtime and whose outputs are all still there; failed ones are retried."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / MANIFEST_NAME
        self._stamps: dict[str, tuple] = {}  # taken when planned: a file changed while it ran is redone

    def read(self) -> dict[str, dict]:
        entries: dict[str, dict] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return entries
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash: that input is redone
                continue
            if isinstance(entry, dict) and "path" in entry:
                entries[entry["path"]] = entry
        return entries

    def plan(self, tasks: Sequence[FileTask], force: bool = False) -> tuple[list[FileTask], list[dict]]:
        """(tasks to run, manifest entries of the inputs skipped as already done)."""
        self._stamps = {_key(t.input): file_stamp(t.input) for t in tasks}
        if force:
            return list(tasks), []
        entries = self.read()
        run, skipped = [], []
        for task in tasks:
            entry = entries.get(_key(task.input))
            size, mtime = self._stamps[_key(task.input)]
            if (entry and entry.get("status") == "done" and entry.get("name") == task.name
                    and entry.get("size") == size and entry.get("mtime") == mtime
                    and all(Path(p).exists() for p in entry.get("outputs", ()))):
                skipped.append(entry)
            else:
                run.append(task)
        return run, skipped

    def append(self, result: FileResult) -> dict:
        size, mtime = self._stamps.get(_key(result.input)) or file_stamp(result.input)
        entry = {"path": _key(result.input), "name": result.name, "size": size, "mtime": mtime,
                 "status": "done" if result.ok else "failed", "frames": result.frames, "faces": result.faces,
                 "seconds": result.seconds, "error": result.error or ("interrupted" if result.status == "interrupted"
                                                                        else None),
                 "outputs": list(result.outputs), "worker": result.worker}
        with open(self.path, "a", encoding="utf-8") as f:  # one write per line: whole lines only
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return entry


def _key(path: str) -> str:
    return str(Path(path).absolute())


# -- the merged table ----------------------------------------------------------------------

def csv_columns(spec) -> list[str]:
    """The per-file CSV's columns (engine.write.CsvWriter), in its order."""
    return ["source", "frame", "time_s", "track_id", "box_x0", "box_y0", "box_x1", "box_y1", "score",
            *task_columns(spec)]


def _records_of(outputs: Iterable[str]) -> list[dict]:
    records = []
    for p in outputs:
        if p.endswith(".jsonl") and not p.endswith(".part.jsonl"):
            with open(p, encoding="utf-8") as f:
                records += [json.loads(line) for line in f if line.strip()]
    return records


def flat_rows(records: list[dict], columns: list[str]) -> list[dict]:
    """Records with the box split into box_x0..box_y1, in ``columns`` order."""
    rows = []
    for r in records:
        row = dict(r)
        box = row.pop("box_xyxy", None) or [None] * 4
        row.update(zip(("box_x0", "box_y0", "box_x1", "box_y1"), box))
        rows.append({c: row.get(c) for c in columns})
    return rows


def merge_records(out_dir: str | Path, outputs_in_order: Sequence[Sequence[str]], spec) -> dict[str, Path]:
    """Merge the per-file JSONL records of the done inputs into ``records.csv`` and, with
    pyarrow installed, ``records.parquet`` (same columns; landmark points as JSON text in
    the CSV, lists in Parquet). Returns the paths written ("csv", "parquet")."""
    import csv

    out_dir = Path(out_dir)
    columns = csv_columns(spec)
    rows = flat_rows([r for outs in outputs_in_order for r in _records_of(outs)], columns)
    written = {}
    tmp = out_dir / (RECORDS_CSV + ".part")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else json.dumps(v) if isinstance(v, list) else v
                             for k, v in row.items()})
    os.replace(tmp, out_dir / RECORDS_CSV)
    written["csv"] = out_dir / RECORDS_CSV
    try:  # by name: the app's binary (PyInstaller) does not bundle the optional pyarrow
        pa = importlib.import_module("pyarrow")
        pq = importlib.import_module("pyarrow.parquet")
    except ImportError:
        return written
    table = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.null()) for c in columns})
    tmp = out_dir / (RECORDS_PARQUET + ".part")
    pq.write_table(table.select(columns), tmp)
    os.replace(tmp, out_dir / RECORDS_PARQUET)
    written["parquet"] = out_dir / RECORDS_PARQUET
    return written


POOL_RETRIES = 2  # a file whose worker process died is tried this many more times, in a new pool


def run_pool(tasks: Sequence[FileTask], jobs: int, config: PipelineConfig,
             on_result: Callable[[FileResult], None], on_frames: Callable[[int], None]) -> bool:
    """Run ``tasks`` on ``jobs`` worker processes (spawned: no forked model or threads), each
    loading the model once; ``on_result`` is called in this process as each file finishes.

    A worker process that dies breaks the whole pool; the files it had not finished go to
    a new pool (``annotate_one`` removes their dead attempts' ``*.part.*``), each at most
    POOL_RETRIES times, then fail with a sentence. Returns True when interrupted (Ctrl+C /
    SIGTERM raised here as KeyboardInterrupt): the files not started are dropped, and the
    running ones get SIGINT so their outputs end as ``*.part.*``; their results still come
    to ``on_result``.
    """
    import multiprocessing as mp
    import queue as queue_mod

    ctx = mp.get_context("spawn")
    frames_q = ctx.Queue()
    tries = {t.input: 0 for t in tasks}
    todo = list(tasks)
    interrupted = False

    def drain() -> None:
        with contextlib.suppress(queue_mod.Empty, OSError, ValueError):
            while True:
                on_frames(frames_q.get_nowait())

    try:
        while todo and not interrupted:
            todo, interrupted = _one_pool(todo, jobs, config, ctx, frames_q, drain, on_result, tries)
    finally:
        drain()
        frames_q.close()
    return interrupted


def _one_pool(tasks, jobs, config, ctx, frames_q, drain, on_result, tries) -> tuple[list[FileTask], bool]:
    """One pool over ``tasks``: (the tasks to run again in a new pool, interrupted)."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=ctx, initializer=init_worker,
                               initargs=(config, frames_q))
    futures = {pool.submit(run_in_worker, t): t for t in tasks}
    pending = set(futures)
    again: list[FileTask] = []
    interrupted = False
    try:
        while pending:
            try:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                drain()
                for fut in done:
                    task = futures[fut]
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        if tries[task.input] < POOL_RETRIES and not interrupted:
                            tries[task.input] += 1
                            again.append(task)
                            continue
                        result = FileResult(task.input, task.name, "failed",
                                            error=f"{task.input}: the worker process annotating it died "
                                                  f"({tries[task.input] + 1} tries)")
                    except Exception as e:  # noqa: BLE001 - one line naming the input
                        result = FileResult(task.input, task.name, "failed",
                                            error=f"{task.input}: {type(e).__name__}: {e}")
                    on_result(result)
            except KeyboardInterrupt:
                if interrupted:
                    continue
                interrupted = True
                again = []
                for fut in pending:
                    fut.cancel()
                for proc in list(getattr(pool, "_processes", {}).values()):  # no public handle
                    with contextlib.suppress(OSError):
                        os.kill(proc.pid, signal.SIGINT)
                pending = {f for f in pending if not f.cancelled()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return ([] if interrupted else again), interrupted


def result_from_entry(entry: dict, input_text: str) -> FileResult:
    """A skipped input's result, from its manifest line."""
    return FileResult(input_text, entry.get("name", ""), "done", entry.get("frames", 0), entry.get("faces", 0),
                      entry.get("seconds", 0.0), None, tuple(entry.get("outputs", ())), (), entry.get("worker", ""))


__all__ = ["FileTask", "FileResult", "annotate_one", "worker_pipeline", "clean_parts", "init_worker",
           "run_in_worker", "run_pool", "POOL_RETRIES", "Manifest", "merge_records", "csv_columns"]
