"""Detection in regions around known faces, between full-frame scans.

A full-frame scan at the scale ``min_face`` implies is the costly stage (HOG on a 1280×720
frame at ``min_face`` 40 searches 2240×1260 pixels). Between full scans the pipeline knows
where every face was a frame ago, so :class:`RegionScanner` runs the detector only on a
crop around each tracked face (the box grown by ``margin`` × its size on every side,
overlapping crops merged into one), which:

- keeps a moving face locked: its box moves with its landmarks, refitted every frame, and
  takes the detector's box where the two disagree (:data:`SNAP_IOU`, :data:`SNAP_SIZE`);
- drops a face that left: a tracked face its region scans miss ``drop_after`` frames
  running is dropped (``drop_after - 1`` misses are forgiven, a frame HOG misses a face
  does not end its track; the missed face is followed by its landmarks meanwhile), and a
  forgiven face is dropped at once when the tracker's appearance test says its box no
  longer shows that face (:meth:`RegionScanner.settle`);
- finds a face that enters a region (someone stepping beside a known face).

Scale: a region is searched for faces down to ``face_ratio`` × the smallest tracked face
in it, never under ``min_face`` (so never at a larger scale than a full scan): a face does
not shrink by half from one frame to the next, and HOG's cost grows with the square of
the scale (a 100 px face at ``min_face`` 40 would be searched at 1.75×; at ratio 0.5 it is
searched at 1.4×, at 0.7 at 1×). ``face_ratio`` 0 searches at the scale ``min_face`` implies.

New faces elsewhere in the frame are the full scans' job (every ``detect_every`` frames,
or the background detector's, ``engine/background_detect.py``); a face a background scan
found on an older frame is confirmed by a region scan of the current frame before it is
added (:meth:`RegionScanner.add_found`), so a face that has left since is not brought back.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.detect import MAX_UPSCALE, can_confirm, nms
from engine.track import greedy_match, iou_matrix
from engine.types import Faces

REGION_MARGIN = 0.3
REGION_FACE_RATIO = 0.7
DROP_AFTER_MISSES = 2
SAME_FACE_IOU = 0.3  # a found box and a tracked box with at least this overlap are one face
# A confirmed face keeps its tracked box (moved with its landmarks, steady from frame to
# frame: a box found at the region's scale is a few px off the full scan's) unless the
# found box overlaps it less than this, or is this much larger or smaller: then it takes
# the found box (a jump the landmarks did not follow, a face nearing or leaving the camera).
SNAP_IOU = 0.5
SNAP_SIZE = 1.25


def regions_around(xyxy: np.ndarray, margin: float, size_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(regions [R, 4] int xyxy, smallest face width in each [R]).

    Each box grown by ``margin`` × its width (height) left and right (above and below),
    clipped to the frame; boxes wholly outside the frame give no region; two regions whose
    union is no larger than the two together are merged into it (searched once; regions
    that overlap less are searched apart, :func:`engine.detect.nms` removes the doubles)."""
    w, h = size_wh
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    grown = boxes + np.stack([-margin * bw, -margin * bh, margin * bw, margin * bh], axis=1)
    x0 = np.clip(np.floor(grown[:, 0]), 0, w)
    y0 = np.clip(np.floor(grown[:, 1]), 0, h)
    x1 = np.clip(np.ceil(grown[:, 2]), 0, w)
    y1 = np.clip(np.ceil(grown[:, 3]), 0, h)
    ok = (x1 > x0) & (y1 > y0) & (bw > 0)
    regions = [[int(a), int(b), int(c), int(d)] for a, b, c, d in zip(x0[ok], y0[ok], x1[ok], y1[ok])]
    widths = [float(v) for v in bw[ok]]
    merged = True
    while merged:
        merged = False
        for i in range(len(regions)):
            for j in range(i + 1, len(regions)):
                a, b = regions[i], regions[j]
                union = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
                if union <= _area(a) + _area(b):  # they overlap so much that one search is cheaper
                    regions[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    widths[i] = min(widths[i], widths[j])
                    del regions[j], widths[j]
                    merged = True
                    break
            if merged:
                break
    return np.array(regions, np.int64).reshape(-1, 4), np.array(widths, np.float64)


def _area(r) -> int:
    return (r[2] - r[0]) * (r[3] - r[1])


def _rows(xyxy: np.ndarray, score: np.ndarray, landmarks_xy: np.ndarray, track_id: np.ndarray) -> Faces:
    return Faces(xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4), score=np.asarray(score, np.float32),
                 landmarks_xy=np.asarray(landmarks_xy, np.float32).reshape(-1, 5, 2),
                 track_id=np.asarray(track_id, np.int64))


def _concat(*parts: Faces) -> Faces:
    return _rows(np.concatenate([p.xyxy for p in parts]), np.concatenate([p.score for p in parts]),
                 np.concatenate([p.landmarks_xy for p in parts]), np.concatenate([p.track_id for p in parts]))


@dataclass
class RegionScanner:
    """Pipeline stage between full scans: the tracked faces, confirmed, moved or dropped by
    detecting in regions around them (uses the pipeline's own detector, in its thread)."""

    detector: object  # engine.detect.Detector: called with an explicit ``scale``
    min_face: int
    margin: float = REGION_MARGIN
    face_ratio: float = REGION_FACE_RATIO
    drop_after: int = DROP_AFTER_MISSES
    # Check each tracked box with the detector's ``confirm(image_bgr, xyxy) -> Faces`` (MTCNN's
    # O-Net) instead of searching a region around it: far cheaper, finds no face entering a region
    confirm_only: bool = False
    regions_last: int = 0  # regions searched by the last call (benchmarks, tests)
    _misses: dict[int, int] = field(default_factory=dict, repr=False)  # track id -> misses running
    # per row of the last call's faces: the id a missed (forgiven) row carried, else -1; its misses
    _row_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    _row_misses: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    def __post_init__(self) -> None:
        if not (self.margin >= 0):
            raise ValueError(f"region_margin must be 0 or more (a part of the face's size), got {self.margin}")
        if not (0 <= self.face_ratio <= 1):
            raise ValueError(f"region_face_ratio must be between 0 and 1, got {self.face_ratio}")
        if int(self.drop_after) < 1:
            raise ValueError(f"region_drop_after must be 1 or more frames, got {self.drop_after}")
        if self.confirm_only and not can_confirm(self.detector):
            raise ValueError(f"region_confirm: the {getattr(self.detector, 'name', '?')} detector cannot confirm "
                             "boxes (mtcnn can); use region scans")

    def scale_for(self, face_w: float) -> float:
        """The detection scale of a region whose smallest tracked face is ``face_w`` px wide."""
        smallest = max(float(self.min_face), self.face_ratio * float(face_w))
        return min(MAX_UPSCALE, self.detector.native_min_face_px / smallest)

    def scan(self, image_bgr: np.ndarray, xyxy: np.ndarray) -> Faces:
        """The faces the detector finds in the regions around ``xyxy`` (boxes in frame pixels);
        with ``confirm_only``, the detector's own check of the boxes (``confirm``) instead."""
        if self.confirm_only:
            self.regions_last = len(xyxy)
            return self.detector.confirm(image_bgr, xyxy)
        h, w = image_bgr.shape[:2]
        regions, face_w = regions_around(xyxy, self.margin, (w, h))
        self.regions_last = len(regions)
        boxes, scores = [np.zeros((0, 4), np.float32)], [np.zeros((0,), np.float32)]
        for (x0, y0, x1, y1), fw in zip(regions, face_w):
            found = self.detector(image_bgr[y0:y1, x0:x1], scale=self.scale_for(fw))
            boxes.append(found.xyxy + np.array([x0, y0, x0, y0], np.float32))
            scores.append(found.score)
        xyxy_all, score_all = np.concatenate(boxes), np.concatenate(scores)
        if len(xyxy_all) > 1:
            xyxy_all, score_all = nms(xyxy_all, score_all)
        return Faces.from_boxes(xyxy_all, score_all)

    def __call__(self, image_bgr: np.ndarray, tracked: Faces) -> Faces:
        """``tracked`` (the last frame's faces) after a region scan of this frame.

        Rows: the confirmed faces (the tracked row, or the found box without landmarks
        where the two disagree; the track's id), the missed faces still forgiven (their own
        row), then the faces found that no track covers (new, id -1). Rows with landmarks
        are moved by the pipeline with their refitted landmarks; the others are new boxes.
        Call :meth:`settle` with the tracker's ids for these rows."""
        found = self.scan(image_bgr, tracked.xyxy)
        pairs = (greedy_match(iou_matrix(tracked.xyxy, found.xyxy), SAME_FACE_IOU)
                 if len(tracked) and len(found) else [])
        hit = {t for t, _ in pairs}
        kept, counts = [], []
        for t in range(len(tracked)):
            if t in hit:
                continue
            count = self._misses.get(int(tracked.track_id[t]), 0) + 1
            if count < self.drop_after:
                kept.append(t)
                counts.append(count)
        t_hit = np.array([t for t, _ in pairs], np.int64)
        d_hit = np.array([d for _, d in pairs], np.int64)
        confirmed = tracked.take(t_hit)
        if len(pairs):  # the tracked row, followed by its landmarks; the found box where they disagree
            iou = iou_matrix(tracked.xyxy, found.xyxy)[t_hit, d_hit]
            size = (found.xyxy[d_hit, 2] - found.xyxy[d_hit, 0]) / np.maximum(
                tracked.xyxy[t_hit, 2] - tracked.xyxy[t_hit, 0], 1e-3)
            snap = (iou < SNAP_IOU) | (size < 1 / SNAP_SIZE) | (size > SNAP_SIZE)
            confirmed = _rows(np.where(snap[:, None], found.xyxy[d_hit], confirmed.xyxy),
                              np.where(snap, found.score[d_hit], confirmed.score),
                              np.where(snap[:, None, None], np.nan, confirmed.landmarks_xy), confirmed.track_id)
        missed = tracked.take(np.array(kept, np.int64))
        covered = set(d_hit.tolist())
        new = found.take(np.array([d for d in range(len(found)) if d not in covered], np.int64))
        self._row_id = np.concatenate([np.full(len(confirmed), -1), missed.track_id, np.full(len(new), -1)])
        self._row_misses = np.concatenate([np.zeros(len(confirmed)), counts, np.zeros(len(new))]).astype(np.int64)
        return _concat(confirmed, _rows(missed.xyxy, missed.score, missed.landmarks_xy, missed.track_id), new)

    def settle(self, track_id: np.ndarray) -> np.ndarray:
        """After the tracker has judged the last call's rows (same order, ``track_id`` its
        ids): which rows to keep. A forgiven row the tracker gave a new id (its chip no
        longer looks like the face: it is gone, the box shows what was behind it) is dropped
        now; the others carry their misses under the id they have."""
        track_id = np.asarray(track_id, np.int64)
        keep = np.ones(len(track_id), bool)
        if len(track_id) != len(self._row_id):
            raise ValueError(f"{len(track_id)} ids for {len(self._row_id)} rows of the last region scan")
        missed = self._row_id >= 0
        keep[missed] = track_id[missed] == self._row_id[missed]
        self._misses = {int(t): int(m) for t, m, k in zip(track_id, self._row_misses, keep) if k and m > 0}
        return keep

    def add_found(self, image_bgr: np.ndarray, current: Faces, detected: Faces) -> Faces:
        """``current`` plus the faces of a (possibly older) full scan that no current face
        covers, each confirmed by a region scan of this frame (boxes as found now)."""
        if len(detected) == 0:
            return current
        if len(current):
            covered = iou_matrix(detected.xyxy, current.xyxy).max(axis=1) >= SAME_FACE_IOU
            detected = detected.take(~covered)
        if len(detected) == 0:
            return current
        regions_before = self.regions_last
        found = self.scan(image_bgr, detected.xyxy)
        self.regions_last += regions_before
        if len(current) and len(found):
            found = found.take(iou_matrix(found.xyxy, current.xyxy).max(axis=1) < SAME_FACE_IOU)
        if len(found) == 0:
            return current
        self._row_id = np.concatenate([self._row_id, np.full(len(found), -1, np.int64)])
        self._row_misses = np.concatenate([self._row_misses, np.zeros(len(found), np.int64)])
        return _concat(current, found)

    def forget_misses(self) -> None:
        """A full scan has judged every face: misses start counting afresh."""
        self._misses = {}
        self._row_id = np.zeros(0, np.int64)
        self._row_misses = np.zeros(0, np.int64)
