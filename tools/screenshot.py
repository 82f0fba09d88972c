"""Take docs/screenshot.png: the real window (X11 platform, not offscreen) under Xvfb,
playing the bundled sample with the default model, paused on a frame with faces.

    python tools/screenshot.py [--out docs/screenshot.png] [--frame 100]

Needs Xvfb (Debian: xvfb libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0).
It starts its own Xvfb on a free display, uses a throw-away settings file (the user's are
never touched), and exits non-zero with one line when something is missing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZE = (1280, 760)


def _free_display() -> int:
    for n in range(90, 200):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise SystemExit("screenshot: no free X display number between 90 and 199")


def take(out: Path, frame: int) -> None:
    """Runs inside the Xvfb display: open the window, seek, grab it."""
    sys.path.insert(0, str(REPO_ROOT))
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from app.settings import AppSettings, open_qsettings

    app = QApplication([sys.argv[0]])
    window = MainWindow(open_qsettings(), AppSettings(backend="cpu", source="sample", detect_every=1), [])
    window.resize(*SIZE)
    window.show()
    window.start()
    deadline = time.monotonic() + 120

    def wait(condition) -> None:
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"screenshot: the window did not get there in time ({window.message()})")
            app.processEvents()
            time.sleep(0.02)

    wait(lambda: window.last_shown is not None)
    window.seek(frame, paused=True)
    wait(lambda: window.last_shown.result.frame.index == frame and window.is_paused())
    if len(window.last_shown.result.faces):
        window.face_panel.select_track(int(window.last_shown.result.faces.track_id[0]))
    for _ in range(20):
        app.processEvents()
        time.sleep(0.05)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(out)):
        raise SystemExit(f"screenshot: cannot write {out}")
    window.close()
    print(f"screenshot: wrote {out} ({window.width()}×{window.height()})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshot.png")
    p.add_argument("--frame", type=int, default=100, help="the sample's frame to show (default: 100, four faces)")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)  # the child, on the display
    args = p.parse_args()
    if args.inside:
        take(args.out.resolve(), args.frame)
        return 0
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        print("screenshot: Xvfb is not installed (apt-get install xvfb)", file=sys.stderr)
        return 2
    display = _free_display()
    server = subprocess.Popen([xvfb, f":{display}", "-screen", "0", f"{SIZE[0] + 40}x{SIZE[1] + 40}x24", "-nolisten",
                               "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
            env.update(DISPLAY=f":{display}", QT_QPA_PLATFORM="xcb", FACEATTR_SETTINGS=str(Path(tmp) / "s.ini"))
            return subprocess.run([sys.executable, __file__, "--inside", "--out", str(args.out), "--frame",
                                   str(args.frame)], env=env, cwd=REPO_ROOT).returncode
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
