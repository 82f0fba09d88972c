"""The configured losses: DLDL's Gaussian label distribution, the age-loss registry, label smoothing."""
from __future__ import annotations

import math

import pytest
import torch

from engine.modelspec import TaskSpec
from training.config import LossConfig
from training.losses import (LossConfigError, create_losses, dldl, expectation, gaussian_targets, smoothed_loss)

AGE = TaskSpec(name="age", kind="expectation", unit="years", bins=tuple(float(a) for a in range(21, 61)))
AGE_REG = TaskSpec(name="age", kind="regression", unit="years", range=(21.0, 60.0))
GENDER = TaskSpec(name="gender", kind="binary", labels=("male", "female"))
RACE = TaskSpec(name="race", kind="multiclass", labels=("a", "b", "c", "d", "e"))
BINS = torch.tensor(AGE.bins)


@pytest.mark.parametrize("age", [29.0, 33.4, 40.5, 51.75])  # >= 4 sigma from the range's ends
def test_expectation_of_the_gaussian_target_recovers_the_age(age):
    q = gaussian_targets(torch.tensor([age]), BINS, sigma=2.0)
    assert q.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert (q * BINS).sum().item() == pytest.approx(age, abs=1e-3)  # the cut tails are negligible
    assert abs(BINS[q.argmax()] - age) <= 0.5


def test_dldl_is_zero_at_its_target_and_grows_with_the_distance():
    target = torch.tensor([30.0, 45.0])
    logits = torch.log(gaussian_targets(target, BINS, 2.0).clamp_min(1e-30))
    cfg = LossConfig(age="dldl", age_sigma=2.0)
    assert dldl(AGE, logits, target, cfg).item() == pytest.approx(0.0, abs=1e-5)
    near = torch.log(gaussian_targets(target + 1, BINS, 2.0).clamp_min(1e-30))
    far = torch.log(gaussian_targets(target + 6, BINS, 2.0).clamp_min(1e-30))
    assert 0 < dldl(AGE, near, target, cfg).item() < dldl(AGE, far, target, cfg).item()


def test_gradient_descent_on_dldl_moves_the_decoded_age_to_the_target():
    target = torch.tensor([24.0, 38.0, 57.0])
    logits = torch.zeros(3, len(BINS), requires_grad=True)  # uniform: expectation 40.5 for all three
    opt = torch.optim.SGD([logits], lr=5.0)
    cfg = LossConfig(age="dldl", age_sigma=2.0, age_l1=1.0)
    for _ in range(300):
        opt.zero_grad()
        dldl(AGE, logits, target, cfg).backward()
        opt.step()
    assert expectation(AGE, logits.detach()).tolist() == pytest.approx(target.tolist(), abs=0.3)


def test_the_expectation_l1_term_adds_the_scaled_error():
    target = torch.tensor([30.0])
    logits = torch.log(gaussian_targets(torch.tensor([34.0]), BINS, 2.0).clamp_min(1e-30))
    base = dldl(AGE, logits, target, LossConfig(age_sigma=2.0)).item()
    with_l1 = dldl(AGE, logits, target, LossConfig(age_sigma=2.0, age_l1=1.0)).item()
    assert with_l1 - base == pytest.approx(4.0 / 39.0, abs=1e-3)


def test_age_losses_are_chosen_by_name_and_checked_against_the_age_kind():
    out = {"age": torch.tensor([0.5, 0.2])}
    target = {"age": torch.tensor([0.25, 0.2])}
    assert create_losses(LossConfig(age="l1"), [AGE_REG])(out, target)["age"].item() == pytest.approx(0.125)
    assert create_losses(LossConfig(age="mse"), [AGE_REG])(out, target)["age"].item() == pytest.approx(0.5 * 0.0625 / 2)
    with pytest.raises(LossConfigError, match="loss.age = 'dldl' needs model.age_kind expectation"):
        create_losses(LossConfig(age="dldl"), [AGE_REG])
    with pytest.raises(LossConfigError, match="age_sigma"):
        create_losses(LossConfig(age="dldl", age_sigma=0.0), [AGE])


def test_label_smoothing_pulls_targets_in_and_raises_the_loss_of_a_confident_right_answer():
    logits = torch.tensor([8.0, -8.0])
    target = torch.tensor([1.0, 0.0])
    plain = smoothed_loss(GENDER, logits, target, 0.0).item()
    smooth = smoothed_loss(GENDER, logits, target, 0.1).item()
    assert plain < 1e-3 < smooth
    expected = -(0.95 * math.log(torch.sigmoid(torch.tensor(8.0)).item()) + 0.05 * math.log(torch.sigmoid(torch.tensor(-8.0)).item()))
    assert smooth == pytest.approx(expected, rel=1e-4)
    race_logits = torch.tensor([[5.0, 0, 0, 0, 0]])
    assert smoothed_loss(RACE, race_logits, torch.tensor([0.0]), 0.1).item() > smoothed_loss(
        RACE, race_logits, torch.tensor([0.0]), 0.0).item()
