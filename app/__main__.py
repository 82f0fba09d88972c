"""``python -m app`` / ``faceattr``: the GUI, ``annotate``, ``info`` and ``--self-test``.

Qt is imported only for the GUI (and the self-test's paint check), so ``annotate`` and
``info`` run on machines without a display.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# OpenCV and FFmpeg print their own warnings (a probe that fails, an encoder tried first);
# the app reports problems itself, in one sentence. Set before cv2 is imported.
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

from app import startup_probe
from app.errors import PROG, error_line

USAGE_MORE = f"""commands:
  {PROG} annotate INPUT... -o OUTDIR [--jsonl] [--csv] [--no-video] [--backend ...]
  {PROG} info [--model PATH] [--backend ...]
  {PROG} --self-test [--model PATH]
run '{PROG} annotate --help' for the details of a command."""


def gui_parser() -> argparse.ArgumentParser:
    from app.cli import add_model_options, min_face_px, positive_int
    from app.settings import MIN_FACE_RANGE, AppSettings
    from engine.detect import DETECTORS

    def pixels(text: str) -> int:
        value = min_face_px(text)
        if value > MIN_FACE_RANGE[1]:
            raise argparse.ArgumentTypeError(f"must be at most {MIN_FACE_RANGE[1]} pixels, got {value}")
        return value

    p = argparse.ArgumentParser(prog=PROG, epilog=USAGE_MORE, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Real-time face attributes: opens the window (no command), "
                                            "or runs one of the commands below.")
    p.add_argument("--self-test", action="store_true",
                   help="run the pipeline headless on the bundled sample and exit 0 on success")
    p.add_argument("--frames", type=positive_int, default=60, help="frames the self-test runs (default: 60)")
    p.add_argument("--source", help="what to play: a video or image path, a folder of images (each on its "
                                    "own), 'sample', or 'camera:NAME'; one that cannot be opened exits 2")
    p.add_argument("--detector", choices=DETECTORS, default=None, help=f"face detector (default: remembered, {AppSettings.detector})")
    p.add_argument("--min-face", type=pixels, default=None, metavar="PX",
                   help="smallest face to find, in pixels of the video; smaller finds more and costs more "
                        f"(default: remembered, {AppSettings.min_face})")
    add_model_options(p, remembered=True)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``faceattr``); returns the exit status."""
    startup_probe.mark("main")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "annotate":
            from app.cli import annotate_main
            return annotate_main(argv[1:])
        if argv and argv[0] == "info":
            from app.info import info_main
            return info_main(argv[1:])
        args = gui_parser().parse_args(argv)
        if args.version:
            from app.info import versions
            print(f"{PROG} {versions()['faceattr']}")
            return 0
        if args.self_test:
            from app.selftest import self_test_main
            return self_test_main(args.model, args.backend or "auto", args.frames,
                                  Path(args.source) if args.source else None)
        from app.gui import run_gui
        return run_gui(args.model, args.backend, args.detector, args.source, args.min_face)
    except KeyboardInterrupt:
        print(error_line("interrupted"), file=sys.stderr)
        return 130
    except BrokenPipeError:  # `faceattr info | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # keep exit's flush quiet
        return 0


if __name__ == "__main__":
    sys.exit(main())
