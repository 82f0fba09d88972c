"""The training side's task kinds (training/task_heads.py) give exactly the numbers of the code
they replaced, and name the same kinds as the engine's registry.

The ``_old_*`` functions below are verbatim copies of what training/model.py, losses.py,
loop.py, export.py, data.py, calibrate.py, weighting.py and fit.py computed per kind before the
kinds moved into one registry. Every test feeds the same fixed tensors to a copy and to the
registry (and to the functions that now delegate to it) and wants bit-identical results.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.modelspec import TaskSpec
from tests.training.training_fixtures import TinyBackbone  # registers "tiny-test"
from engine.tasks import task_kinds
from training.calibrate import CALIBRATED_KINDS, CalibrationError, class_logits
from training.config import Config, LossConfig, ModelConfig
from training.export import ExportWrapper, contract_output
from training.fit import model_tasks
from training.loop import metric_name, metric_sum
from training.losses import create_losses, smoothed_loss
from training.model import MultiTaskNet, task_loss
from training.task_heads import as_kind, calibrated_kinds, task_head, task_head_kinds
from training.weighting import UncertaintyWeights

N = 6
BINS = tuple(float(a) for a in range(21, 61))
TASKS = (
    TaskSpec(name="gender", kind="binary", labels=("male", "female")),
    TaskSpec(name="race", kind="multiclass", labels=("white", "black", "asian", "indian", "other")),
    TaskSpec(name="age", kind="regression", unit="years", range=(21.0, 60.0)),
    TaskSpec(name="years", kind="expectation", unit="years", bins=BINS),
    TaskSpec(name="points", kind="landmarks", points=5),
    TaskSpec(name="score", kind="regression"),  # no range: values as they are
)
AGE_EXP = TaskSpec(name="age", kind="expectation", unit="years", bins=BINS)


# -- the old code, copied ---------------------------------------------------------------------
def _old_output_size(task):
    if task.kind in ("binary", "regression"):
        return 1
    if task.kind == "multiclass":
        return len(task.labels)
    if task.kind == "expectation":
        return len(task.bins)
    if task.kind == "landmarks":
        return 2 * task.points
    raise ValueError(task.kind)


def _old_shape(task, y):
    if task.kind in ("binary", "regression"):
        y = y[:, 0]
    elif task.kind == "landmarks":
        y = y.view(-1, task.points, 2)
    return y


def _old_soft_bin_targets(value, bins):
    v = value.clamp(float(bins[0]), float(bins[-1]))
    hi = torch.searchsorted(bins, v, right=False).clamp(1, len(bins) - 1)
    lo = hi - 1
    frac = ((v - bins[lo]) / (bins[hi] - bins[lo])).clamp(0, 1)
    q = torch.zeros(len(v), len(bins), dtype=v.dtype, device=v.device)
    q.scatter_(1, lo[:, None], (1 - frac)[:, None])
    q.scatter_add_(1, hi[:, None], frac[:, None])
    return q


def _old_task_loss(task, output, target):
    if task.kind == "binary":
        return F.binary_cross_entropy_with_logits(output, target.float())
    if task.kind == "multiclass":
        return F.cross_entropy(output, target.long())
    if task.kind == "regression":
        return 0.5 * F.mse_loss(output, target.float())
    if task.kind == "expectation":
        bins = torch.tensor(task.bins, dtype=output.dtype, device=output.device)
        q = _old_soft_bin_targets(target.to(output.dtype), bins)
        return -(q * F.log_softmax(output, dim=1)).sum(dim=1).mean()
    if task.kind == "landmarks":
        return F.mse_loss(output, target.float())
    raise ValueError(task.kind)


def _old_smoothed_loss(task, out, target, eps):
    if eps > 0 and task.kind == "binary":
        return F.binary_cross_entropy_with_logits(out.float(), target.float() * (1 - eps) + eps / 2)
    if eps > 0 and task.kind == "multiclass":
        return F.cross_entropy(out.float(), target.long(), label_smoothing=eps)
    return _old_task_loss(task, out.float(), target)


def _old_expectation(task, out):
    bins = torch.tensor(task.bins, dtype=torch.float32, device=out.device)
    return (torch.softmax(out.float(), 1) * bins).sum(1)


def _old_expectation_l1(task, out, target, cfg):
    if cfg.age_l1 <= 0:
        return out.new_zeros((), dtype=torch.float32)
    width = max(task.bins[-1] - task.bins[0], 1.0)
    return cfg.age_l1 * (_old_expectation(task, out) - target.float()).abs().mean() / width


def _old_gaussian_targets(age, bins, sigma):
    q = torch.exp(-0.5 * ((bins[None, :] - age[:, None]) / sigma) ** 2)
    return q / q.sum(1, keepdim=True).clamp_min(1e-12)


def _old_age_loss(name, task, out, target, cfg):
    if name == "mse":
        return 0.5 * F.mse_loss(out, target.float())
    if name == "l1":
        return F.l1_loss(out, target.float())
    if name == "soft_bins":
        return _old_task_loss(task, out, target) + _old_expectation_l1(task, out, target, cfg)
    if name == "dldl":
        bins = torch.tensor(task.bins, dtype=torch.float32, device=out.device)
        q = _old_gaussian_targets(target.float(), bins, cfg.age_sigma)
        logp = F.log_softmax(out.float(), dim=1)
        kl = (q * (torch.log(q.clamp_min(1e-12)) - logp)).sum(1).mean()
        return kl + _old_expectation_l1(task, out, target, cfg)
    raise ValueError(name)


def _old_task_losses(cfg, tasks, outputs, targets):
    out = {}
    for t in tasks:
        o, target = outputs[t.name].float(), targets[t.name]
        known = torch.isfinite(target)
        y, target = (o, target) if bool(known.all()) else (o[known], target[known])
        if len(target) == 0:
            out[t.name] = outputs[t.name].float().sum() * 0.0
        elif t.name == "age" and cfg.age != "auto":
            out[t.name] = _old_age_loss(cfg.age, t, y, target, cfg)
        elif t.name == "age" and t.kind == "expectation":
            out[t.name] = _old_age_loss("soft_bins", t, y, target, cfg)
        else:
            out[t.name] = _old_smoothed_loss(t, y, target, cfg.label_smoothing)
    return out


def _old_metric_name(task):
    return {"binary": f"{task.name}_acc", "multiclass": f"{task.name}_acc", "regression": f"{task.name}_mae",
            "expectation": f"{task.name}_mae"}.get(task.kind)


def _old_metric_sum(task, out, target):
    if task.kind == "binary":
        return float(((out > 0) == (target > 0.5)).sum())
    if task.kind == "multiclass":
        return float((out.argmax(1) == target.long()).sum())
    if task.kind == "regression":
        lo, hi = task.range if task.range is not None else (0.0, 1.0)
        return float(((out - target).abs() * (hi - lo)).sum())
    if task.kind == "expectation":
        return float((_old_expectation(task, out) - target).abs().sum())
    return 0.0


def _old_contract_output(task, y):
    if task.kind == "binary":
        return torch.sigmoid(y.reshape(-1))
    if task.kind in ("multiclass", "expectation"):
        return torch.softmax(y, dim=1)
    if task.kind == "regression":
        y = y.reshape(-1)
        if task.range is None:
            return y
        lo, hi = task.range
        return y * float(hi - lo) + float(lo)
    return y


def _old_scale_target(task, value):
    if task.kind == "regression" and task.range is not None:
        lo, hi = task.range
        return (value - lo) / (hi - lo)
    return value


def _old_class_logits(kind, logits):
    z = np.asarray(logits, np.float64)
    if kind == "binary":
        return np.stack([np.zeros_like(z), z], axis=-1)
    if kind == "multiclass":
        return z
    raise CalibrationError(kind)


def _old_uncertainty_factors(kinds):
    return [0.5 if k in ("regression", "landmarks") else 1.0 for k in kinds]


def _old_model_tasks(age_kind, tasks):
    if age_kind == "expectation":
        tasks = [dataclasses.replace(t, kind="expectation", range=None,
                                     bins=tuple(float(a) for a in range(int(t.range[0]), int(t.range[1]) + 1)))
                 if t.name == "age" and t.kind == "regression" else t for t in tasks]
    return tuple(tasks)


# -- fixed tensors ----------------------------------------------------------------------------
def _outputs_and_targets(tasks, n=N, seed=0):
    """Raw outputs (as the net gives them) and targets (as ChipDataset gives them) per task."""
    g = torch.Generator().manual_seed(seed)
    outs, targets = {}, {}
    for t in tasks:
        size = _old_output_size(t)
        outs[t.name] = _old_shape(t, torch.randn(n, size, generator=g) * 2)
        if t.kind == "binary":
            targets[t.name] = (torch.rand(n, generator=g) > 0.5).float()
        elif t.kind == "multiclass":
            targets[t.name] = torch.randint(0, len(t.labels), (n,), generator=g).float()
        elif t.kind == "regression":
            targets[t.name] = torch.rand(n, generator=g)
        elif t.kind == "expectation":  # in the unit, some outside the bins
            targets[t.name] = torch.rand(n, generator=g) * 50 + 15
        else:
            targets[t.name] = torch.rand(n, t.points, 2, generator=g)
    return outs, targets


def _with_gaps(targets):
    """Partial labels: gender whole, every other row of the other 1-D targets unlabelled (NaN),
    ``score`` with no label at all (landmarks are left whole)."""
    out = {}
    for name, v in targets.items():
        v = v.clone()
        if name == "score":
            v[:] = float("nan")
        elif v.dim() == 1 and name != "gender":
            v[::2] = float("nan")
        out[name] = v
    return out


def _same(a, b):
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), (a, b)
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), (a, b)


# -- the tests --------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_head_size_and_output_shape_are_the_old_ones(task):
    torch.manual_seed(0)
    net = MultiTaskNet(TinyBackbone(), TASKS).eval()
    features = torch.randn(N, TinyBackbone.out_features, generator=torch.Generator().manual_seed(1))
    got = net.heads_from_features(features)[task.name]
    want = _old_shape(task, net.heads[task.name](net.shared(features)))
    assert task_head(task).output_size(task) == _old_output_size(task)
    _same(got, want)
    _same(task_head(task).shape_output(task, net.heads[task.name](net.shared(features))), want)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_losses_are_the_old_ones(task, eps):
    outs, targets = _outputs_and_targets(TASKS)
    out, target, head = outs[task.name], targets[task.name], task_head(task)
    _same(head.loss(task, out, target), _old_task_loss(task, out, target))
    _same(task_loss(task, out, target), _old_task_loss(task, out, target))
    _same(head.smoothed_loss(task, out, target, eps), _old_smoothed_loss(task, out, target, eps))
    _same(smoothed_loss(task, out, target, eps), _old_smoothed_loss(task, out, target, eps))


@pytest.mark.parametrize("cfg", [LossConfig(), LossConfig(label_smoothing=0.1), LossConfig(age="l1"),
                                 LossConfig(age="mse")], ids=["auto", "smoothed", "l1", "mse"])
@pytest.mark.parametrize("gaps", [False, True])
def test_configured_losses_with_a_regression_age_are_the_old_ones(cfg, gaps):
    outs, targets = _outputs_and_targets(TASKS)
    targets = _with_gaps(targets) if gaps else targets
    got = create_losses(cfg, TASKS)(outs, targets)
    want = _old_task_losses(cfg, TASKS, outs, targets)
    for name in want:
        _same(got[name], want[name])


@pytest.mark.parametrize("cfg", [LossConfig(), LossConfig(age_l1=0.5), LossConfig(age="dldl", age_l1=0.2),
                                 LossConfig(age="soft_bins", label_smoothing=0.05)],
                         ids=["auto", "auto+l1", "dldl", "soft_bins"])
@pytest.mark.parametrize("gaps", [False, True])
def test_configured_losses_with_an_expectation_age_are_the_old_ones(cfg, gaps):
    tasks = (TASKS[0], TASKS[1], AGE_EXP, TASKS[4])
    outs, targets = _outputs_and_targets(tasks, seed=3)
    targets = _with_gaps(targets) if gaps else targets
    got = create_losses(cfg, tasks)(outs, targets)
    want = _old_task_losses(cfg, tasks, outs, targets)
    for name in want:
        _same(got[name], want[name])


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_validation_metric_is_the_old_one(task):
    outs, targets = _outputs_and_targets(TASKS, seed=5)
    out, target, head = outs[task.name], targets[task.name], task_head(task)
    assert head.metric_name(task) == metric_name(task) == _old_metric_name(task)
    _same(head.metric_sum(task, out, target), _old_metric_sum(task, out, target))
    _same(metric_sum(task, out, target), _old_metric_sum(task, out, target))


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_contract_output_is_the_old_one(task):
    outs, _ = _outputs_and_targets(TASKS, seed=7)
    y = outs[task.name]
    _same(task_head(task).contract_output(task, y), _old_contract_output(task, y))
    _same(task_head(task).export_output(task, y), _old_contract_output(task, y))
    _same(contract_output(task, y), _old_contract_output(task, y))
    if task_head(task).calibrated:
        _same(task_head(task).export_output(task, y, 1.7), _old_contract_output(task, y / 1.7))
    else:
        with pytest.raises(ValueError, match="temperatures are for binary and multiclass tasks"):
            task_head(task).export_output(task, y, 1.7)


@pytest.mark.parametrize("flip_tta", [False, True])
def test_exported_outputs_with_temperatures_are_the_old_ones(flip_tta):
    torch.manual_seed(0)
    net = MultiTaskNet(TinyBackbone(), TASKS).eval()
    temperatures = {"gender": 2.5, "race": 0.7}
    wrapper = ExportWrapper(net, flip_tta=flip_tta, temperatures=temperatures)
    assert wrapper.flip_tta is False  # a landmarks task: never averaged over the mirror image
    chips = torch.randint(0, 256, (3, 150, 150, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = wrapper(chips)
        raw = net(chips)
    for t, y in zip(TASKS, got):
        temp = temperatures.get(t.name)
        _same(y, _old_contract_output(t, raw[t.name] if temp is None else raw[t.name] / temp))


def test_flip_tta_averages_every_kind_but_landmarks():
    torch.manual_seed(0)
    tasks = TASKS[:4]
    net = MultiTaskNet(TinyBackbone(), tasks).eval()
    wrapper = ExportWrapper(net, flip_tta=True, temperatures={"race": 1.5})
    assert wrapper.flip_tta is True
    chips = torch.randint(0, 256, (2, 150, 150, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = wrapper(chips)
        raw = net(torch.cat([chips, chips.flip(2)]))
    for t, y in zip(tasks, got):
        z = raw[t.name] / 1.5 if t.name == "race" else raw[t.name]
        want = _old_contract_output(t, z)
        _same(y, (want[:2] + want[2:]) * 0.5)


@pytest.mark.parametrize("value", [0.0, 21.0, 33.5, 60.0, 117.0])
@pytest.mark.parametrize("task", TASKS[:4] + TASKS[5:], ids=lambda t: t.name)
def test_training_targets_are_encoded_as_before(task, value):
    got, want = task_head(task).scale_target(task, value), _old_scale_target(task, value)
    assert type(got) is type(want) and got == want


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_temperature_scaling_applies_to_the_same_kinds_with_the_same_logits(task):
    outs, _ = _outputs_and_targets(TASKS, seed=9)
    z = outs[task.name].numpy()[None]
    if task.kind in ("binary", "multiclass"):
        assert task_head(task).calibrated
        got, want = class_logits(task.kind, z), _old_class_logits(task.kind, z)
        assert got.dtype == want.dtype and np.array_equal(got, want)
    else:
        assert not task_head(task).calibrated
        with pytest.raises(CalibrationError, match="temperature scaling is for binary and multiclass tasks"):
            class_logits(task.kind, z)


def test_uncertainty_weighting_halves_the_squared_error_kinds_as_before():
    kinds = [t.kind for t in TASKS]
    u = UncertaintyWeights([t.name for t in TASKS], kinds)
    assert u.factors.tolist() == _old_uncertainty_factors(kinds)


@pytest.mark.parametrize("age_kind", ["regression", "expectation"])
def test_age_kind_rewrites_the_age_task_as_before(age_kind):
    data_tasks = (TASKS[0], TASKS[1], TaskSpec(name="age", kind="regression", unit="years", range=(0.0, 116.0)),
                  TASKS[3])
    cfg = dataclasses.replace(Config(), model=ModelConfig(age_kind=age_kind))
    assert model_tasks(cfg, data_tasks) == _old_model_tasks(age_kind, data_tasks)
    assert tuple(as_kind(t, age_kind) if t.name == "age" else t for t in data_tasks) == _old_model_tasks(
        age_kind, data_tasks)


# -- the registry itself ----------------------------------------------------------------------
def test_training_and_engine_know_the_same_kinds():
    assert set(task_head_kinds()) == set(task_kinds())


def test_temperature_scaling_is_for_binary_and_multiclass():
    assert calibrated_kinds() == CALIBRATED_KINDS == ("binary", "multiclass")


def test_an_unknown_kind_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"task 'x': unknown kind 'ordinal' \(known: binary, multiclass"):
        task_head(TaskSpec(name="x", kind="ordinal"))
    with pytest.raises(CalibrationError, match="not ordinal"):
        class_logits("ordinal", np.zeros((1, 2)))


def test_a_new_kind_is_one_class():
    """A kind registered in training/task_heads.py is picked up by the net, the losses, the metric
    and the export without another change there (the engine side needs its own class)."""
    from training import task_heads

    @task_heads.register_task_head
    class Triple(task_heads.TaskHead):
        kind = "triple-test"
        metric = "mae"

        def output_size(self, task):
            return 3

        def loss(self, task, output, target):
            return (output.sum(1) - target).abs().mean()

        def metric_sum(self, task, out, target):
            return float((out.sum(1) - target).abs().sum())

    try:
        task = TaskSpec(name="t3", kind="triple-test")
        torch.manual_seed(0)
        net = MultiTaskNet(TinyBackbone(), (TASKS[0], task)).eval()
        chips = torch.zeros(2, 150, 150, 3, dtype=torch.uint8)
        out = net(chips)["t3"]
        assert out.shape == (2, 3)
        target = torch.tensor([1.0, float("nan")])
        losses = create_losses(LossConfig(), net.tasks)(net(chips), {"gender": torch.ones(2), "t3": target})
        assert losses["t3"].item() == pytest.approx((out[0].sum() - 1).abs().item(), rel=1e-6)
        assert metric_name(task) == "t3_mae"
        with torch.no_grad():
            assert ExportWrapper(net)(chips)[1].shape == (2, 3)
        assert as_kind(task, "expectation") is task
    finally:
        del task_heads._REGISTRY["triple-test"]
