"""The training step in fp32 and bf16 autocast, the in-memory batches, the schedules and the EMA."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.training.training_fixtures import TinyBackbone
from training.batches import MemorySplit
from training.config import LossConfig, OptimConfig, SpeedConfig
from training.utkface import utk_tasks
from training.ema import WeightEMA
from training.freeze import FrozenParts
from training.loop import Dist, Precision, TrainStep, choose_precision, cpu_has_native_bf16, recompute_bn_stats
from training.losses import create_losses
from training.model import MultiTaskNet
from training.schedule import cosine_factor, create_schedule
from training.weighting import EqualWeights

TASKS = utk_tasks("coral")


def tiny_batch(n: int = 32):
    """Chips whose brightness and red tint carry the labels, so a tiny net can learn them."""
    g = torch.Generator().manual_seed(0)
    gender = torch.randint(0, 2, (n,), generator=g)
    race = torch.randint(0, 5, (n,), generator=g)
    age01 = torch.rand(n, generator=g)
    chips = torch.randint(0, 30, (n, 150, 150, 3), generator=g).float()
    chips[..., 0] += 40 * race.view(-1, 1, 1).float()
    chips[..., 1] += 100 * gender.view(-1, 1, 1).float() + 60 * age01.view(-1, 1, 1)
    return chips.clamp(0, 255).to(torch.uint8), {"gender": gender.float(), "race": race.float(), "age": age01}


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_a_tiny_model_learns_in_fp32_and_under_bf16_autocast(bf16):
    torch.manual_seed(0)
    net = MultiTaskNet(TinyBackbone(), TASKS, shared_dims=(8,), head_dim=8, dropout=0.0)
    weighting = EqualWeights([t.name for t in TASKS])
    step = TrainStep(net, weighting, create_losses(LossConfig(), TASKS), 0, 0, Precision(bf16))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    chips, targets = tiny_batch(16)
    net.train()
    objectives = []
    for _ in range(30):
        objective, losses, _ = step(chips, targets, ("gender", "race", "age"))
        opt.zero_grad()
        objective.backward()
        opt.step()
        objectives.append(objective.item())
        assert all(v.dtype == torch.float32 for v in losses.values())  # losses are computed in fp32
    assert objectives[-1] < 0.6 * objectives[0]


def test_auto_bf16_falls_back_to_fp32_with_a_note_on_a_cpu_without_native_bf16():
    p = choose_precision(SpeedConfig(bf16="auto"), torch.device("cpu"))
    assert p.bf16 == cpu_has_native_bf16()
    if not p.bf16:
        assert "no AVX-512 BF16 or AMX" in p.note
    assert choose_precision(SpeedConfig(bf16="always"), torch.device("cpu")).bf16
    assert not choose_precision(SpeedConfig(bf16="off"), torch.device("cpu")).bf16


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    (tmp_path / "with").write_text("flags\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n")
    (tmp_path / "without").write_text("flags\t: fpu sse avx2\n")
    assert cpu_has_native_bf16(tmp_path / "with") and not cpu_has_native_bf16(tmp_path / "without")
    assert not cpu_has_native_bf16(tmp_path / "missing")


def test_train_batches_cover_every_sample_once_per_epoch_and_ranks_split_them():
    split = MemorySplit(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 2, 2, 3).contiguous(),
                        {"age": torch.arange(10).float()})
    seen = torch.cat([t["age"] for _, t in split.train_batches(4, seed=0, epoch=1)])
    assert sorted(seen.tolist()) == list(range(10))
    other_epoch = torch.cat([t["age"] for _, t in split.train_batches(4, seed=0, epoch=2)])
    assert seen.tolist() != other_epoch.tolist()
    ranks = [torch.cat([t["age"] for _, t in split.train_batches(5, 0, 1, rank=r, world=2)]) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 5 and not set(ranks[0].tolist()) & set(ranks[1].tolist())
    assert split.train_steps(4) == 3 and split.train_steps(3) == 3  # 10 = 3+3+3+1: the single one is dropped
    assert [len(b[0]) for b in split.train_batches(3, 0, 1)] == [3, 3, 3]


def test_cosine_warms_up_then_decays_to_the_floor():
    f = [cosine_factor(s, 100, 10, 0.05) for s in range(100)]
    assert f[0] == pytest.approx(0.109) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[-1] == pytest.approx(0.05)


def test_a_schedule_restored_from_its_state_goes_on_with_the_same_lr():
    def make():
        opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return opt, create_schedule(OptimConfig(lr=1.0, schedule="cosine", epochs=4, warmup_epochs=1), opt, 5)

    opt, sched = make()
    for _ in range(7):
        sched.after_batch()
    opt2, sched2 = make()
    sched2.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] < 1.0


def test_ema_follows_the_weights_with_its_decay_and_resets_to_them():
    net = torch.nn.Linear(2, 1)
    ema = WeightEMA(net, decay=0.9)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)  # warm-up decay: min(0.9, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.model.weight, d * start + (1 - d) * net.weight)
    for _ in range(200):
        ema.update(net)
    assert torch.allclose(ema.model.weight, net.weight, atol=1e-6)
    with torch.no_grad():
        net.weight.zero_()
    ema.reset(net)
    assert torch.equal(ema.model.weight, net.weight)


def test_precise_bn_sets_the_statistics_to_the_mean_over_the_given_batches():
    torch.manual_seed(0)
    net = MultiTaskNet(TinyBackbone(), TASKS, shared_dims=(8,), head_dim=4, dropout=0.5)
    chips, targets = tiny_batch(48)
    batches = [(chips[i:i + 16], {k: v[i:i + 16] for k, v in targets.items()}) for i in (0, 16, 32)]
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d))
    pre_bn = []  # the BatchNorm's inputs, caught on the way
    hook = bn.register_forward_hook(lambda m, args, out: pre_bn.append(args[0].detach()))
    net.train()
    used = recompute_bn_stats(net, 0, iter(batches), n_batches=2, dist=Dist(0, 1, torch.device("cpu")))
    hook.remove()
    assert used == 2 and len(pre_bn) == 2  # only the batches asked for
    want = torch.cat(pre_bn).mean(0)
    assert torch.allclose(bn.running_mean, want, atol=1e-5)  # the plain mean, not a 0.1-momentum blend
    assert bn.momentum == 0.1 and net.training  # put back as it was
    assert all(m.training for m in net.modules())
