"""Stable face ids across frames by greedy IoU matching (pure numpy).

Faces move little between consecutive frames, so the box overlap (IoU) between a
track's last box and this frame's detections identifies it: pairs are taken greedily
from the highest IoU down, each track and each detection at most once, pairs under
``iou_threshold`` never. A detection left over starts a new track with a new id (ids
are never reused, so a new face never inherits an old face's labels downstream); a
track left over survives ``max_missed`` frames unseen, then ends.

With appearance signatures (``engine.scenes.chip_signatures``) a pair is also refused
when the face's signature differs from the track's reference (cosine similarity under
``same_face_min``): a new person at an old person's place gets a new track, so none of
the old labels reach them. The reference follows the face slowly (an exponential average
at ``reference_rate`` per frame), so a face that turns or changes light over seconds keeps
its track while a cross-fade to someone else, which changes it within a second, does not.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.scenes import SAME_FACE_MIN
from engine.types import Faces


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] intersection over union of two sets of boxes."""
    a = np.asarray(a_xyxy, np.float32).reshape(-1, 1, 4)
    b = np.asarray(b_xyxy, np.float32).reshape(1, -1, 4)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, col) pairs, highest IoU first, each row and column used once, IoU >= threshold."""
    rows, cols = np.nonzero(iou >= threshold)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


@dataclass
class IouTracker:
    """Pipeline stage: fills ``Faces.track_id`` (ids start at 1 and are never reused)."""

    iou_threshold: float = 0.3
    max_missed: int = 5
    same_face_min: float = SAME_FACE_MIN
    reference_rate: float = 0.1
    refused: int = 0  # box matches refused on appearance since the last reset (for tests, logs)
    _ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64), repr=False)
    _xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32), repr=False)
    _missed: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64), repr=False)
    _refs: np.ndarray | None = field(default=None, repr=False)  # [tracks, D] reference signatures
    _next_id: int = 1
    _last: Faces = field(default_factory=Faces, repr=False)

    def __call__(self, faces: Faces, signatures: np.ndarray | None = None) -> Faces:
        """Faces with ``track_id`` filled; ``signatures`` [N, D] (unit rows) enable the appearance test.

        A zero row means "no signature to judge by" (a face cut by the frame's border, whose
        chip changes as it moves in or out): that face is matched by overlap alone."""
        n = len(faces)
        ids = np.full(n, -1, np.int64)
        matched_tracks = np.zeros(len(self._ids), bool)
        refs_new = None if signatures is None else np.array(signatures, np.float32, ndmin=2)
        if refs_new is not None and len(refs_new) != n:
            raise ValueError(f"{len(refs_new)} signatures for {n} faces")
        refs_old = self._refs if refs_new is not None and self._refs is not None else None
        if len(self._ids) and n:
            iou = iou_matrix(self._xyxy, faces.xyxy)
            if refs_old is not None:
                known = np.linalg.norm(refs_old, axis=1) > 0.5  # a zero row: no reference yet
                judged = np.linalg.norm(refs_new, axis=1) > 0.5  # a zero row: no signature to judge by
                similar = ((refs_old @ refs_new.T) >= self.same_face_min) | ~known[:, None] | ~judged[None, :]
                self.refused += int(np.sum((iou >= self.iou_threshold) & ~similar))
                iou = np.where(similar, iou, 0.0)
            for t, d in greedy_match(iou, self.iou_threshold):
                ids[d] = self._ids[t]
                matched_tracks[t] = True
                if refs_old is not None and known[t]:
                    rate = self.reference_rate if judged[d] else 0.0  # unjudged: keep the reference
                    ref = (1 - rate) * refs_old[t] + rate * refs_new[d]
                    refs_new[d] = ref / max(float(np.linalg.norm(ref)), 1e-6)
        new = ids < 0
        ids[new] = np.arange(self._next_id, self._next_id + int(new.sum()), dtype=np.int64)
        self._next_id += int(new.sum())

        # Tracks left over age by one frame; those seen in this frame restart at 0.
        missed = self._missed[~matched_tracks] + 1
        alive = missed <= self.max_missed
        self._ids = np.concatenate([ids, self._ids[~matched_tracks][alive]])
        self._xyxy = np.concatenate([faces.xyxy.astype(np.float32), self._xyxy[~matched_tracks][alive]])
        self._missed = np.concatenate([np.zeros(n, np.int64), missed[alive]])
        if refs_new is None:
            self._refs = None  # frames without signatures: no appearance test
        else:
            kept = (refs_old[~matched_tracks][alive] if refs_old is not None
                    else np.zeros((int(alive.sum()), refs_new.shape[1]), np.float32))
            self._refs = np.concatenate([refs_new, kept])
        self._last = faces.replace(track_id=ids)
        return self._last

    def predict(self) -> Faces:
        """The faces of the last tracked frame, ids included (for frames that skip detection)."""
        return self._last

    def end(self, track_ids) -> None:
        """End these tracks now (faces found gone after tracking): they leave :meth:`predict`
        and are never matched again; their ids are not reused."""
        gone = np.isin(self._ids, np.asarray(track_ids, np.int64))
        self._ids, self._xyxy, self._missed = self._ids[~gone], self._xyxy[~gone], self._missed[~gone]
        if self._refs is not None:
            self._refs = self._refs[~gone]
        self._last = self._last.take(~np.isin(self._last.track_id, np.asarray(track_ids, np.int64)))

    @property
    def active_ids(self) -> np.ndarray:
        """Ids of the tracks still alive (seen now or within ``max_missed`` frames)."""
        return self._ids.copy()

    def cut(self) -> None:
        """End all tracks (a new scene: a still, a shot cut); ids keep counting up."""
        self._ids = np.zeros((0,), np.int64)
        self._xyxy = np.zeros((0, 4), np.float32)
        self._missed = np.zeros((0,), np.int64)
        self._refs = None
        self._last = Faces()

    def reset(self) -> None:
        """Forget everything (a new source): tracks end and ids start again at 1."""
        self.cut()
        self._next_id = 1
        self.refused = 0
