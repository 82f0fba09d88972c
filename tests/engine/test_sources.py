"""Sources: every kind of input yields frames; every bad input says what is wrong with it."""
from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.sources import (CameraInfo, CameraSource, ImageSource, SourceError, VideoFileSource,
                            list_cameras, open_source)
from engine.write import move_index_to_front
from tests.engine.scenes import scene_frames, write_video

FRAMES = 20


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    images, _ = scene_frames(FRAMES, (320, 240), photos=1)
    return write_video(tmp_path_factory.mktemp("src") / "clip.mp4", images, fps=25.0)


@pytest.fixture(scope="module")
def truncated_streamable(tmp_path_factory, video) -> Path:
    """The clip with its index moved to the front, then cut in half: half the frames survive."""
    folder = tmp_path_factory.mktemp("cut")
    whole = shutil.copy(video, folder / "whole.mp4")
    assert move_index_to_front(whole)
    data = Path(whole).read_bytes()
    cut = folder / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_video_file_yields_every_frame_with_index_time_and_id(video):
    with open_source(video) as src:
        assert isinstance(src, VideoFileSource) and not src.is_live
        assert src.size_wh == (320, 240) and src.fps == pytest.approx(25.0)
        assert src.frame_count == FRAMES
        frames = list(src)
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [f.size_wh for f in frames] == [(320, 240)] * FRAMES
    assert np.allclose([f.timestamp_s for f in frames], np.arange(FRAMES) / 25.0, atol=1e-3)
    assert {f.source_id for f in frames} == {str(video)}
    assert src.end_reason is None


def test_video_frames_match_what_opencv_decodes(video):
    cap = cv2.VideoCapture(str(video))
    ok, first = cap.read()
    cap.release()
    with open_source(str(video)) as src:
        got = next(iter(src))
    assert ok and np.array_equal(got.image_bgr, first)


def test_loop_restarts_the_file_and_keeps_counting(video):
    with open_source(video, loop=True) as src:
        frames = list(itertools.islice(src, FRAMES * 2 + 5))
    assert [f.index for f in frames] == list(range(FRAMES * 2 + 5))
    times = [f.timestamp_s for f in frames]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert np.array_equal(frames[FRAMES].image_bgr, frames[0].image_bgr)


def test_close_stops_iteration(video):
    src = open_source(video)
    it = iter(src)
    next(it)
    src.close()
    assert list(it) == [] and src.closed


def test_image_file_yields_one_frame(tmp_path, astronaut_bgr):
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), astronaut_bgr)
    with open_source(path) as src:
        assert isinstance(src, ImageSource) and src.frame_count == 1 and src.size_wh == (512, 512)
        frames = list(src)
    assert len(frames) == 1 and np.array_equal(frames[0].image_bgr, astronaut_bgr)
    assert frames[0].index == 0 and frames[0].source_id == str(path)


def test_folder_yields_images_in_name_order_and_skips_unreadable_ones(tmp_path, astronaut_bgr):
    for name, k in (("b.jpg", 1), ("a.png", 0), ("c.png", 2)):
        img = astronaut_bgr.copy()
        img[:10, :10] = k * 100  # tell them apart
        cv2.imwrite(str(tmp_path / name), img)
    (tmp_path / "broken.jpg").write_text("not an image\n")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix\n")
    with open_source(tmp_path) as src:
        assert src.frame_count == 4  # candidates by suffix; the broken one is found when read
        frames = list(src)
    assert [Path(f.source_id).name for f in frames] == ["a.png", "b.jpg", "c.png"]
    assert [f.index for f in frames] == [0, 1, 3]  # each its place in the folder: the broken one shifts none
    assert all(f.still for f in frames) and src.unreadable == [tmp_path / "broken.jpg"]
    assert [int(f.image_bgr[5, 5, 0]) for f in (frames[0], frames[2])] == [0, 200]
    assert len(src.warnings) == 1 and "broken.jpg: not a readable image, skipped" in src.warnings[0]


def test_folder_without_images_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(SourceError, match=r"the folder holds no images"):
        open_source(tmp_path)


def test_missing_file_names_the_input(tmp_path):
    missing = tmp_path / "nowhere" / "clip.mp4"
    with pytest.raises(SourceError) as e:
        open_source(missing)
    assert str(e.value) == f"{missing}: no such file or folder"


def test_text_file_named_mp4_is_not_a_readable_video(tmp_path):
    fake = tmp_path / "x.mp4"
    fake.write_text("this is not a video\n" * 50)
    with pytest.raises(SourceError) as e:
        open_source(fake)
    assert str(e.value).startswith(f"{fake}: not a readable video")


def test_empty_file_is_refused(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(SourceError, match=r"empty.mp4: the file is empty"):
        open_source(empty)


def test_unreadable_image_file_is_refused(tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"\xff\xd8garbage")
    with pytest.raises(SourceError, match=r"photo.jpg: not a readable image"):
        open_source(bad)


def test_video_cut_in_half_with_index_at_the_end_is_not_readable(tmp_path, video):
    """OpenCV writes the mp4 index last: cut in half, nothing of it can be decoded."""
    cut = tmp_path / "half.mp4"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError) as e:
        open_source(cut)
    assert str(e.value).startswith(f"{cut}: not a readable video")
    assert "truncated" in str(e.value)


def test_truncated_video_ends_early_and_says_why(truncated_streamable):
    with open_source(truncated_streamable) as src:
        assert src.frame_count == FRAMES
        frames = list(src)
    assert 0 < len(frames) < FRAMES
    assert [f.index for f in frames] == list(range(len(frames)))
    assert src.end_reason == (f"{truncated_streamable}: ended early at frame {len(frames)} of {FRAMES}: "
                              "the file is truncated or damaged")


def test_nonexistent_camera_index_says_no_such_camera():
    found = list_cameras()
    if any(c.index == 7 for c in found):
        pytest.skip("this machine has a camera 7")
    listing = "none" if not found else ", ".join(f"{c.index} '{c.name}'" for c in found)
    for spec in (7, "7"):
        with pytest.raises(SourceError) as e:
            open_source(spec)
        assert str(e.value) == f"camera 7: no such camera (found: {listing})"


def test_unknown_camera_name_lists_the_cameras_found():
    with pytest.raises(SourceError, match=r"^camera 'No Such Cam 123': no such camera \(found: "):
        open_source("camera:No Such Cam 123")


def test_list_cameras_reads_the_video4linux_names():
    cams = list_cameras()
    assert all(isinstance(c, CameraInfo) for c in cams)
    sysfs = Path("/sys/class/video4linux")
    for c in cams:
        if sysfs.is_dir():
            assert (sysfs / f"video{c.index}" / "name").read_text().strip() == c.name


def test_first_camera_yields_live_frames():
    cams = list_cameras()
    if not cams:
        pytest.skip("no camera on this machine")
    try:
        src = open_source(cams[0].index)
    except SourceError as e:  # present but busy or not a capture device
        pytest.skip(str(e))
    with src:
        assert isinstance(src, CameraSource) and src.is_live
        frames = list(itertools.islice(src, 3))
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[0].timestamp_s <= frames[1].timestamp_s <= frames[2].timestamp_s
