"""Batched augmentation keeps the aligned face where the engine put it, within a stated bound."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from training.augment import available_augments, create_augmenter, max_centre_shift_px
from training.config import AugmentConfig, load_config

SIDE = 150
V2 = load_config("utkface_thesis_v2").augment  # the jitter the shipped recipe trains with


def blob_chips(n: int, cx: float, cy: float, radius: float = 6.0) -> torch.Tensor:
    """n uint8 chips [n,150,150,3]: a bright Gaussian blob at (cx, cy) on grey."""
    y, x = torch.meshgrid(torch.arange(SIDE, dtype=torch.float32), torch.arange(SIDE, dtype=torch.float32), indexing="ij")
    blob = 40 + 200 * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius ** 2))
    return blob.round().to(torch.uint8)[None, :, :, None].expand(n, SIDE, SIDE, 3).contiguous()


def centroids(chips: torch.Tensor) -> torch.Tensor:
    """[n,2] intensity-weighted centre (x, y) of what is brighter than the background."""
    w = (chips.float().mean(-1) - 60).clamp_min(0)
    y, x = torch.meshgrid(torch.arange(SIDE, dtype=torch.float32), torch.arange(SIDE, dtype=torch.float32), indexing="ij")
    total = w.sum((1, 2))
    return torch.stack([(w * x).sum((1, 2)) / total, (w * y).sum((1, 2)) / total], 1)


def geometry_only(cfg: AugmentConfig) -> AugmentConfig:
    return AugmentConfig(scale=cfg.scale, rotate=cfg.rotate, shift=cfg.shift)


def test_the_recipe_jitter_moves_a_centred_face_at_most_the_stated_bound_and_does_move_it():
    torch.manual_seed(0)
    cfg = geometry_only(V2)
    bound = max_centre_shift_px(cfg, SIDE)  # shift 0.03 of 150 px per axis: 6.4 px
    assert bound == pytest.approx(6.36, abs=0.01)
    chips = blob_chips(256, 74.5, 74.5)  # the pixel grid's centre
    moved = (centroids(create_augmenter(cfg)(chips)) - torch.tensor([74.5, 74.5])).norm(dim=1)
    assert moved.max().item() <= bound + 0.5  # + half a pixel of resampling
    assert moved.mean().item() > 1.0  # the jitter is real


def test_an_off_centre_landmark_moves_within_the_bound_at_its_radius():
    torch.manual_seed(1)
    cfg = geometry_only(V2)
    point = (74.5 + 30, 74.5 - 20)  # about where an eye sits in the engine's chip
    radius = (30 ** 2 + 20 ** 2) ** 0.5
    bound = max_centre_shift_px(cfg, SIDE, radius)
    moved = (centroids(create_augmenter(cfg)(blob_chips(256, *point, radius=4))) - torch.tensor(point)).norm(dim=1)
    assert moved.max().item() <= bound + 0.5
    assert bound < 12  # the recipe keeps landmarks within 12 px (8 % of the chip)


def test_flip_mirrors_about_half_of_the_batch_exactly():
    torch.manual_seed(2)
    chips = blob_chips(400, 40.0, 74.5)
    out = create_augmenter(AugmentConfig(), flip=True)(chips)
    mirrored = torch.isclose(out, chips.flip(2).float()).all(dim=(1, 2, 3))
    same = torch.isclose(out, chips.float()).all(dim=(1, 2, 3))
    assert bool((mirrored ^ same).all())
    assert 150 < int(mirrored.sum()) < 250


def test_photometric_and_degradation_keep_the_face_in_place_and_the_range():
    torch.manual_seed(3)
    cfg = dataclasses.replace(V2, scale=0.0, rotate=0.0, shift=0.0, blur=1.0, downscale=1.0)
    chips = blob_chips(64, 74.5, 74.5)
    out = create_augmenter(cfg)(chips)
    assert out.dtype == torch.float32 and out.shape == chips.shape
    assert out.min().item() >= 0 and out.max().item() <= 255
    assert (centroids(out) - torch.tensor([74.5, 74.5])).norm(dim=1).max().item() < 1.0
    assert not torch.equal(out, chips.float())


def test_nothing_switched_on_returns_the_chips_untouched_and_every_recipe_piece_is_registered():
    chips = blob_chips(2, 74.5, 74.5)
    assert create_augmenter(AugmentConfig(), flip=False)(chips) is chips
    everything = dataclasses.replace(V2, low_light=0.1, grey=0.1, occlude=0.1)
    assert create_augmenter(everything, flip=True).names == available_augments()


def test_webcam_degradations_do_what_they_name():
    torch.manual_seed(0)
    chips = blob_chips(32, 74.5, 74.5)
    chips[..., 0] //= 2  # a colour chip: its channels differ
    grey = create_augmenter(AugmentConfig(grey=1.0))(chips)
    assert torch.allclose(grey[..., 0], grey[..., 1]) and torch.allclose(grey[..., 1], grey[..., 2])
    dark = create_augmenter(AugmentConfig(low_light=1.0))(chips)
    assert dark.mean() < 0.8 * chips.float().mean()
    hidden = create_augmenter(AugmentConfig(occlude=1.0))(chips)
    changed = (hidden != chips.float()).any(dim=3).float().mean(dim=(1, 2))  # share of pixels per chip
    assert (changed > 0.0).all() and (changed < 0.35 * 0.35 + 0.01).all()


def test_a_flip_mirrors_the_labels_that_swap_sides_and_leaves_the_others():
    torch.manual_seed(0)
    chips = blob_chips(64, 40.5, 74.5)  # a blob left of centre: a flipped chip has it on the right
    nan = float("nan")
    pose = torch.tensor([float(i % 5) if i % 7 else nan for i in range(64)])
    gender = torch.tensor([float(i % 2) for i in range(64)])
    out, targets = create_augmenter(AugmentConfig(), flip=True, mirror={"pose": (4, 3, 2, 1, 0)})(
        chips, {"pose": pose, "gender": gender})
    flipped = centroids(out)[:, 0] > 74.5
    assert 10 < int(flipped.sum()) < 54  # both kinds of row are present
    known = torch.isfinite(pose)
    assert torch.equal(targets["pose"][flipped & known], 4 - pose[flipped & known])
    assert torch.equal(targets["pose"][~flipped & known], pose[~flipped & known])
    assert torch.isnan(targets["pose"][~known]).all()
    assert torch.equal(targets["gender"], gender)  # gender does not swap sides
    assert torch.isnan(pose[~known]).all() and pose[known].max() == 4  # the input targets are not changed
