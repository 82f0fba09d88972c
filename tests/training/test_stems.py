"""The stem cache's key changes with everything its stored activations and targets depend on."""
import dataclasses

import numpy as np

from engine.modelspec import TaskSpec
from tests.training.training_fixtures import TinyBackbone
from training.model import MultiTaskNet
from training.stems import stem_key

AGE_REGRESSION = TaskSpec(name="age", kind="regression", unit="years", range=(21.0, 60.0))
AGE_EXPECTATION = dataclasses.replace(AGE_REGRESSION, kind="expectation", range=None,
                                      bins=tuple(float(a) for a in range(21, 61)))


def _chips_dir(tmp_path):
    np.save(tmp_path / "chips.npy", np.zeros((2, 150, 150, 3), np.uint8))
    (tmp_path / "index.csv").write_text("file,row,status\na.jpg,0,ok\nb.jpg,1,ok\n")
    return tmp_path


def test_key_differs_when_the_age_target_encoding_differs(tmp_path):
    chips = _chips_dir(tmp_path)
    backbone = TinyBackbone()
    regression = MultiTaskNet(backbone, [AGE_REGRESSION], shared_dims=(8,), head_dim=4)
    expectation = MultiTaskNet(backbone, [AGE_EXPECTATION], shared_dims=(8,), head_dim=4)
    files = ["a.jpg", "b.jpg"]
    assert stem_key(regression, 1, chips, files, False) != stem_key(expectation, 1, chips, files, False)
    assert stem_key(regression, 1, chips, files, False) == stem_key(regression, 1, chips, files, False)
    assert stem_key(regression, 1, chips, files, False) != stem_key(regression, 1, chips, files, True)
