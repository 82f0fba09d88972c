"""MultiTaskNet (thesis Fig. 3.2) and the per-task losses."""
from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn

from engine.modelspec import TaskSpec
from training.model import MultiTaskNet, build_from_checkpoint, soft_bin_targets, task_loss, task_losses
from tests.training.training_fixtures import TinyBackbone  # importing it registers "tiny-test"

TASKS = (
    TaskSpec("gender", "binary", labels=("male", "female")),
    TaskSpec("race", "multiclass", labels=("white", "black", "asian", "indian", "other")),
    TaskSpec("age", "regression", unit="years", range=(21.0, 60.0)),
    TaskSpec("age_bins", "expectation", unit="years", bins=tuple(float(a) for a in range(21, 61))),
    TaskSpec("eyes", "landmarks", points=5),
)


@pytest.fixture
def chips(astronaut_bgr) -> torch.Tensor:
    """Four 150x150 RGB crops of the astronaut photo as uint8 NHWC."""
    rgb = astronaut_bgr[:, :, ::-1]
    crops = [rgb[y:y + 150, x:x + 150] for y, x in ((30, 170), (60, 180), (0, 0), (300, 300))]
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops)))


def test_forward_gives_one_output_per_task_with_the_shape_of_its_kind(chips):
    torch.manual_seed(0)
    net = MultiTaskNet(TinyBackbone(), TASKS).eval()
    out = net(chips)
    assert list(out) == [t.name for t in TASKS]
    assert out["gender"].shape == (4,)
    assert out["race"].shape == (4, 5)
    assert out["age"].shape == (4,)
    assert out["age_bins"].shape == (4, 40)
    assert out["eyes"].shape == (4, 5, 2)


def test_layers_follow_the_thesis_order_shared_linear_leakyrelu_batchnorm_head_linear_dropout_leakyrelu_linear():
    net = MultiTaskNet(TinyBackbone(), TASKS[:1], shared_dims=(32, 24), head_dim=12, dropout=0.4)
    assert [type(m) for m in net.shared[0]] == [nn.Linear, nn.LeakyReLU, nn.BatchNorm1d]
    assert net.shared[0][0].in_features == 16 and net.shared[1][0].out_features == 24
    head = net.heads["gender"]
    assert [type(m) for m in head] == [nn.Linear, nn.Dropout, nn.LeakyReLU, nn.Linear]
    assert head[0].in_features == 24 and head[0].out_features == 12 and head[1].p == 0.4
    assert head[3].out_features == 1


def test_baseline_shape_is_an_output_layer_straight_on_the_backbone_features():
    net = MultiTaskNet(TinyBackbone(), TASKS[:2], shared_dims=(), head_dim=0)
    assert len(net.shared) == 0
    assert [type(m) for m in net.heads["race"]] == [nn.Linear]
    assert net.heads["race"][0].in_features == 16 and net.heads["race"][0].out_features == 5


def test_the_net_normalises_uint8_chips_itself_with_the_backbones_mean_and_scale(chips):
    net = MultiTaskNet(TinyBackbone(), TASKS[:1])
    x = net.preprocess(chips)
    want = (chips.permute(0, 3, 1, 2).float() - torch.tensor(TinyBackbone.mean_rgb).view(1, 3, 1, 1)) / 256
    assert x.dtype == torch.float32 and x.shape == (4, 3, 150, 150)
    torch.testing.assert_close(x, want)


def test_gray_backbone_with_smaller_input_gets_luma_and_an_area_downscale(chips):
    class Gray50(TinyBackbone):
        color, input_size = "GRAY", 50

        def __init__(self):
            super().__init__()
            self.stages[0][0] = nn.Conv2d(1, 8, 5, stride=5)

    net = MultiTaskNet(Gray50(), TASKS[:1])
    x = net.preprocess(chips)
    assert x.shape == (4, 1, 50, 50)
    rgb = (chips.permute(0, 3, 1, 2).float() - torch.tensor(Gray50.mean_rgb).view(1, 3, 1, 1)) / 256
    gray = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    torch.testing.assert_close(x[:, 0, 0, 0], gray[:, :3, :3].mean(dim=(1, 2)))


def test_forward_from_stem_equals_forward(chips):
    torch.manual_seed(1)
    net = MultiTaskNet(TinyBackbone(), TASKS).eval()
    full = net(chips)
    for k in (1, 2):
        part = net.forward_from_stem(net.stem(chips, k), k)
        for name in full:
            torch.testing.assert_close(part[name], full[name])
    half = net.forward_from_stem(net.stem(chips, 1).half(), 1)  # as read from the float16 cache
    torch.testing.assert_close(half["race"], full["race"], atol=2e-2, rtol=0)


def test_losses_per_kind_match_their_formulas():
    out = {"gender": torch.tensor([2.0, -1.0]), "race": torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 3.0, 0, 0]]),
           "age": torch.tensor([0.5, 0.1]), "eyes": torch.full((2, 5, 2), 0.5)}
    tgt = {"gender": torch.tensor([1.0, 1.0]), "race": torch.tensor([0.0, 1.0]), "age": torch.tensor([0.7, 0.1]),
           "eyes": torch.full((2, 5, 2), 0.25)}
    got = task_losses(out, tgt, [t for t in TASKS if t.name in out])
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert got["gender"].item() == pytest.approx(-(math.log(sig(2.0)) + math.log(sig(-1.0))) / 2, rel=1e-6)
    ce0 = -math.log(math.e / (math.e + 4))
    ce1 = -math.log(1 / (math.exp(3) + 4))
    assert got["race"].item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
    assert got["age"].item() == pytest.approx(0.5 * (0.2 ** 2 + 0) / 2, rel=1e-5)  # thesis eq. 3.2
    assert got["eyes"].item() == pytest.approx(0.0625, rel=1e-6)


def test_expectation_target_splits_a_value_between_its_two_nearest_bins():
    bins = torch.tensor([21.0, 22.0, 23.0, 24.0])
    q = soft_bin_targets(torch.tensor([22.25, 21.0, 30.0, 10.0]), bins)
    torch.testing.assert_close(q[0], torch.tensor([0.0, 0.75, 0.25, 0.0]))
    torch.testing.assert_close(q[1], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(q[2], torch.tensor([0.0, 0.0, 0.0, 1.0]))  # clamped to the range
    torch.testing.assert_close(q[3], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close((q[:2] * bins).sum(1), torch.tensor([22.25, 21.0]))


def test_expectation_loss_is_cross_entropy_against_the_soft_target_and_smallest_there():
    task = TaskSpec("a", "expectation", bins=(0.0, 1.0, 2.0))
    target = torch.tensor([0.5])
    q = torch.tensor([[0.5, 0.5, 0.0]])
    logits = torch.tensor([[0.3, -0.2, 1.0]])
    want = -(q * torch.log_softmax(logits, 1)).sum()
    assert task_loss(task, logits, target).item() == pytest.approx(want.item(), rel=1e-6)
    at_target = torch.log(torch.tensor([[0.5, 0.5, 1e-9]]))
    assert task_loss(task, at_target, target) < task_loss(task, logits, target)


def test_losses_backpropagate_into_every_head_and_the_backbone(chips):
    torch.manual_seed(0)
    net = MultiTaskNet(TinyBackbone(), TASKS).train()
    out = net(chips)
    targets = {"gender": torch.tensor([0.0, 1, 1, 0]), "race": torch.tensor([0.0, 2, 4, 1]),
               "age": torch.rand(4), "age_bins": torch.tensor([25.0, 30, 41.5, 59]), "eyes": torch.rand(4, 5, 2)}
    losses = task_losses(out, targets, TASKS)
    sum(losses.values()).backward()
    for name in ("backbone.stages.0.0.weight", "shared.0.0.weight", *(f"heads.{t.name}.3.weight" for t in TASKS)):
        assert dict(net.named_parameters())[name].grad.abs().sum() > 0, name


def test_build_from_checkpoint_restores_the_same_function(chips):
    torch.manual_seed(3)
    net = MultiTaskNet(TinyBackbone(), TASKS[:3], shared_dims=(20,), head_dim=8, dropout=0.1).eval()
    ckpt = {"format": "faceattr-ckpt/1", "backbone": "tiny-test", "tasks": [asdict(t) for t in TASKS[:3]],
            "config": {"model": {"shared_dims": [20], "head_dim": 8, "dropout": 0.1}},
            "model_state": net.state_dict()}
    again = build_from_checkpoint(ckpt)
    assert not again.training
    assert again.tasks == TASKS[:3]
    for name, value in net(chips).items():
        torch.testing.assert_close(again(chips)[name], value)
    with pytest.raises(ValueError, match="not a FaceAttr checkpoint"):
        build_from_checkpoint({**ckpt, "format": "other"})
