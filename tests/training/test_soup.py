"""training.soup: the weighted mean of runs' validated weights, everything else the last run's."""
from __future__ import annotations

import pytest
import torch

from training.checkpoint import CKPT_FORMAT, CheckpointError, load_checkpoint
from training.soup import main, make_soup


def _ckpt(path, seed: int, name: str, width: int = 4):
    g = torch.Generator().manual_seed(seed)
    state = {"head.weight": torch.randn(width, 3, generator=g), "bn.running_mean": torch.randn(width, generator=g),
             "bn.num_batches_tracked": torch.tensor(100 * seed)}
    torch.save({"format": CKPT_FORMAT, "config": {"name": name}, "model_state": state,
                "train_model_state": state, "epoch": seed, "stopped": False}, path)
    return state


def test_the_soup_is_the_weighted_mean_of_the_float_weights(tmp_path):
    a = _ckpt(tmp_path / "a.pt", 1, "run_a")
    b = _ckpt(tmp_path / "b.pt", 2, "run_b")
    soup = make_soup([tmp_path / "a.pt", tmp_path / "b.pt"], [1.0, 3.0])
    for k in ("head.weight", "bn.running_mean"):
        assert torch.allclose(soup["model_state"][k], 0.25 * a[k] + 0.75 * b[k], atol=1e-6)
    assert int(soup["model_state"]["bn.num_batches_tracked"]) == 200  # integer buffers: the last run's
    assert soup["train_model_state"] is soup["model_state"] and soup["epoch"] == 2 and soup["config"] == {"name": "run_b"}
    assert [s["config"] for s in soup["soup"]] == ["run_a", "run_b"]


def test_the_cli_writes_a_checkpoint_the_loaders_read(tmp_path, capsys):
    a = _ckpt(tmp_path / "a.pt", 1, "run_a")
    b = _ckpt(tmp_path / "b.pt", 2, "run_b")
    assert main([str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "-o", str(tmp_path / "soup" / "best.pt")]) == 0
    soup = load_checkpoint(tmp_path / "soup" / "best.pt")
    assert torch.allclose(soup["model_state"]["head.weight"], (a["head.weight"] + b["head.weight"]) / 2)
    assert "the mean of" in capsys.readouterr().out


def test_runs_of_different_networks_are_refused_with_one_line(tmp_path, capsys):
    _ckpt(tmp_path / "a.pt", 1, "run_a", width=4)
    _ckpt(tmp_path / "b.pt", 2, "run_b", width=5)
    with pytest.raises(CheckpointError, match="ingredient 1"):
        make_soup([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert main([str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "-o", str(tmp_path / "s.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and not (tmp_path / "s.pt").exists()


def test_one_checkpoint_or_bad_weights_are_refused(tmp_path):
    _ckpt(tmp_path / "a.pt", 1, "run_a")
    _ckpt(tmp_path / "b.pt", 2, "run_b")
    with pytest.raises(CheckpointError, match="two checkpoints"):
        make_soup([tmp_path / "a.pt"])
    with pytest.raises(CheckpointError, match="weight"):
        make_soup([tmp_path / "a.pt", tmp_path / "b.pt"], [1.0, -1.0])


def test_batchnorm_statistics_are_recomputed_on_the_soups_weights_and_nothing_else_moves(tmp_path, capsys):
    """--bn-data/--bn-chips: two seeds of one tiny network (shared init) averaged, then their BatchNorm
    running statistics recomputed on training batches; the learned weights stay the plain mean."""
    from tests.training.training_fixtures import make_tiny_utkface, write_config
    from training.fit import main as fit_main

    tiny = make_tiny_utkface(tmp_path / "tiny")
    config = write_config(tmp_path / "c.toml", tiny["splits"], "model.init_seed = 0")
    paths = []
    for seed in (0, 1):
        out = tmp_path / f"seed{seed}"
        assert fit_main(["--config", str(config), "--data", str(tiny["images"]), "--chips", str(tiny["chips"]),
                         "--out", str(out), "--seed", str(seed), "--epochs", "1"]) == 0
        paths.append(str(out / "best.pt"))
    assert main([*paths, "-o", str(tmp_path / "plain.pt")]) == 0
    assert main([*paths, "-o", str(tmp_path / "bn.pt"), "--bn-data", str(tiny["images"]),
                 "--bn-chips", str(tiny["chips"]), "--bn-batches", "3"]) == 0
    plain, bn = load_checkpoint(tmp_path / "plain.pt"), load_checkpoint(tmp_path / "bn.pt")
    stats = [k for k in plain["model_state"] if k.endswith(("running_mean", "running_var"))]
    assert stats and any(not torch.allclose(plain["model_state"][k], bn["model_state"][k]) for k in stats)
    learned = [k for k, v in plain["model_state"].items() if v.is_floating_point() and k not in stats]
    assert all(torch.equal(plain["model_state"][k], bn["model_state"][k]) for k in learned)
    assert 0 < bn["bn_recomputed"]["batches"] <= 3
    assert main([*paths, "-o", str(tmp_path / "x.pt"), "--bn-data", str(tiny["images"])]) == 2
    assert "--bn-data and --bn-chips go together" in capsys.readouterr().err
