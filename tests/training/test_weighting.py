"""Task weighting schemes: the math of each on hand-made losses."""
from __future__ import annotations

import math

import pytest
import torch

from training.weighting import (DynamicWeights, EqualWeights, LossWeightLayer, UncertaintyWeights,
                                make_weighting)

NAMES = ("gender", "race", "age")


def losses_of(*values, requires_grad=False):
    return {n: torch.tensor(v, requires_grad=requires_grad) for n, v in zip(NAMES, values)}


def minimise(module, losses, steps=3000, lr=0.05):
    """Train only the weighting's own parameters against fixed losses."""
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    for _ in range(steps):
        objective, _ = module(losses)
        opt.zero_grad()
        objective.backward()
        opt.step()
    return module(losses)[1]


def test_loss_weight_layer_weights_are_positive_sum_to_one_and_start_random():
    a, b = LossWeightLayer(NAMES, seed=0), LossWeightLayer(NAMES, seed=1)
    _, wa = a(losses_of(0.7, 1.6, 0.05))
    _, wb = b(losses_of(0.7, 1.6, 0.05))
    assert sum(wa.values()) == pytest.approx(1.0) and all(w > 0 for w in wa.values())
    assert wa != wb  # "These weights are set randomly initially"


def test_loss_weight_layer_objective_is_eq_3_5_with_the_lambda_term_on_the_layer_weights():
    layer = LossWeightLayer(NAMES, lam=0.1, seed=4)
    values = (0.7, 1.6, 0.05)
    objective, w = layer(losses_of(*values))
    ws = [w[n] for n in NAMES]
    want = sum(wi * li for wi, li in zip(ws, values)) + 0.1 * sum(wi * wi for wi in ws)
    assert objective.item() == pytest.approx(want, rel=1e-6)


def test_loss_weight_layer_learns_the_regularised_minimiser_smaller_weight_for_larger_loss():
    # min Σ w_i L_i + λ Σ w_i² on the simplex: w_i = (μ - L_i) / 2λ with Σ w_i = 1.
    values, lam = (0.30, 0.35, 0.40), 0.1
    mu = (2 * lam + sum(values)) / 3
    want = [(mu - v) / (2 * lam) for v in values]  # 0.5833, 0.3333, 0.0833
    got = minimise(LossWeightLayer(NAMES, lam=lam, seed=0), losses_of(*values))
    assert [got[n] for n in NAMES] == pytest.approx(want, abs=5e-3)


def test_loss_weight_layer_larger_lambda_pulls_the_weights_towards_equal():
    values = (0.2, 0.5, 1.1)
    spread = []
    for lam in (0.1, 1.0, 10.0):
        got = minimise(LossWeightLayer(NAMES, lam=lam, seed=0), losses_of(*values), steps=2000)
        spread.append(max(got.values()) - min(got.values()))
    assert spread[0] > spread[1] > spread[2]
    assert spread[2] == pytest.approx((1.1 - 0.2) / 20, abs=5e-3)  # (L_max - L_min) / 2λ


def test_loss_weight_layer_gradient_reaches_the_network_scaled_by_each_weight():
    layer = LossWeightLayer(NAMES, lam=0.1, seed=2)
    x = torch.tensor(1.0, requires_grad=True)
    objective, w = layer({"gender": 2 * x, "race": 3 * x, "age": 5 * x})
    objective.backward()
    assert x.grad.item() == pytest.approx(2 * w["gender"] + 3 * w["race"] + 5 * w["age"], rel=1e-5)


def test_frozen_tasks_are_left_out_and_the_rest_renormalised():
    layer = LossWeightLayer(NAMES, seed=0)
    _, all3 = layer(losses_of(0.5, 0.5, 0.5))
    _, two = layer({"gender": torch.tensor(0.5), "age": torch.tensor(0.5)})
    assert set(two) == {"gender", "age"} and sum(two.values()) == pytest.approx(1.0)
    assert two["gender"] / two["age"] == pytest.approx(all3["gender"] / all3["age"], rel=1e-5)
    with pytest.raises(KeyError, match="unknown tasks"):
        layer({"shoe_size": torch.tensor(1.0)})


def test_equal_weights_is_the_average_loss():
    objective, w = EqualWeights(NAMES)(losses_of(0.3, 0.6, 1.2))
    assert objective.item() == pytest.approx(0.7)
    assert w == {n: pytest.approx(1 / 3) for n in NAMES}


def test_uncertainty_objective_matches_kendall_and_learns_log_variance_at_its_optimum():
    u = UncertaintyWeights(NAMES, ("binary", "multiclass", "regression"))
    with torch.no_grad():
        u.log_vars.copy_(torch.tensor([0.5, -0.3, 1.0]))
    values = (0.4, 1.5, 0.02)
    objective, w = u(losses_of(*values))
    want = (math.exp(-0.5) * 0.4 + 0.25) + (math.exp(0.3) * 1.5 - 0.15) + (0.5 * math.exp(-1.0) * 0.02 + 0.5)
    assert objective.item() == pytest.approx(want, rel=1e-6)
    assert w["age"] == pytest.approx(0.5 * math.exp(-1.0), rel=1e-6)
    # d/ds [c e^{-s} L + s/2] = 0  =>  s* = log(2 c L): classification log(2L), regression log(L)
    learnt = UncertaintyWeights(NAMES, ("binary", "multiclass", "regression"))
    minimise(learnt, losses_of(*values), steps=4000)
    assert learnt.log_vars.tolist() == pytest.approx([math.log(0.8), math.log(3.0), math.log(0.02)], abs=2e-2)


def test_dynamic_weights_move_to_the_hard_task_while_the_net_sees_plain_weighted_losses():
    d = DynamicWeights(NAMES)
    x = torch.tensor(1.0, requires_grad=True)
    objective, w0 = d({"gender": 0.2 * x, "race": 1.0 * x, "age": 0.5 * x})
    assert w0 == {n: pytest.approx(1 / 3) for n in NAMES}  # starts equal
    objective.backward()
    assert x.grad.item() == pytest.approx((0.2 + 1.0 + 0.5) / 3, rel=1e-5)  # weights held constant for the net
    got = minimise(d, losses_of(0.2, 1.0, 0.5), steps=200, lr=0.01)
    assert got["race"] > got["age"] > got["gender"]  # larger loss, larger weight (seed 004, eq. 10)
    assert sum(got.values()) == pytest.approx(1.0)


def test_make_weighting_builds_each_kind_and_names_an_unknown_one():
    kinds = ("binary", "multiclass", "regression")
    assert isinstance(make_weighting("loss_weight_layer", NAMES, kinds), LossWeightLayer)
    assert isinstance(make_weighting("equal", NAMES, kinds), EqualWeights)
    assert isinstance(make_weighting("uncertainty", NAMES, kinds), UncertaintyWeights)
    assert isinstance(make_weighting("dynamic", NAMES, kinds), DynamicWeights)
    with pytest.raises(ValueError, match="'gradnorm' is not known"):
        make_weighting("gradnorm", NAMES, kinds)
