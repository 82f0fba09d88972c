"""Class-balanced drawing (training/balance.py and MemorySplit's weighted draw)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training.balance import age_bands, group_shares, sample_weights
from training.batches import MemorySplit
from training.samples import Sample


def utk(age, gender=0):
    return Sample(f"{age}_{gender}.jpg", {"gender": gender, "race": 0, "age": age})


def mtfl(pose):
    return Sample(f"p{pose}.jpg", {"gender": 1, "pose": pose})


def test_age_bands_are_the_evaluation_bands_with_both_ends_included():
    assert age_bands(np.array([0, 12, 13, 20, 21, 40, 41, 60, 61, 116])).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_power_one_draws_every_group_equally_and_power_zero_is_the_plain_shuffle():
    samples = [utk(30)] * 80 + [utk(70)] * 15 + [utk(5)] * 5
    flat = sample_weights(samples, ["age"], 0.0)
    assert np.allclose(flat, 1.0)
    even = sample_weights(samples, ["age"], 1.0)
    assert group_shares(samples, "age", even) == pytest.approx({0: 1 / 3, 2: 1 / 3, 4: 1 / 3})
    half = group_shares(samples, "age", sample_weights(samples, ["age"], 0.5))
    assert 0.05 < half[0] < 1 / 3 and 1 / 3 < half[2] < 0.80  # in between


def test_a_joined_dataset_keeps_each_parts_share_and_each_task_balances_its_own_labels():
    samples = [utk(30)] * 60 + [utk(70)] * 20 + [mtfl(2)] * 90 + [mtfl(0)] * 10
    w = sample_weights(samples, ["age", "pose"], 1.0)
    utk_share = w[:80].sum() / w.sum()
    assert utk_share == pytest.approx(80 / 180)  # mean weight 1 within each task's labelled samples
    assert group_shares(samples, "pose", w) == pytest.approx({0: 0.5, 2: 0.5})
    assert group_shares(samples, "age", w) == pytest.approx({2: 0.5, 4: 0.5})
    assert np.allclose(sample_weights(samples, ["smile"], 1.0), 1.0)  # no sample labelled: no change


def test_a_weighted_split_draws_by_its_weights_reproducibly():
    n = 200
    inputs = torch.zeros(n, 2, 2, 3, dtype=torch.uint8)
    ids = torch.arange(n, dtype=torch.float32)
    weights = torch.ones(n, dtype=torch.float64)
    weights[:100] = 0.0  # never drawn
    weights[100:110] = 20.0  # 10 samples with as much weight as the other 90 together... and more
    split = MemorySplit(inputs, {"id": ids}, weights=weights)
    drawn = torch.cat([t["id"] for _, t in split.train_batches(32, seed=3, epoch=1)])
    again = torch.cat([t["id"] for _, t in split.train_batches(32, seed=3, epoch=1)])
    assert len(drawn) == n and torch.equal(drawn, again)
    assert (drawn >= 100).all()
    heavy = ((drawn >= 100) & (drawn < 110)).float().mean().item()
    assert 0.55 < heavy < 0.85  # expected 200 / 290 = 0.69
    joined = MemorySplit.concat([split, MemorySplit(inputs[:5], {"id": ids[:5]})])
    assert joined.weights is not None and joined.weights[-5:].tolist() == [1.0] * 5
