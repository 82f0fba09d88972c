"""Test videos made of real face photos at known places (the ground truth of the tests).

Photos: the public-domain portraits in ../shared/data/faces-pd when present, else crops of
scikit-image's astronaut portrait (public domain), so the tests also run in a user's clone.
Each photo is pasted on a plain background and drifts a little every frame; where it is
pasted is the truth the pipeline's boxes are checked against.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.pipeline import Pipeline, PipelineConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
FACES_PD = REPO_ROOT.parent / "shared" / "data" / "faces-pd"
PHOTOS_PD = ("B000287.jpg", "C001079.jpg", "D000622.jpg")


def portrait_photos(count: int = 2) -> list[np.ndarray]:
    """``count`` real portraits (BGR), each about 225×275 with one frontal face."""
    if FACES_PD.is_dir() and all((FACES_PD / n).is_file() for n in PHOTOS_PD[:count]):
        return [cv2.imread(str(FACES_PD / n)) for n in PHOTOS_PD[:count]]
    from skimage import data

    astronaut = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    crop = astronaut[20:295, 110:335]  # her head and shoulders, 225×275
    return [crop if i % 2 == 0 else np.ascontiguousarray(crop[:, ::-1]) for i in range(count)]


@dataclass(frozen=True)
class Scene:
    path: Path
    frames: int
    fps: float
    size_wh: tuple[int, int]
    photo_xyxy: np.ndarray  # [frames, photos, 4]: where each photo lies in each frame


def scene_frames(frames: int, size_wh=(640, 480), photos: int = 2, drift_px: float = 2.0):
    """(images, photo_xyxy): photos side by side drifting right and down by ``drift_px``/frame."""
    w, h = size_wh
    pics = portrait_photos(photos)
    ph, pw = pics[0].shape[:2]
    fit = min(1.0, 0.8 * h / ph, (w / photos - 60) / pw)  # small frames get smaller photos
    if fit < 1.0:
        pics = [cv2.resize(p, (round(pw * fit), round(ph * fit)), interpolation=cv2.INTER_AREA) for p in pics]
    images, boxes = [], []
    for k in range(frames):
        img = np.full((h, w, 3), (70, 90, 80), np.uint8)
        row = []
        for j, pic in enumerate(pics):
            ph, pw = pic.shape[:2]
            x = int(round(20 + j * (pw + 60) + drift_px * k))
            y = int(round(40 + 0.5 * drift_px * k))
            x, y = min(x, w - pw), min(y, h - ph)
            img[y:y + ph, x:x + pw] = pic
            row.append((x, y, x + pw, y + ph))
        images.append(img)
        boxes.append(row)
    return images, np.asarray(boxes, np.float32)


def write_video(path: Path, images: list[np.ndarray], fps: float = 30.0, fourcc: str = "mp4v") -> Path:
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"cannot write test video {path}"
    for img in images:
        writer.write(img)
    writer.release()
    return path


def make_scene(path: Path, frames: int = 30, fps: float = 30.0, size_wh=(640, 480), photos: int = 2,
               drift_px: float = 2.0) -> Scene:
    images, boxes = scene_frames(frames, size_wh, photos, drift_px)
    write_video(path, images, fps)
    return Scene(path, frames, fps, size_wh, boxes)


def centre_inside(box_xyxy, region_xyxy) -> bool:
    cx, cy = (box_xyxy[0] + box_xyxy[2]) / 2, (box_xyxy[1] + box_xyxy[3]) / 2
    return region_xyxy[0] <= cx <= region_xyxy[2] and region_xyxy[1] <= cy <= region_xyxy[3]


def read_all_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    cap.release()
    return out


BLANK_FRAMES = 4  # sample_clip: grey frames before the faces (nothing tracked, then a hard cut)
SAMPLE_FRAMES = range(84, 108)  # sample_clip: the sample video's frames after them (3 to 4 faces, one entering)


def sample_clip(path: Path, sample: Path) -> Path:
    """A short clip of the sample video (``SAMPLE_FRAMES``) after ``BLANK_FRAMES`` grey frames."""
    cap = cv2.VideoCapture(str(sample))
    images = []
    for k in range(SAMPLE_FRAMES.stop):
        ok, image = cap.read()
        assert ok, f"{sample}: frame {k} unreadable"
        if k in SAMPLE_FRAMES:
            images.append(image)
    cap.release()
    grey = np.full_like(images[0], 110)
    return write_video(path, [grey] * BLANK_FRAMES + images)


def twin(pipeline: Pipeline, **config) -> Pipeline:
    """A pipeline with other settings on the same model, detector and aligner (nothing reloaded)."""
    return Pipeline(PipelineConfig(pipeline.config.model_path, **config), pipeline.model, pipeline.detector,
                    pipeline.aligner)
