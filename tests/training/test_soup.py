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
