"""Composed HD test videos with a truth file: real portraits moving, entering and leaving.

    python -m benchmarks.composed_videos [--out benchmarks/out/videos] [--seconds 10] [--only 720p-5,1080p-5]

Writes, for each video of :data:`VIDEOS` (1280×720 and 1920×1080, 5 and 10 faces of
60-200 px), ``<name>.mp4`` (30 fps, H.264 through the engine's video sink) and
``<name>_truth.jsonl`` beside it. Built on demand, never committed (``benchmarks/out/`` is
git-ignored); the same arguments give the same frames (fixed seeds).

The faces: the public-domain portraits of ``../shared/data/faces-pd`` (official portraits
of members of the US Congress), each cut to a photo card around its face and scaled so
that dlib HOG's face box is the wanted width (60 to 200 px, spaced geometrically). The
cards move in horizontal lanes, as people passing at different distances: a lane's cards
move together (so they never collide), bob up and down, leave the frame at one side and
come back at the other; some cards also vanish for about a second and reappear in place
(a face turned away, a person stepping behind someone). Lanes of larger faces are drawn
over lanes of smaller ones where they overlap.

The truth file has one line per frame: ``{"frame", "t_s", "faces": [{"id", "portrait",
"xyxy", "inside"}]}`` for every face at least partly visible. ``xyxy``: the face box in
frame pixels, in the detector's own convention (HOG's box on the portrait, mapped through
the card's scaling and placement; it may reach past the frame's border). ``inside``: the
part of that box that is visible (in the frame and not covered by another card); 1.0 means
fully in view. ``id`` changes each time a face comes back after it was wholly out of view,
as a tracker's id should.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from benchmarks.common import OUT_DIR, background_bgr, shared_dir

FPS = 30.0
FACE_PX = (60, 200)
VIDEOS: dict[str, tuple[tuple[int, int], int]] = {
    "720p-5": ((1280, 720), 5), "720p-10": ((1280, 720), 10),
    "1080p-5": ((1920, 1080), 5), "1080p-10": ((1920, 1080), 10),
}
VIDEO_DIR = OUT_DIR / "videos"
# a card: the face box plus this part of its width left and right, of its height above and below
CARD_SIDE, CARD_TOP, CARD_BOTTOM = 0.3, 0.35, 0.4
LANE_GAP_PX = 40  # between two cards of a lane, edge to edge
SPEED_PX_S = (60.0, 150.0)  # lane speeds (2-5 px a frame at 30 fps)
BOB_PX = 20.0
HIDE_S = (0.7, 1.2)  # how long a vanishing card stays away


def portraits_dir() -> Path | None:
    sd = shared_dir()
    folder = sd / "data" / "faces-pd" if sd else None
    return folder if folder is not None and folder.is_dir() and any(folder.glob("*.jpg")) else None


@lru_cache(maxsize=1)
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=64)
def portrait(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(image_bgr, the largest face's HOG box at upsample 1) of one portrait."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise RuntimeError(f"{path}: cannot read the portrait")
    rects = _hog()(np.ascontiguousarray(image[:, :, ::-1]), 1)
    if not rects:
        raise RuntimeError(f"{path}: HOG finds no face in the portrait")
    r = max(rects, key=lambda r: r.width())
    return image, np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32)


@dataclass(frozen=True)
class Card:
    name: str
    image_bgr: np.ndarray
    face_xyxy: np.ndarray  # in card pixels

    @property
    def size_wh(self) -> tuple[int, int]:
        return self.image_bgr.shape[1], self.image_bgr.shape[0]


def make_card(path: Path, face_px: float) -> Card:
    """The portrait cut around its face and scaled so the face box is ``face_px`` wide."""
    image, box = portrait(str(path))
    bw, bh = box[2] - box[0], box[3] - box[1]
    h, w = image.shape[:2]
    x0, y0 = int(max(0, box[0] - CARD_SIDE * bw)), int(max(0, box[1] - CARD_TOP * bh))
    x1, y1 = int(min(w, box[2] + CARD_SIDE * bw)), int(min(h, box[3] + CARD_BOTTOM * bh))
    s = face_px / float(bw)
    crop = image[y0:y1, x0:x1]
    size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
    scaled = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    sx, sy = size[0] / crop.shape[1], size[1] / crop.shape[0]
    face = (box - np.array([x0, y0, x0, y0], np.float32)) * np.array([sx, sy, sx, sy], np.float32)
    return Card(path.name, scaled, face)


@dataclass(frozen=True)
class Actor:
    """A card on a lane: ring position at frame 0, the lane's ring, and when it is hidden."""

    card: Card
    lane_y: float  # the card's top edge at rest
    ring_px: float  # the lane's ring length (the frame's width plus room off screen)
    start_px: float  # position on the ring at frame 0
    speed_px: float  # px per frame, signed
    bob_px: float
    bob_period_frames: float
    bob_phase: float
    hidden: tuple[int, int] | None = None  # frames [a, b) when the card has vanished
    depth: int = 0  # drawing order: larger faces (nearer lanes) are drawn later, on top

    @classmethod
    def at(cls, card: Card, x: float, y: float, speed_px: float = 0.0,
           hidden: tuple[int, int] | None = None, depth: int = 0) -> "Actor":
        """A card with its top-left corner at (x, y) at frame 0, moving ``speed_px`` a frame
        to the right (no wrapping round, no bobbing): for tests that script their faces."""
        return cls(card, lane_y=float(y), ring_px=1e9, start_px=float(x) + card.size_wh[0], speed_px=speed_px,
                   bob_px=0.0, bob_period_frames=1.0, bob_phase=0.0, hidden=hidden, depth=depth)

    def top_left(self, k: int) -> tuple[int, int]:
        cw = self.card.size_wh[0]
        s = (self.start_px + self.speed_px * k) % self.ring_px
        x = s - cw  # ring 0..cw: entering at the left, partly visible
        y = self.lane_y + self.bob_px * np.sin(2 * np.pi * k / self.bob_period_frames + self.bob_phase)
        return int(round(x)), int(round(y))

    def shown(self, k: int) -> bool:
        return self.hidden is None or not (self.hidden[0] <= k < self.hidden[1])


def _bands(card_wh: list[tuple[int, int]], width: int) -> list[list[int]]:
    """Cards (sorted largest first) split into contiguous lanes whose cards fit the frame's
    width side by side, with the least total lane height (dynamic programming)."""
    n = len(card_wh)
    best: dict[int, tuple[float, list[list[int]]]] = {0: (0.0, [])}
    for j in range(1, n + 1):
        options = []
        for i in range(j):
            lane = list(range(i, j))
            if i in best and sum(card_wh[k][0] + LANE_GAP_PX for k in lane) <= 0.9 * width:
                options.append((best[i][0] + max(card_wh[k][1] for k in lane), best[i][1] + [lane]))
        if not options:  # a card wider than the frame allows: a lane of its own
            options.append((best[j - 1][0] + card_wh[j - 1][1], best[j - 1][1] + [[j - 1]]))
        best[j] = min(options, key=lambda o: o[0])
    return best[n][1]


def layout(size_wh: tuple[int, int], n_faces: int, seconds: float, seed: int = 0,
           face_px: tuple[int, int] = FACE_PX, folder: Path | None = None) -> list[Actor]:
    """The cast of one video: ``n_faces`` different portraits, face widths spaced geometrically
    over ``face_px``, in lanes (see the module's description)."""
    folder = folder or portraits_dir()
    if folder is None:
        raise FileNotFoundError("the public-domain portraits (../shared/data/faces-pd) are not here")
    w, h = size_wh
    rng = np.random.default_rng(seed)
    files = sorted(folder.glob("*.jpg"))
    if len(files) < n_faces:
        raise ValueError(f"{n_faces} faces asked for, {len(files)} portraits in {folder}")
    picks = [files[i] for i in rng.choice(len(files), n_faces, replace=False)]
    sizes = np.geomspace(face_px[0], face_px[1], n_faces) if n_faces > 1 else np.array([float(face_px[1])])
    cards = [make_card(p, s) for p, s in zip(picks, sizes[::-1])]  # largest first
    bands = _bands([c.size_wh for c in cards], w)
    heights = [max(cards[k].size_wh[1] for k in lane) for lane in bands]
    slack = h - sum(heights)
    bob = float(np.clip(slack / (2 * len(bands) + 2), 0.0, BOB_PX))
    # lanes top to bottom: the band of smaller faces higher up (farther away); spread evenly,
    # overlapping evenly when they do not fit
    order = bands[::-1]
    hs = heights[::-1]
    gap = (h - sum(hs)) / (len(order) + 1)
    frames = int(round(seconds * FPS))
    actors: list[Actor] = []
    y = gap
    for depth, (lane, lh) in enumerate(zip(order, hs)):
        lane_cards = [cards[k] for k in lane]
        widest = max(c.size_wh[0] for c in lane_cards)
        ring = max(w + widest + LANE_GAP_PX, len(lane_cards) * (widest + LANE_GAP_PX))
        speed = float(rng.uniform(*SPEED_PX_S)) / FPS * (1 if depth % 2 == 0 else -1)
        offset = float(rng.uniform(0, ring))
        for i, card in enumerate(lane_cards):
            hidden = None
            if (len(actors) + depth) % 3 == 1 and frames >= 3 * FPS:  # every third card vanishes once
                length = int(rng.uniform(*HIDE_S) * FPS)
                start = int(rng.uniform(0.2, 0.8) * (frames - length))
                hidden = (start, start + length)
            actors.append(Actor(
                card=card, lane_y=y + (lh - card.size_wh[1]) / 2, ring_px=ring,
                start_px=(offset + i * ring / len(lane_cards)) % ring, speed_px=speed,
                bob_px=bob * float(rng.uniform(0.4, 1.0)), bob_period_frames=float(rng.uniform(2.0, 5.0)) * FPS,
                bob_phase=float(rng.uniform(0, 2 * np.pi)), hidden=hidden, depth=depth))
        y += lh + gap
    return actors


def render(size_wh: tuple[int, int], actors: list[Actor], frames: int, seed: int = 0
           ) -> Iterator[tuple[np.ndarray, list[dict]]]:
    """(frame, truth faces) for each frame; ids count appearances (see the module's text)."""
    w, h = size_wh
    base = background_bgr(size_wh, seed)
    order = sorted(range(len(actors)), key=lambda i: actors[i].depth)
    visible_before = [False] * len(actors)
    ids = [0] * len(actors)
    next_id = 1
    for k in range(frames):
        image = base.copy()
        owner = np.full((h, w), -1, np.int16)
        placed = {}
        for i in order:
            a = actors[i]
            if not a.shown(k):
                continue
            x, y = a.top_left(k)
            cw, ch = a.card.size_wh
            fx0, fy0, fx1, fy1 = max(x, 0), max(y, 0), min(x + cw, w), min(y + ch, h)
            if fx1 <= fx0 or fy1 <= fy0:
                continue
            image[fy0:fy1, fx0:fx1] = a.card.image_bgr[fy0 - y:fy1 - y, fx0 - x:fx1 - x]
            owner[fy0:fy1, fx0:fx1] = i
            placed[i] = (x, y)
        faces = []
        for i in range(len(actors)):
            on = False
            if i in placed:
                x, y = placed[i]
                box = actors[i].card.face_xyxy + np.array([x, y, x, y], np.float32)
                bx0, by0 = int(np.floor(box[0])), int(np.floor(box[1]))
                bx1, by1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
                area = max(1, (bx1 - bx0) * (by1 - by0))
                seen = owner[max(by0, 0):max(min(by1, h), 0), max(bx0, 0):max(min(bx1, w), 0)]
                inside = float(np.count_nonzero(seen == i)) / area
                if inside > 0:
                    on = True
                    if not visible_before[i]:
                        ids[i], next_id = next_id, next_id + 1
                    faces.append({"id": ids[i], "portrait": actors[i].card.name,
                                  "xyxy": [round(float(v), 1) for v in box], "inside": round(inside, 3)})
            visible_before[i] = on
        yield image, faces


def truth_path(video: Path) -> Path:
    return Path(video).with_name(Path(video).stem + "_truth.jsonl")


def write_video(path: Path, size_wh: tuple[int, int], n_faces: int, seconds: float, seed: int = 0,
                face_px: tuple[int, int] = FACE_PX, folder: Path | None = None) -> Path:
    """Write ``path`` (mp4) and its truth file; returns ``path``."""
    actors = layout(size_wh, n_faces, seconds, seed, face_px, folder)
    return write_actors(path, size_wh, actors, int(round(seconds * FPS)), seed)


def write_actors(path: Path, size_wh: tuple[int, int], actors: list[Actor], frames: int, seed: int = 0) -> Path:
    """Write ``path`` (mp4) and its truth file for a given cast; returns ``path``."""
    from engine.write import VideoWriter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = truth_path(path)
    tmp = truth.with_suffix(".jsonl.partial")
    with VideoWriter(path, FPS, size_wh) as writer, tmp.open("w") as out:
        for k, (image, faces) in enumerate(render(size_wh, actors, frames, seed)):
            writer.write(image)
            out.write(json.dumps({"frame": k, "t_s": round(k / FPS, 4), "faces": faces}) + "\n")
    tmp.replace(truth)
    return path


def ensure_videos(names: list[str] | None = None, folder: Path = VIDEO_DIR, seconds: float = 10.0,
                  log=print) -> dict[str, Path]:
    """The composed videos by name, built when missing (or shorter than ``seconds``)."""
    out = {}
    for name in names or list(VIDEOS):
        size_wh, n = VIDEOS[name]
        path = Path(folder) / f"{name}.mp4"
        truth = truth_path(path)
        frames = int(round(seconds * FPS))
        if not (path.is_file() and truth.is_file() and len(truth.read_text().splitlines()) >= frames):
            t0 = time.perf_counter()
            write_video(path, size_wh, n, seconds, seed=list(VIDEOS).index(name))
            log(f"  composed {path} ({size_wh[0]}x{size_wh[1]}, {n} faces, {frames} frames) "
                f"in {time.perf_counter() - t0:.1f} s")
        out[name] = path
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.composed_videos", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=VIDEO_DIR, help=f"folder for the videos (default {VIDEO_DIR})")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each video (default 10)")
    p.add_argument("--only", help=f"comma list of {', '.join(VIDEOS)} (default: all)")
    args = p.parse_args(argv)
    names = [s.strip() for s in (args.only or ",".join(VIDEOS)).split(",") if s.strip()]
    unknown = [n for n in names if n not in VIDEOS]
    if unknown:
        p.error(f"unknown video(s) {unknown}; choose from {', '.join(VIDEOS)}")
    if portraits_dir() is None:
        print("error: the public-domain portraits (../shared/data/faces-pd) are not here", file=sys.stderr)
        return 2
    for name in names:
        size_wh, n = VIDEOS[name]
        path = write_video(args.out / f"{name}.mp4", size_wh, n, args.seconds, seed=list(VIDEOS).index(name))
        print(f"wrote {path} and {truth_path(path).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
