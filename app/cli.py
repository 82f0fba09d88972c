"""The command line: ``annotate`` files in a batch, and ``info`` about this installation.

Neither imports Qt. Every failure the user can cause ends as one line
``faceattr: error: <input>: <reason>`` and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
from pathlib import Path
from typing import TextIO

from app.errors import PROG, error_line, error_sentence
from engine.annotate import AnnotateSummary, annotate_file
from engine.assets import default_model_path
from engine.detect import DEFAULT_MIN_FACE, DETECTOR_TITLES, DETECTORS
from engine.model import BACKENDS
from engine.outdir import FolderInUseError, OutputFolderLock, unique_names
from engine.pipeline import Pipeline, PipelineConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal, as shells report
EXIT_STATUS_HELP = """exit status:
  0    every input annotated
  1    some input failed (named above the summary; its partial outputs are kept as *.part.*)
  2    usage error (bad option), or the output folder is in use by another run
  130  interrupted by Ctrl+C: the current input's outputs are finished (playable video,
       whole lines) and kept as *.part.*; with --jobs / --cluster a re-run goes on from there
  143  interrupted by SIGTERM, the same way"""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model_options(parser: argparse.ArgumentParser, remembered: bool = False) -> None:
    """--model and --backend; ``remembered``: the GUI's defaults are its saved settings."""
    default = "the last one used, else " if remembered else ""
    parser.add_argument("--model", type=Path, default=None,
                        help=f"FaceAttr ONNX model (default: {default}{default_model_path()})")
    parser.add_argument("--backend", choices=BACKENDS, default=None if remembered else "auto",
                        help=f"ONNX Runtime back-end: auto tries TensorRT, CUDA, then CPU (default: {default}auto)")
    parser.add_argument("--precision", choices=("auto", "int8", "fp32"), default="auto",
                        help="network precision: int8 runs the model's <name>.int8.onnx sibling, fp32 the file "
                             "itself; auto uses int8 on the CPU when the sibling exists (default: auto)")


def min_face_px(text: str) -> int:
    value = int(text)
    if value < 8:
        raise argparse.ArgumentTypeError(f"must be at least 8 pixels, got {value}")
    return value


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    titles = ", ".join(f"{k} ({v})" for k, v in DETECTOR_TITLES.items())
    parser.add_argument("--detector", choices=DETECTORS, default=PipelineConfig.detector,
                        help=f"face detector: {titles} (default: {PipelineConfig.detector})")
    parser.add_argument("--detect-every", type=positive_int, default=1, metavar="K",
                        help="detect on every K-th frame and track in between (default: 1)")
    parser.add_argument("--min-face", type=min_face_px, default=DEFAULT_MIN_FACE, metavar="PX",
                        help="smallest face to find, in pixels of the input; smaller finds more "
                             f"and costs more (default: {DEFAULT_MIN_FACE})")


# -- annotate -------------------------------------------------------------------------------

def annotate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} annotate", epilog=EXIT_STATUS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Annotate videos, images or folders of images: an annotated video (or image) "
                    "per input, and per-face records with --jsonl / --csv. Each image is its own "
                    "scene (no tracking across photos); outputs are named after the input's whole "
                    "file name (x.mp4 -> x.mp4.annotated.mp4, x.mp4.jsonl).")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video file, image file or folder of images")
    p.add_argument("-o", "--out", dest="out_dir", type=Path, required=True, metavar="OUTDIR",
                   help="folder for the outputs (created if needed)")
    p.add_argument("--jsonl", action="store_true", help="write <name>.jsonl: one JSON record per face and frame")
    p.add_argument("--csv", action="store_true", help="write <name>.csv: the same records as CSV")
    p.add_argument("--no-video", action="store_true", help="do not write the annotated video / images")
    add_model_options(p)
    add_detector_options(p)
    batch = p.add_argument_group(
        "batch mode (with --jobs or --cluster)",
        "OUTDIR/manifest.jsonl gets a line per input as it finishes; a re-run skips inputs done\n"
        "with the same size and mtime and retries failed ones. At the end the JSONL records\n"
        "(--jsonl) are merged into OUTDIR/records.csv and records.parquet (with pyarrow).")
    batch.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                       help="annotate N files at once, in N worker processes")
    batch.add_argument("--cluster", default=None, metavar="ray|auto|ray://HOST:PORT",
                       help="annotate on Ray: 'ray' starts a local cluster, 'auto' joins the one "
                            "started with 'ray start', ray://HOST:10001 a remote one (needs the extra: "
                            "pip install -e '.[cluster]')")
    batch.add_argument("--force", action="store_true", help="redo every input, even those done before")
    return p


def _config(args) -> PipelineConfig:
    return PipelineConfig(model_path=args.model or default_model_path(), backend=args.backend,
                          detector=args.detector, detect_every=args.detect_every, min_face=args.min_face,
                          precision=args.precision)


class _ProgressBar:
    """A tqdm bar for one file, opened at its first frame (a file that fails to open shows none)."""

    def __init__(self, name: str, stream: TextIO) -> None:
        self.name = name
        self.stream = stream
        self.bar = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(desc=self.name, unit="frame", file=self.stream, total=total, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl+C's KeyboardInterrupt."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (kill, timeout, docker stop) ends the run the way Ctrl+C does."""
    def handler(signum, frame):
        _signals.append(signum)
        raise Interrupted()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def annotate_main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = annotate_parser().parse_args(argv)
    if args.no_video and not (args.jsonl or args.csv):
        print(error_line("nothing to write: --no-video without --jsonl or --csv"), file=err)
        return EXIT_USAGE
    if args.cluster is not None and not (args.cluster in ("ray", "auto") or args.cluster.startswith("ray://")):
        print(error_line(f"--cluster {args.cluster}: expected ray, auto or ray://HOST:PORT"), file=err)
        return EXIT_USAGE
    if args.cluster is not None and args.jobs is not None:
        print(error_line("--jobs and --cluster: choose one (a cluster runs one worker per CPU)"), file=err)
        return EXIT_USAGE
    _signals.clear()
    lock = OutputFolderLock(args.out_dir)
    try:
        lock.acquire()
    except FolderInUseError as e:
        print(error_line(str(e)), file=err)
        return EXIT_USAGE
    except OSError as e:
        print(error_line(f"{args.out_dir}: cannot write the output folder ({(e.strerror or str(e)).lower()})"),
              file=err)
        return EXIT_FAILED
    try:
        with _sigterm_as_interrupt():
            return _annotate_all(args, out, err)
    finally:
        lock.release()


def _annotate_all(args, out: TextIO, err: TextIO) -> int:
    config = _config(args)
    try:
        pipeline = Pipeline.create(config)  # one model for all files
    except Exception as e:  # noqa: BLE001 - one line, no traceback
        print(error_line(e, str(config.model_path)), file=err)
        return EXIT_FAILED
    for note in pipeline.notes:
        print(f"{PROG}: note: {note}", file=err)
    print(f"{PROG}: model {pipeline.spec.name} on {pipeline.provider}", file=err)
    if args.jobs is not None or args.cluster is not None:
        return _annotate_batch(args, config, pipeline, out, err)

    summaries: list[AnnotateSummary] = []
    interrupted: AnnotateSummary | None = None
    for text, name in zip(args.inputs, unique_names(args.inputs)):
        path = Path(text)
        bar = _ProgressBar(printable(path.name), err)
        try:
            summary = annotate_file(path, args.out_dir, pipeline, jsonl=args.jsonl, csv=args.csv,
                                    video=not args.no_video, progress=bar, name=name)
        except KeyboardInterrupt:  # before or after the file's own handling: nothing open
            summary = AnnotateSummary(path, interrupted=True)
        except Exception as e:  # noqa: BLE001 - one bad file does not stop the others
            summary = AnnotateSummary(path, error=error_sentence(e, str(path)))
        finally:
            bar.close()
        if summary.error is None and summary.end_reason:  # a truncated input: kept, but not a success
            summary = dataclasses.replace(summary, error=summary.end_reason)
        for warning in summary.warnings:
            print(f"{PROG}: warning: {printable(warning)}", file=err)
        if summary.error:
            print(error_line(printable(summary.error), printable(str(path))), file=err)
        summaries.append(summary)
        if summary.interrupted:
            interrupted = summary
            break
    print(summary_table(summaries), file=out)
    if interrupted is not None:
        how = "SIGTERM" if _last_signal() == signal.SIGTERM else "Ctrl+C"
        kept = ", ".join(printable(str(p)) for p in interrupted.outputs)
        print(error_line(f"interrupted by {how} in {printable(str(interrupted.input))}"
                         + (f"; partial outputs kept: {kept}" if kept else "")), file=err)
        return EXIT_INTERRUPTED[_last_signal()]
    return EXIT_OK if all(s.ok for s in summaries) else EXIT_FAILED


def _annotate_batch(args, config: PipelineConfig, pipeline: Pipeline, out: TextIO, err: TextIO) -> int:
    """--jobs / --cluster: skip what the manifest says is done, run the rest through
    engine.batch.annotate_one (here, in worker processes, or on Ray), record each file in the
    manifest as it finishes, then merge the records and print the summary."""
    from tqdm import tqdm

    from engine.batch import FileResult, FileTask, Manifest, annotate_one, merge_records, result_from_entry, run_pool

    out_dir = args.out_dir.absolute()
    tasks = [FileTask(str(Path(text).absolute()), str(out_dir), name, config, args.jsonl, args.csv,
                      not args.no_video) for text, name in zip(args.inputs, unique_names(args.inputs))]
    manifest = Manifest(out_dir)
    todo, skipped = manifest.plan(tasks, force=args.force)
    results = {e["path"]: result_from_entry(e, e["path"]) for e in skipped}
    if skipped:
        print(f"{PROG}: {len(skipped)} of {len(tasks)} input(s) already done in {out_dir} (manifest.jsonl); "
              "skipped (--force redoes them)", file=err)
    files = tqdm(total=len(tasks), initial=len(skipped), desc="files", unit="file", file=err, dynamic_ncols=True)
    frames_done = [0]

    def on_frames(count: int) -> None:  # one bar (error lines stay whole): files, frames after it
        frames_done[0] += count
        files.set_postfix_str(f"{frames_done[0]} frames", refresh=True)

    def on_result(result) -> None:
        results[result.input] = result
        if result.status != "interrupted":
            manifest.append(result)
            files.update(1)
        if args.cluster is not None:  # actors report frames per file
            on_frames(result.frames)
        for warning in result.warnings:
            files.write(f"{PROG}: warning: {printable(warning)}", file=err)
        if result.error:
            files.write(error_line(printable(result.error), printable(result.input)), file=err)

    started = False
    try:
        if args.cluster is not None:
            from app.cluster import ClusterError, connect, run_on_ray

            try:
                started = connect(args.cluster) if todo else False
                interrupted = run_on_ray(todo, config, on_result)
            except ClusterError as e:
                files.close()
                print(error_line(str(e)), file=err)
                return EXIT_FAILED
        elif args.jobs > 1 and len(todo) > 1:
            interrupted = run_pool(todo, min(args.jobs, len(todo)), config, on_result, on_frames)
        else:
            interrupted = False
            for task in todo:
                last = [0]

                def progress(done, total, last=last):
                    on_frames(done - last[0])
                    last[0] = done

                try:
                    on_result(annotate_one(task, pipeline, progress))
                except KeyboardInterrupt:
                    on_result(FileResult(task.input, task.name, "interrupted"))
                if results[task.input].status == "interrupted":
                    interrupted = True
                    break
    finally:
        files.close()
        if started:
            from app.cluster import import_ray

            import_ray().shutdown()
    ordered = [results[t.input] for t in tasks if t.input in results]
    merged = {}
    if args.jsonl and not interrupted:
        try:
            merged = merge_records(out_dir, [r.outputs for r in ordered if r.ok], pipeline.spec)
        except OSError as e:
            print(error_line(f"{out_dir / 'records.csv'}: cannot write the merged records ({e.strerror or e})"),
                  file=err)
            return EXIT_FAILED
        if "parquet" not in merged:  # pyarrow is in the cluster extra, not a core dependency
            print(f"{PROG}: note: records.parquet needs pyarrow: pip install -e '.[cluster]'", file=err)
    if not args.jsonl:
        print(f"{PROG}: note: records.csv / records.parquet are merged from the JSONL records: add --jsonl",
              file=err)
    print(summary_table([_summary(r) for r in ordered]), file=out)
    if merged:
        print("records: " + ", ".join(str(p) for p in merged.values()), file=out)
    if interrupted:
        how = "SIGTERM" if _last_signal() == signal.SIGTERM else "Ctrl+C"
        names = ", ".join(printable(r.input) for r in ordered if r.status == "interrupted")
        print(error_line(f"interrupted by {how} in {names}; a re-run goes on where this one stopped"), file=err)
        return EXIT_INTERRUPTED[_last_signal()]
    return EXIT_OK if all(r.ok for r in ordered) else EXIT_FAILED


def _summary(result) -> AnnotateSummary:
    return AnnotateSummary(Path(result.input), result.frames, result.faces, result.seconds,
                           [Path(p) for p in result.outputs], result.error,
                           interrupted=result.status == "interrupted")


_signals: list[int] = []


def _last_signal() -> int:
    """Which signal interrupted the run: SIGTERM when our handler saw one, else SIGINT."""
    return _signals[-1] if _signals else signal.SIGINT


def printable(text: str) -> str:
    """``text`` on one line: control characters (a newline in a file name) shown escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def summary_table(summaries: list[AnnotateSummary]) -> str:
    """file | frames | faces | fps | outputs (or the error), aligned in columns."""
    rows = [("file", "frames", "faces", "fps", "outputs / error")]
    for s in summaries:
        if s.ok:
            what = ", ".join(str(p) for p in s.outputs) or "(no outputs)"
        else:
            kept = f" (kept: {', '.join(str(p) for p in s.outputs)})" if s.outputs else ""
            what = f"FAILED: {s.error}{kept}"
        if s.interrupted:
            what = "INTERRUPTED" + (f" (kept: {', '.join(str(p) for p in s.outputs)})" if s.outputs else "")
        rows.append((printable(str(s.input)), str(s.frames), str(s.faces), f"{s.fps:.1f}", printable(what)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in (1, 2, 3)] + [r[4]]
        lines.append("  ".join(cells))
    ok = sum(s.ok for s in summaries)
    lines.append(f"{ok} of {len(summaries)} file(s) annotated" + ("" if ok == len(summaries) else
                                                                  f", {len(summaries) - ok} failed"))
    return "\n".join(lines)
