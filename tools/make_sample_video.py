"""Build the bundled sample video from public-domain portraits.

Writes, under ``--out`` (default ``assets/samples``):

- ``sample.mp4``: 640x480, 30 fps, 10 s. Official portraits of members of the US Congress
  (public domain, ``../shared/data/faces-pd``), cropped around the face as small photo
  cards, drift across a neutral textured background in two horizontal lanes (top lane
  to the right, bottom lane to the left), bobbing gently. Faces enter and leave; 1 to 6
  are fully in view at a time; cards never overlap.
- ``sample_truth.jsonl``: one line per frame, the face box of every portrait in view.
  The box is dlib HOG's own box on the source portrait, mapped through the crop, the
  scaling and the placement, so it is in the detector's convention.
- ``SOURCES.md``: every portrait used, its person, source and licence (copied from the
  faces-pd ``SOURCES.md``), how this file was built, and the HOG recall measured on the
  written video (on by default; ``--no-check`` skips it).

Deterministic: lanes, placements and face sizes are fixed below; the background texture
and the bobbing periods and phases come from a fixed seed (same bytes on every run with
the same OpenCV). H.264 ('avc1') is used where OpenCV's writer has an encoder for it, else MPEG-4
Part 2 ('mp4v'); either decodes with ``cv2.VideoCapture``.

    python tools/make_sample_video.py            # from the repo root
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 20261123
FRAME_WH = (640, 480)
FPS = 30
DURATION_S = 10.0
BOB_AMPLITUDE_PX = 5.0
BORDER_PX = 3
MIN_GAP_PX = 16  # between two cards, edge to edge
CODECS = ("avc1", "mp4v")
COMMAND = "python tools/make_sample_video.py"


@dataclass(frozen=True)
class Lane:
    """A horizontal band the cards of which all move together (so they never collide).

    Speed eases down to ``(1 - slow_fraction)`` of ``speed_px_s`` around ``slow_at_s``
    (a Gaussian dip of width ``slow_sigma_s``). ``lead_x_px``: the left edge of the
    lane's leading card at t = 0; the others follow at the gaps their placements give.
    """

    direction: int  # +1: moves right, -1: moves left
    center_y: int
    speed_px_s: float
    slow_fraction: float
    slow_at_s: float
    slow_sigma_s: float
    lead_x_px: int

    def displacement_px(self, t_s: float) -> float:
        """Distance travelled since t = 0 (integrated per frame, so it is exact at frames)."""
        n = int(round(t_s * FPS))
        t = np.arange(n) / FPS
        v = self.speed_px_s * (1 - self.slow_fraction * np.exp(-0.5 * ((t - self.slow_at_s) / self.slow_sigma_s) ** 2))
        return float(v.sum() / FPS)


LANES = (
    Lane(+1, 118, 106.0, 0.443, 6.67, 0.54, 73),   # top: moves right
    Lane(-1, 362, 113.8, 0.471, 0.65, 1.32, 703),  # bottom: moves left
)


@dataclass(frozen=True)
class Placement:
    """One portrait on a lane: its face height in the video and its gap to the card ahead."""

    file: str
    lane: int
    face_px: float
    gap_px: int  # edge-to-edge gap to the previous card of the lane (ignored for the first)


# Ordered per lane along the direction of travel (leading card first): 5 women, 4 men,
# varied in age, skin tone and appearance. The lane speeds and gaps were tuned so that
# one face is in view at the start, up to six at once later, every portrait is fully in
# view for at least one second, and no two cards ever overlap.
PLACEMENTS = (
    Placement("D000622.jpg", 0, 118.0, 0),    # Tammy Duckworth
    Placement("O000167.jpg", 0, 110.0, 146),  # Barack Obama
    Placement("H001042.jpg", 0, 123.0, 45),   # Mazie K. Hirono
    Placement("I000025.jpg", 0, 111.0, 45),   # Daniel K. Inouye
    Placement("N000147.jpg", 0, 117.0, 45),   # Eleanor Holmes Norton
    Placement("R000595.jpg", 1, 106.0, 0),    # Marco Rubio
    Placement("C001080.jpg", 1, 101.0, 50),   # Judy Chu
    Placement("S001184.jpg", 1, 120.0, 45),   # Tim Scott
    Placement("W000817.jpg", 1, 119.0, 45),   # Elizabeth Warren
)


@dataclass(frozen=True)
class Card:
    """A portrait crop ready to paste, and its face box in card pixels."""

    file: str
    image_bgr: np.ndarray
    face_xyxy: np.ndarray  # float32 [4], in card pixels
    shadow_alpha: np.ndarray  # float32 H'xW', the card's drop shadow (same size + pad)

    @property
    def size_wh(self) -> tuple[int, int]:
        return self.image_bgr.shape[1], self.image_bgr.shape[0]


SHADOW_PAD = 8
SHADOW_OFFSET = (5, 6)


def detect_portrait_face(image_bgr: np.ndarray, detector) -> np.ndarray:
    rects, scores, _ = detector.run(np.ascontiguousarray(image_bgr[:, :, ::-1]), 0, 0.0)
    if len(rects) != 1:
        raise SystemExit(f"expected one face in a portrait, HOG found {len(rects)}")
    r = rects[0]
    return np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32)


def make_card(path: Path, face_px: float, detector) -> Card:
    """Crop the portrait around HOG's face box and scale it so that box is face_px tall."""
    portrait = cv2.imread(str(path))
    if portrait is None:
        raise SystemExit(f"{path}: cannot read the portrait")
    box = detect_portrait_face(portrait, detector)
    side = box[3] - box[1]
    h, w = portrait.shape[:2]
    cx0 = int(max(0, box[0] - 0.32 * side))
    cy0 = int(max(0, box[1] - 0.38 * side))
    cx1 = int(min(w, box[2] + 0.32 * side))
    cy1 = int(min(h, box[3] + 0.42 * side))
    crop = portrait[cy0:cy1, cx0:cx1]
    scale = face_px / side
    out_wh = (int(round(crop.shape[1] * scale)), int(round(crop.shape[0] * scale)))
    scaled = cv2.resize(crop, out_wh, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    card = cv2.copyMakeBorder(scaled, BORDER_PX, BORDER_PX, BORDER_PX, BORDER_PX,
                              cv2.BORDER_CONSTANT, value=(236, 236, 232))
    sx = out_wh[0] / crop.shape[1]
    sy = out_wh[1] / crop.shape[0]
    face = np.array([(box[0] - cx0) * sx, (box[1] - cy0) * sy,
                     (box[2] - cx0) * sx, (box[3] - cy0) * sy], np.float32) + BORDER_PX
    ch, cw = card.shape[:2]
    shadow = np.zeros((ch + 2 * SHADOW_PAD, cw + 2 * SHADOW_PAD), np.float32)
    shadow[SHADOW_PAD:SHADOW_PAD + ch, SHADOW_PAD:SHADOW_PAD + cw] = 0.45
    shadow = cv2.GaussianBlur(shadow, (0, 0), 3.0)
    return Card(path.name, card, face, shadow)


def make_background(rng: np.random.Generator) -> np.ndarray:
    """A neutral grey-beige backdrop with soft low-frequency mottling and a vignette."""
    w, h = FRAME_WH
    coarse = rng.normal(0.0, 1.0, (h // 16, w // 16)).astype(np.float32)
    mottle = cv2.GaussianBlur(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 9)
    mottle /= max(1e-6, float(np.abs(mottle).max()))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    light = 1.0 - 0.16 * r2 + 0.05 * (1 - yy / h)
    base = np.array([150.0, 156.0, 160.0], np.float32)  # BGR: warm light grey
    img = base[None, None, :] * light[:, :, None] + 14.0 * mottle[:, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Motion:
    """Where one card is at any time: its lane's travel plus a gentle vertical bob."""

    card: Card
    lane: Lane
    x0_px: int  # left edge at t = 0
    bob_period_s: float
    bob_phase: float

    def top_left(self, t_s: float) -> tuple[int, int]:
        x = self.x0_px + self.lane.direction * self.lane.displacement_px(t_s)
        bob = BOB_AMPLITUDE_PX * np.sin(2 * np.pi * t_s / self.bob_period_s + self.bob_phase)
        y = self.lane.center_y - self.card.size_wh[1] / 2 + bob
        return int(round(x)), int(round(y))


def lay_out(cards: list[Card], rng: np.random.Generator) -> list[Motion]:
    """Each card's start position from its lane's lead position and the gaps."""
    motions = []
    previous: dict[int, tuple[int, int]] = {}  # lane -> (x0, width) of the card ahead
    for p, card in zip(PLACEMENTS, cards):
        lane = LANES[p.lane]
        w = card.size_wh[0]
        if p.lane not in previous:
            x0 = lane.lead_x_px
        elif lane.direction > 0:  # the card ahead is to the right
            x0 = previous[p.lane][0] - p.gap_px - w
        else:
            x0 = previous[p.lane][0] + previous[p.lane][1] + p.gap_px
        previous[p.lane] = (x0, w)
        motions.append(Motion(card, lane, x0, float(rng.uniform(2.8, 4.6)),
                              float(rng.uniform(0, 2 * np.pi))))
    return motions


def render(background: np.ndarray, motions: list[Motion], t_s: float) -> tuple[np.ndarray, list[dict]]:
    """One frame (shadows first, then cards) and the faces at least partly in it."""
    frame = background.copy()
    places = [m.top_left(t_s) for m in motions]
    for m, (x, y) in zip(motions, places):
        _blend_dark(frame, m.card.shadow_alpha,
                    x - SHADOW_PAD + SHADOW_OFFSET[0], y - SHADOW_PAD + SHADOW_OFFSET[1])
    fh, fw = frame.shape[:2]
    faces = []
    for m, (x, y) in zip(motions, places):
        ch, cw = m.card.image_bgr.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + cw), min(fh, y + ch)
        if x0 < x1 and y0 < y1:
            frame[y0:y1, x0:x1] = m.card.image_bgr[y0 - y:y1 - y, x0 - x:x1 - x]
        face = m.card.face_xyxy + np.array([x, y, x, y], np.float32)
        inside = _inside_fraction(face, fw, fh)
        if inside > 0:
            faces.append({"portrait": m.card.file, "xyxy": [round(float(v), 1) for v in face],
                          "inside": round(inside, 3)})
    return frame, faces


def _blend_dark(frame: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    fh, fw = frame.shape[:2]
    ah, aw = alpha.shape
    x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + aw), min(fh, y + ah)
    if x0 >= x1 or y0 >= y1:
        return
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (region * (1.0 - a)).astype(np.uint8)


def _inside_fraction(xyxy: np.ndarray, w: int, h: int) -> float:
    area = (xyxy[2] - xyxy[0]) * (xyxy[3] - xyxy[1])
    cw = max(0.0, min(xyxy[2], w) - max(xyxy[0], 0))
    chh = max(0.0, min(xyxy[3], h) - max(xyxy[1], 0))
    return float(cw * chh / area)


def check_no_overlap(motions: list[Motion], t_s: float) -> None:
    """Refuse a layout where two cards come closer than MIN_GAP_PX or overlap."""
    rects = []
    for m in motions:
        x, y = m.top_left(t_s)
        rects.append((x, y, x + m.card.size_wh[0], y + m.card.size_wh[1]))
    for i in range(len(rects)):
        for j in range(i + 1, len(rects)):
            a, b = rects[i], rects[j]
            if (a[0] < b[2] + MIN_GAP_PX and b[0] < a[2] + MIN_GAP_PX
                    and a[1] < b[3] and b[1] < a[3]):
                raise SystemExit(f"cards {motions[i].card.file} and {motions[j].card.file} "
                                 f"come too close at t={t_s:.2f} s: fix LANES / PLACEMENTS")


def open_writer(path: Path) -> tuple[cv2.VideoWriter, str]:
    """The first codec of CODECS this OpenCV build can write (FFmpeg's refusals silenced)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET for failed tries
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        for codec in CODECS:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), FPS, FRAME_WH)
            if writer.isOpened():
                return writer, codec
            writer.release()
            print(f"codec '{codec}': this OpenCV build cannot write it, trying the next", file=sys.stderr)
    finally:
        cv2.utils.logging.setLogLevel(previous)
    raise SystemExit(f"OpenCV can write none of the codecs {CODECS} to {path}")


def build(faces_dir: Path, out_dir: Path) -> tuple[str, list[dict]]:
    """Write sample.mp4 and sample_truth.jsonl; the codec used and the truth rows."""
    rng = np.random.default_rng(SEED)
    detector = dlib.get_frontal_face_detector()
    background = make_background(rng)
    cards = [make_card(faces_dir / p.file, p.face_px, detector) for p in PLACEMENTS]
    motions = lay_out(cards, rng)
    n_frames = int(round(DURATION_S * FPS))
    out_dir.mkdir(parents=True, exist_ok=True)
    writer, codec = open_writer(out_dir / "sample.mp4")
    rows = []
    try:
        for i in range(n_frames):
            t_s = i / FPS
            check_no_overlap(motions, t_s)
            frame, faces = render(background, motions, t_s)
            writer.write(frame)
            rows.append({"frame": i, "t_s": round(t_s, 4), "faces": faces})
    finally:
        writer.release()
    with open(out_dir / "sample_truth.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return codec, rows


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def check(video: Path, rows: list[dict], every: int = 10, min_iou: float = 0.5) -> dict:
    """Decode the written video and run engine.detect.HogDetector on every `every`-th frame.

    Recall counts faces fully inside the frame; a detection matching no face at least
    partly in view is a false positive.
    """
    sys.path.insert(0, str(REPO_ROOT))
    from engine.detect import HogDetector

    detector = HogDetector(upsample=0, min_face=HogDetector.native_min_face_px)  # the frame as it is
    cap = cv2.VideoCapture(str(video))
    found = total = false_pos = frames = 0
    i = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        if i % every == 0:
            frames += 1
            dets = detector(image).xyxy
            truth = [np.array(f["xyxy"], np.float32) for f in rows[i]["faces"]]
            full = [f["inside"] >= 1.0 for f in rows[i]["faces"]]
            used = set()
            for t, is_full in zip(truth, full):
                scores = [(iou(t, d), k) for k, d in enumerate(dets) if k not in used]
                best = max(scores, default=(0.0, -1))
                if best[0] >= min_iou:
                    used.add(best[1])
                    found += int(is_full)
                total += int(is_full)
            false_pos += len(dets) - len(used)
        i += 1
    cap.release()
    return {"frames_checked": frames, "faces_full": total, "found": found,
            "recall": round(found / max(1, total), 3), "false_positives": false_pos,
            "frames_decoded": i}


def read_sources(faces_dir: Path) -> dict[str, list[str]]:
    """The faces-pd SOURCES.md table rows by file name, as cells."""
    rows = {}
    for line in (faces_dir / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and re.fullmatch(r"[A-Z]\d{6}\.jpg", cells[0]):
            rows[cells[0]] = cells
    return rows


def write_sources_md(out_dir: Path, faces_dir: Path, codec: str, rows: list[dict],
                     report: dict | None) -> None:
    sources = read_sources(faces_dir)
    counts = [sum(f["inside"] >= 1.0 for f in r["faces"]) for r in rows]
    lines = [
        "# Sample video: sources and licence",
        "",
        f"`sample.mp4`: {FRAME_WH[0]}x{FRAME_WH[1]}, {FPS} fps, {len(rows)} frames "
        f"({len(rows) / FPS:g} s), codec `{codec}`"
        + (" (MPEG-4 Part 2: this OpenCV build has no H.264 encoder)" if codec == "mp4v" else "")
        + f". {min(counts)} to {max(counts)} faces fully in view at a time, "
        f"{min(p.face_px for p in PLACEMENTS):.0f} to {max(p.face_px for p in PLACEMENTS):.0f} px tall; "
        "faces enter and leave at the left and right edges.",
        "`sample_truth.jsonl`: one JSON object per frame: `frame`, `t_s`, `faces` "
        "(`portrait`, `xyxy` = dlib HOG's box on the source portrait mapped into the frame, "
        "`inside` = fraction of that box inside the frame).",
        "",
        f"Built by `tools/make_sample_video.py` (seed {SEED}) with: `{COMMAND}` "
        "(reads `../shared/data/faces-pd`; `--faces-dir` names another copy).",
        "",
        "## Licence",
        "",
        "All portraits are official portraits of members of the US Congress: works of the US "
        "federal government, public domain. The video, composed from them by this project, "
        "is likewise offered as public domain (CC0). Facts below are copied from "
        "`shared/data/faces-pd/SOURCES.md`, which says:",
        "",
        "- Files copied from the GitHub repository `Hainish/congress-images-225x275` at commit "
        "`20531e981f99cd8fd42023d3e71000582f2e04c2` (2015-04-29), path `images/<bioguide>.jpg`, "
        "a verbatim export of `unitedstates/images` `congress/225x275/`.",
        "- unitedstates/images README, section \"Public domain\": \"The photos of members of "
        "Congress are from the Government Printing Office, which has assured us that all photos "
        "are public domain\".",
        "- Labels (name, gender, birthday) from unitedstates/congress-legislators (CC0).",
        "",
        "| file | person | gender | birthday | source | licence |",
        "|---|---|---|---|---|---|",
    ]
    for p in PLACEMENTS:
        c = sources.get(p.file)
        if c is None:
            raise SystemExit(f"{p.file}: not listed in {faces_dir / 'SOURCES.md'}")
        lines.append(f"| {c[0]} | {c[1]} | {c[2]} | {c[3]} | {c[4]} | {c[5]} |")
    if report is not None:
        lines += [
            "",
            "## Detection check",
            "",
            f"`{COMMAND}` decodes the written video and runs "
            "`engine.detect.HogDetector(upsample=0)` on the 640-wide frame as it is on every 10th frame "
            f"({report['frames_checked']} frames): it found {report['found']} of the "
            f"{report['faces_full']} faces fully in view (IoU >= 0.5 with the truth box), "
            f"recall {report['recall']:.3f}, with {report['false_positives']} false positives.",
        ]
    (out_dir / "SOURCES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "faces-pd")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "assets" / "samples")
    parser.add_argument("--no-check", action="store_true", help="skip the HOG recall check")
    args = parser.parse_args(argv)
    if not (args.faces_dir / "SOURCES.md").is_file():
        print(f"{args.faces_dir}: no faces-pd folder there (need its SOURCES.md and portraits)",
              file=sys.stderr)
        return 2
    codec, rows = build(args.faces_dir, args.out)
    counts = [sum(f["inside"] >= 1.0 for f in r["faces"]) for r in rows]
    print(f"wrote {args.out / 'sample.mp4'}: {len(rows)} frames, codec {codec}, "
          f"{(args.out / 'sample.mp4').stat().st_size / 1e6:.2f} MB, "
          f"faces fully in view per frame {min(counts)}..{max(counts)}")
    print("faces in view per second:", [counts[i] for i in range(0, len(counts), FPS)])
    report = None if args.no_check else check(args.out / "sample.mp4", rows)
    if report is not None:
        print("HOG check:", json.dumps(report))
    write_sources_md(args.out, args.faces_dir, codec, rows, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
