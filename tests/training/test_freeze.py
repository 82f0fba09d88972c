"""Early Freeze (thesis Algorithm 1) and early stopping, on hand-made validation losses."""
from __future__ import annotations

import math

import torch

from engine.modelspec import TaskSpec
from training.freeze import EarlyFreeze, EarlyStopping, FreezeController, FrozenParts
from training.model import MultiTaskNet, task_losses
from tests.training.training_fixtures import TinyBackbone  # importing it registers "tiny-test"

NAMES = ("gender", "race", "age")


def run(logic: EarlyFreeze, sequences: dict[str, list[float]], first_epoch: int = 1):
    """Feed one loss per task per epoch; returns {epoch: events}."""
    out = {}
    for i in range(len(next(iter(sequences.values())))):
        epoch = first_epoch + i
        events = logic.step(epoch, {n: seq[i] for n, seq in sequences.items()})
        if events:
            out[epoch] = events
    return out


def test_a_task_freezes_after_patience_epochs_without_improvement_and_reports_its_best():
    logic = EarlyFreeze(NAMES, patience=2)
    events = run(logic, {"gender": [1.0, 0.8, 0.9, 0.85],
                         "race": [2.0, 1.9, 1.8, 1.7],
                         "age": [0.5, 0.4, 0.3, 0.2]})
    assert list(events) == [4]
    (e,) = events[4]
    assert (e.task, e.best_epoch, e.best_loss, e.freezes_trunk) == ("gender", 2, 0.8, True)
    assert logic.frozen == ["gender"] and logic.trunk_frozen
    assert "not improved for 2 epochs" in e.message() and "best 0.8000 at epoch 2" in e.message()
    # the model went back to epoch 2: the other tasks now watch from their epoch-2 losses
    assert logic.best_loss["race"] == 1.9 and logic.best_epoch["race"] == 2 and logic.counter["race"] == 0
    assert logic.best_loss["gender"] == 0.8  # a frozen task is no longer watched
    logic.step(5, {"gender": 0.1, "race": 1.95, "age": 0.45})
    assert logic.best_loss["gender"] == 0.8 and logic.counter["race"] == 1 and logic.counter["age"] == 1


def test_a_loss_equal_to_the_minimum_counts_as_improvement():
    logic = EarlyFreeze(["a"], patience=2)
    assert run(logic, {"a": [1.0, 1.0, 1.0, 1.0]}) == {}
    assert logic.best_epoch["a"] == 4


def test_later_freezes_restore_only_that_head_and_at_most_one_task_freezes_per_epoch():
    logic = EarlyFreeze(NAMES, patience=1)
    events = run(logic, {"gender": [1.0, 1.1, 1.1, 1.1, 1.1],
                         "race": [1.0, 0.9, 0.8, 0.85, 0.9],
                         "age": [1.0, 0.9, 0.8, 0.9, 0.9]})
    # epoch 2: gender; whole model back to epoch 1, race/age re-based on their epoch-1 losses (1.0)
    # epoch 4: race and age both worse than at epoch 3: race (first in order) freezes, then age at 5
    assert {ep: [(e.task, e.best_epoch, e.freezes_trunk) for e in evs] for ep, evs in events.items()} == {
        2: [("gender", 1, True)], 4: [("race", 3, False)], 5: [("age", 3, False)]}
    assert logic.frozen == ["gender", "race", "age"]


def test_without_a_trainable_trunk_every_freeze_is_head_only_with_no_rebase():
    logic = EarlyFreeze(["a", "b"], patience=2, trunk_trainable=False)
    events = run(logic, {"a": [1.0, 0.5, 0.6, 0.7, 0.8], "b": [1.0, 0.9, 1.0, 0.8, 0.9]})
    assert [(e.task, e.best_epoch, e.freezes_trunk) for evs in events.values() for e in evs] == [("a", 2, False)]
    assert logic.best_epoch["b"] == 4 and not logic.trunk_frozen


def test_state_dict_round_trip_continues_identically():
    seq = {"gender": [1.0, 0.8, 0.9, 0.85, 0.95, 0.97], "race": [2.0, 1.9, 1.8, 1.85, 1.9, 1.95],
           "age": [0.5, 0.4, 0.3, 0.35, 0.36, 0.37]}
    straight = EarlyFreeze(NAMES, patience=2)
    want = run(straight, seq)
    first = EarlyFreeze(NAMES, patience=2)
    got = run(first, {n: s[:3] for n, s in seq.items()})
    again = EarlyFreeze(NAMES, patience=99)
    again.load_state_dict(first.state_dict())
    got.update(run(again, {n: s[3:] for n, s in seq.items()}, first_epoch=4))
    assert got == want and again.state_dict() == straight.state_dict()


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    stop = EarlyStopping(patience=3)
    decisions = [stop.step(e, v) for e, v in enumerate([5.0, 4.0, 4.5, 4.0, 4.2, 3.0, 3.1, 3.2, 3.3], start=1)]
    assert decisions == [False, False, False, False, True, False, False, False, True]
    assert (stop.best_epoch, stop.best_value) == (6, 3.0)
    never = EarlyStopping(patience=0)
    assert not any(never.step(e, 1.0) for e in range(50))


# -- the torch glue on a real net ---------------------------------------------------------
TASKS = (TaskSpec("gender", "binary", labels=("m", "f")), TaskSpec("race", "multiclass", labels=tuple("abcde")),
         TaskSpec("age", "regression", unit="years", range=(21.0, 60.0)))


def train_step(net, parts, opt, active, gen):
    parts.train_mode(net)
    chips = torch.randint(0, 256, (6, 150, 150, 3), dtype=torch.uint8, generator=gen)
    targets = {"gender": torch.randint(0, 2, (6,), generator=gen).float(),
               "race": torch.randint(0, 5, (6,), generator=gen).float(), "age": torch.rand(6, generator=gen)}
    losses = task_losses(net(chips), targets, net.tasks)
    opt.zero_grad(set_to_none=True)
    sum(losses[n] for n in active).backward()
    opt.step()


def params_of(net, prefix):
    return {k: v.clone() for k, v in net.state_dict().items() if k.startswith(prefix)}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def assert_changed(a, b):
    assert any(not torch.equal(a[k], b[k]) for k in a if k.endswith("weight"))


def test_controller_restores_the_best_state_freezes_trunk_and_head_and_keeps_training_the_rest():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = MultiTaskNet(TinyBackbone(), TASKS, shared_dims=(12,), head_dim=8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    ctl = FreezeController(EarlyFreeze(NAMES, patience=2), FrozenParts())
    val = {1: (1.0, 2.0, 0.5), 2: (0.8, 1.9, 0.4), 3: (0.9, 1.8, 0.3), 4: (0.85, 1.7, 0.2)}
    saved = {}
    for epoch in (1, 2, 3, 4):
        train_step(net, ctl.parts, opt, NAMES, gen)
        saved[epoch] = {k: v.clone() for k, v in net.state_dict().items()}
        events = ctl.after_validation(epoch, dict(zip(NAMES, val[epoch])), net)
    assert [(e.task, e.best_epoch) for e in events] == [("gender", 2)]
    assert_same(net.state_dict(), saved[2])  # the whole model is back at gender's best epoch
    assert ctl.parts == FrozenParts(0, True, ("gender",))
    assert all(not p.requires_grad for p in net.backbone.parameters())
    assert all(not p.requires_grad for p in net.shared.parameters())
    assert all(not p.requires_grad for p in net.heads["gender"].parameters())
    assert all(p.requires_grad for p in net.heads["race"].parameters())

    trunk, gender, race = params_of(net, "backbone."), params_of(net, "heads.gender."), params_of(net, "heads.race.")
    shared = params_of(net, "shared.")  # includes BatchNorm running statistics
    train_step(net, ctl.parts, opt, ("race", "age"), gen)
    assert_same(params_of(net, "backbone."), trunk)
    assert_same(params_of(net, "shared."), shared)
    assert_same(params_of(net, "heads.gender."), gender)
    assert_changed(params_of(net, "heads.race."), race)

    # race stalls from epoch 5 on; its best since the restore is epoch 5: only its head goes back
    train_step(net, ctl.parts, opt, ("race", "age"), gen)
    at5 = {k: v.clone() for k, v in net.state_dict().items()}
    assert ctl.after_validation(5, {"gender": 0.8, "race": 1.5, "age": 0.35}, net) == []
    for epoch in (6, 7):
        train_step(net, ctl.parts, opt, ("race", "age"), gen)
        age_before = params_of(net, "heads.age.")
        events = ctl.after_validation(epoch, {"gender": 0.8, "race": 1.6, "age": 0.3 - 0.01 * epoch}, net)
    assert [(e.task, e.best_epoch, e.freezes_trunk) for e in events] == [("race", 5, False)]
    assert_same(params_of(net, "heads.race."), {k: v for k, v in at5.items() if k.startswith("heads.race.")})
    assert_same(params_of(net, "heads.age."), age_before)  # a head-only restore leaves the others alone
    assert ctl.parts.tasks == ("gender", "race")
    assert set(ctl.snapshots) == {ctl.logic.best_epoch["age"]}  # only what an active task may need


def test_frozen_parts_keep_early_stages_fixed_in_eval_mode():
    torch.manual_seed(0)
    net = MultiTaskNet(TinyBackbone(), TASKS)
    parts = FrozenParts(backbone_stages=1)
    parts.apply(net)
    parts.train_mode(net)
    assert not net.backbone.stages[0].training and net.backbone.stages[1].training and net.heads.training
    assert all(not p.requires_grad for p in net.backbone.stages[0].parameters())
    assert all(p.requires_grad for p in net.backbone.stages[1].parameters())
    everything = FrozenParts(backbone_stages=-1)
    everything.apply(net)
    assert all(not p.requires_grad for p in net.backbone.parameters())
    assert all(p.requires_grad for p in net.shared.parameters())


def test_controller_state_round_trips_with_its_snapshots():
    torch.manual_seed(0)
    net = MultiTaskNet(TinyBackbone(), TASKS)
    ctl = FreezeController(EarlyFreeze(NAMES, patience=1), FrozenParts())
    ctl.after_validation(1, {"gender": 1.0, "race": 1.0, "age": 1.0}, net)
    ctl.after_validation(2, {"gender": 2.0, "race": 0.9, "age": 0.9}, net)
    state = ctl.state_dict()
    other = MultiTaskNet(TinyBackbone(), TASKS)
    again = FreezeController(EarlyFreeze(NAMES, patience=1), FrozenParts())
    again.load_state_dict(state, other)
    assert again.parts == ctl.parts and again.logic.frozen == ["gender"]
    assert all(not p.requires_grad for p in other.shared.parameters())
    assert set(again.snapshots) == set(ctl.snapshots) and not math.isinf(again.logic.best_loss["race"])
