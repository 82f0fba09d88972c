"""The stem cache's key changes with everything its stored activations depend on, and only with that."""
import dataclasses

import numpy as np
import pytest
import torch

from engine.modelspec import TaskSpec
from tests.training.training_fixtures import TinyBackbone
from training.model import MultiTaskNet
from training.stems import StemDataset, stem_key

AGE_REGRESSION = TaskSpec(name="age", kind="regression", unit="years", range=(21.0, 60.0))
AGE_EXPECTATION = dataclasses.replace(AGE_REGRESSION, kind="expectation", range=None,
                                      bins=tuple(float(a) for a in range(21, 61)))


def _chips_dir(tmp_path):
    np.save(tmp_path / "chips.npy", np.zeros((2, 150, 150, 3), np.uint8))
    (tmp_path / "index.csv").write_text("file,row,status\na.jpg,0,ok\nb.jpg,1,ok\n")
    return tmp_path


def test_key_follows_the_frozen_weights_samples_and_flip_but_not_the_heads(tmp_path):
    chips = _chips_dir(tmp_path)
    backbone = TinyBackbone()
    regression = MultiTaskNet(backbone, [AGE_REGRESSION], shared_dims=(8,), head_dim=4)
    expectation = MultiTaskNet(backbone, [AGE_EXPECTATION], shared_dims=(8,), head_dim=4)
    files = ["a.jpg", "b.jpg"]
    key = stem_key(regression, 1, chips, files, False)
    assert key == stem_key(expectation, 1, chips, files, False)  # targets come from the run, not the cache
    assert key != stem_key(regression, 1, chips, files, True)
    assert key != stem_key(regression, 1, chips, files[:1], False)
    assert key != stem_key(regression, 2, chips, files, False)
    with torch.no_grad():
        next(iter(backbone.stages[0].parameters())).add_(1.0)
    assert key != stem_key(regression, 1, chips, files, False)


def test_a_cache_opened_with_targets_of_another_length_is_refused(tmp_path):
    path = tmp_path / "s.npy"
    np.save(path, np.zeros((3, 1, 2, 2, 2), np.float16))
    assert len(StemDataset.open(path, {"age": torch.zeros(3)}, flip=False)) == 3
    with pytest.raises(ValueError, match="3 cached samples, but 2 targets of age"):
        StemDataset.open(path, {"age": torch.zeros(2)}, flip=False)
