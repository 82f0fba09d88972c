"""python -m training.fit end to end on a tiny dataset made here from the astronaut photo."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from training.chips import ChipCache
from training.utkface import load_utkface, utk_tasks
from training.fit import main, metric_sum
from training.model import build_from_checkpoint
from tests.training.training_fixtures import TinyBackbone, make_tiny_utkface, write_config  # registers "tiny-test"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_utkface(tmp_path_factory.mktemp("tiny-utkface"))


def fit(tiny, config, out, *more):
    return main(["--config", str(config), "--data", str(tiny["images"]), "--chips", str(tiny["chips"]),
                 "--out", str(out), *more])


def read_log(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_fit_writes_checkpoints_log_and_curves_and_resume_continues_exactly(tiny, tmp_path, capsys):
    config = write_config(tmp_path / "tiny.toml", tiny["splits"])
    assert fit(tiny, config, tmp_path / "straight", "--epochs", "3") == 0
    assert fit(tiny, config, tmp_path / "resumed", "--epochs", "2") == 0
    assert len(read_log(tmp_path / "resumed" / "log.csv")) == 2
    assert main(["--resume", "--out", str(tmp_path / "resumed"), "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "best epoch" in out.splitlines()[-1]

    straight, resumed = read_log(tmp_path / "straight" / "log.csv"), read_log(tmp_path / "resumed" / "log.csv")
    assert [r["epoch"] for r in resumed] == ["1", "2", "3"]
    for a, b in zip(straight, resumed):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    for k, v in a["model_state"].items():
        assert torch.equal(v, b["model_state"][k]), k
    assert a["weighting_state"]["logits"].tolist() == b["weighting_state"]["logits"].tolist()

    row = straight[-1]
    assert set(row) >= {"lr", "val_loss_gender", "train_loss_race", "weight_age", "gender_acc", "race_acc",
                        "age_mae", "frozen", "events"}
    weights = [float(row[f"weight_{t}"]) for t in ("gender", "race", "age") if row[f"weight_{t}"]]
    assert sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / "straight" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "straight" / "best.pt").is_file()
    assert a["format"] == "faceattr-ckpt/1" and a["epoch"] == 3 and len(a["history"]) == 3
    assert a["config"]["model"]["backbone"] == "tiny-test" and a["backbone"] == "tiny-test"


def test_best_checkpoint_rebuilds_the_net_that_scored_the_logged_validation_metrics(tiny, tmp_path):
    config = write_config(tmp_path / "tiny.toml", tiny["splits"])
    assert fit(tiny, config, tmp_path / "run", "--epochs", "2") == 0
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    net = build_from_checkpoint(ckpt)
    valid = load_utkface("coral", tiny["images"], tiny["splits"]).valid
    cache = ChipCache.open(tiny["chips"])
    chips = torch.from_numpy(np.stack([cache.chips[cache.row_of[s.file]] for s in valid]))
    tasks = {t.name: t for t in utk_tasks("coral")}
    with torch.no_grad():
        out = net(chips)
    gender = torch.tensor([s.targets["gender"] for s in valid])
    age01 = torch.tensor([(s.targets["age"] - 21) / 39 for s in valid])
    assert metric_sum(tasks["gender"], out["gender"], gender) / len(valid) == pytest.approx(
        ckpt["best"]["metrics"]["gender_acc"])
    assert metric_sum(tasks["age"], out["age"], age01) / len(valid) == pytest.approx(
        ckpt["best"]["metrics"]["age_mae"], rel=1e-5)


def test_frozen_stages_train_from_the_stem_cache_and_stay_fixed(tiny, tmp_path):
    config = write_config(tmp_path / "stem.toml", tiny["splits"], """
speed.frozen_stages = 1
speed.cache_stem = true
model.age_kind = "expectation"
weighting.kind = "uncertainty"
freeze.early_freeze = false""")
    stems = tiny["chips"] / "stems"
    before = set(stems.glob("*.npy")) if stems.is_dir() else set()
    assert fit(tiny, config, tmp_path / "run1", "--epochs", "2") == 0
    made = sorted(set(stems.glob("*.npy")) - before)
    assert [p.name.split("-")[3] for p in made] == ["train", "valid"]
    meta = {p.name.split("-")[3]: json.loads(p.with_suffix(".json").read_text()) for p in made}
    assert meta["train"]["views"] == 2 and meta["valid"]["views"] == 1  # flip: the chip and its mirror
    assert np.load(made[0], mmap_mode="r").dtype == np.float16

    ckpt = torch.load(tmp_path / "run1" / "last.pt", weights_only=True)
    torch.manual_seed(0)  # fit seeds with the config's seed (0) before it builds the backbone
    fresh = TinyBackbone().state_dict()
    for k, v in fresh.items():
        got = ckpt["model_state"][f"backbone.{k}"]
        if k.startswith("stages.0."):
            assert torch.equal(got, v), k  # frozen: weights and BatchNorm statistics untouched
    assert not torch.equal(ckpt["model_state"]["backbone.stages.1.0.weight"], fresh["stages.1.0.weight"])
    assert ckpt["tasks"][2]["kind"] == "expectation" and len(ckpt["tasks"][2]["bins"]) == 40
    # the logged age MAE is the saved net's: its expectation over the bins on the validation chips
    # (the loop validates from float16 cached stems, the net here runs the chips in fp32: 0.05 y apart at most)
    net = build_from_checkpoint(ckpt)
    valid = load_utkface("coral", tiny["images"], tiny["splits"]).valid
    cache = ChipCache.open(tiny["chips"])
    with torch.no_grad():
        out = net(torch.from_numpy(np.stack([cache.chips[cache.row_of[s.file]] for s in valid])))
    ages = torch.tensor([s.targets["age"] for s in valid])
    age = next(t for t in net.tasks if t.name == "age")
    assert float(read_log(tmp_path / "run1" / "log.csv")[-1]["age_mae"]) == pytest.approx(
        metric_sum(age, out["age"], ages) / len(valid), abs=0.05)

    mtimes = {p: p.stat().st_mtime_ns for p in made}
    assert fit(tiny, config, tmp_path / "run2", "--epochs", "1") == 0  # same key: the cache is reused
    assert {p: p.stat().st_mtime_ns for p in made} == mtimes and set(stems.glob("*.npy")) - before == set(made)


RECIPE = """
model.age_kind = "expectation"
loss.age = "dldl"
loss.age_l1 = 1.0
loss.label_smoothing = 0.05
optim.schedule = "cosine"
optim.warmup_epochs = 0.5
optim.ema = 0.9
optim.backbone_lr_mult = 0.5
weighting.kind = "equal"
freeze.early_freeze = false
speed.bf16 = "always"
speed.channels_last = true
augment.scale = 0.05
augment.rotate = 5.0
augment.shift = 0.03
augment.brightness = 0.1
augment.contrast = 0.2
augment.blur = 0.5
augment.downscale = 0.5"""


def test_the_stronger_recipe_resumes_exactly_and_saves_the_ema_weights_it_validated(tiny, tmp_path):
    """bf16, EMA, cosine, augmentation, DLDL: a run stopped after epoch 1 and resumed ends where an
    uninterrupted one does; model_state holds the EMA weights (what was validated), the raw ones travel beside."""
    config = write_config(tmp_path / "v2.toml", tiny["splits"], RECIPE)
    assert fit(tiny, config, tmp_path / "straight", "--epochs", "2") == 0
    assert fit(tiny, config, tmp_path / "resumed", "--epochs", "1") == 0
    assert main(["--resume", "--out", str(tmp_path / "resumed"), "--epochs", "2"]) == 0
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    for key in ("model_state", "train_model_state"):
        for k, v in a[key].items():
            assert torch.equal(v, b[key][k]), (key, k)
    assert a["scheduler_state"] == b["scheduler_state"] and a["ema_state"]["updates"] == b["ema_state"]["updates"]
    assert [h["val_loss"] for h in a["history"]] == [h["val_loss"] for h in b["history"]]
    assert any(not torch.equal(v, a["train_model_state"][k]) for k, v in a["model_state"].items()
               if v.dtype.is_floating_point)  # the average is not the last step's weights
    run = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert run["config"] == "v2" and len(run["commands"]) == 2 and "--resume" in run["commands"][1]["command"]


def test_bad_runs_stop_with_one_clear_sentence(tiny, tmp_path, capsys):
    config = write_config(tmp_path / "tiny.toml", tiny["splits"])
    assert fit(tiny, config, tmp_path / "run", "--epochs", "1") == 0
    capsys.readouterr()
    assert fit(tiny, config, tmp_path / "run", "--epochs", "1") == 2
    assert "already holds a run (last.pt); pass --resume" in capsys.readouterr().err
    assert main(["--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert "nothing to resume (no last.pt)" in capsys.readouterr().err
    assert main(["--config", str(config), "--data", str(tiny["images"]), "--chips", str(tmp_path / "no-chips"),
                 "--out", str(tmp_path / "run2")]) == 2
    assert "no chip cache here" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim]\nlearning_rate = 1\n")
    assert fit(tiny, bad, tmp_path / "run3") == 2
    assert "unknown key 'optim.learning_rate'" in capsys.readouterr().err
    wrong_task = write_config(tmp_path / "task.toml", tiny["splits"], 'model.tasks = ["gender", "smile"]')
    assert fit(tiny, wrong_task, tmp_path / "run4") == 2
    assert "model.tasks names ['smile']" in capsys.readouterr().err


def test_an_overlay_run_records_its_overlays_and_reuses_the_stem_cache_of_another_task_encoding(tiny, tmp_path):
    config = write_config(tmp_path / "base.toml", tiny["splits"], """
speed.frozen_stages = 1
speed.cache_stem = true
freeze.early_freeze = false""")
    stems = tiny["chips"] / "stems"
    assert fit(tiny, config, tmp_path / "base", "--epochs", "1") == 0
    cached = set(stems.glob("*.npy"))
    over = tmp_path / "dldl_bn.toml"
    over.write_text('[model]\nage_kind = "expectation"\n\n[loss]\nage = "dldl"\n\n[optim]\nprecise_bn_batches = 2\n')
    assert fit(tiny, config, tmp_path / "over", "--epochs", "1", "--overlay", str(over)) == 0
    assert set(stems.glob("*.npy")) == cached  # the heads changed, the activations did not: no new cache
    ckpt = torch.load(tmp_path / "over" / "last.pt", weights_only=True)
    assert ckpt["config"]["model"]["age_kind"] == "expectation" and ckpt["config"]["optim"]["precise_bn_batches"] == 2
    run = json.loads((tmp_path / "over" / "run.json").read_text())
    assert run["overlays"] == ["dldl_bn"] and "--overlay" in run["commands"][0]["command"]
    assert float(read_log(tmp_path / "over" / "log.csv")[0]["age_mae"]) > 0


def test_a_balanced_run_reports_its_draw_and_a_balance_on_no_task_is_refused(tiny, tmp_path, capsys):
    config = write_config(tmp_path / "bal.toml", tiny["splits"], 'data.balance = ["race"]\ndata.balance_power = 1.0')
    assert fit(tiny, config, tmp_path / "run", "--epochs", "1") == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("balance race"))
    shares = [float(s.split(": ")[1].rstrip("%")) for s in line.split("group ")[1].split(", ")]
    assert len(shares) > 1 and max(shares) - min(shares) < 0.2  # power 1: every race drawn equally often
    wrong = write_config(tmp_path / "wrong.toml", tiny["splits"], 'data.balance = ["smile"]')
    assert fit(tiny, wrong, tmp_path / "run2", "--epochs", "1") == 2
    assert "data.balance names smile, not a task of this run" in capsys.readouterr().err


def test_runs_that_share_an_init_seed_start_from_one_network_and_keep_their_own_streams(tiny, tmp_path):
    """model.init_seed (the shared_init overlay): two seeds draw the same fresh layers, so their trained
    weights can be averaged (training.soup); the run's own stream after the build is its seed's, as
    without the option. Without it, two seeds start from different networks."""
    from training.config import load_config
    from training.fit import build_net, seed_everything
    from training.loop import Dist

    def initial(seed: int, extra: str) -> tuple[dict, torch.Tensor]:
        cfg = load_config(write_config(tmp_path / f"c{seed}.toml", tiny["splits"], extra))
        seed_everything(seed)
        net = build_net(cfg, utk_tasks("coral"), pretrained=False, dist=Dist())
        return net.state_dict(), torch.rand(4)

    shared = [initial(seed, "model.init_seed = 0") for seed in (1, 2)]
    for k, v in shared[0][0].items():
        assert torch.equal(v, shared[1][0][k]), k
    assert not torch.equal(shared[0][1], shared[1][1])  # data order, augmentation, dropout still differ
    seed_everything(1)
    assert torch.equal(shared[0][1], torch.rand(4))  # the build did not move the run's stream
    own = [initial(seed, "") for seed in (1, 2)]
    assert any(not torch.equal(v, own[1][0][k]) for k, v in own[0][0].items() if v.is_floating_point())


def test_a_refit_trains_on_the_validation_split_too_and_keeps_its_last_epoch(tiny, tmp_path, capsys):
    """data.refit (overlay refit): the training set is train + valid, and best.pt is the last epoch
    whatever the (seen) validation loss says."""
    import re

    plain = write_config(tmp_path / "plain.toml", tiny["splits"])
    assert fit(tiny, plain, tmp_path / "plain", "--epochs", "1") == 0
    n_train, n_valid = map(int, re.search(r"train (\d+), valid (\d+) \|", capsys.readouterr().out).groups())
    config = write_config(tmp_path / "refit.toml", tiny["splits"], "data.refit = true")
    assert fit(tiny, config, tmp_path / "run", "--epochs", "3") == 0
    assert f"train {n_train + n_valid}, valid {n_valid} (refit: valid is in train" in capsys.readouterr().out
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["epoch"] == 3 and best["best"]["epoch"] == 3
