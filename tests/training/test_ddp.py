"""DDP: two CPU processes (gloo) train the tiny model together through training.fit's own entry."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from tests.training import training_fixtures  # noqa: F401  (registers "tiny-test" here and in the spawned workers)
from tests.training.training_fixtures import make_tiny_utkface, write_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, argv: list[str], report_dir: str) -> None:
    """One torchrun-like process: the env torchrun sets, then the same code as `python -m training.fit`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from training.fit import run

    result = run(argv)
    torch.save({"params": {k: v.detach().clone() for k, v in result.net.named_parameters()},
                "history": result.history}, Path(report_dir) / f"rank{rank}.pt")


def test_two_gloo_processes_train_in_sync_and_only_rank_0_writes(tmp_path):
    tiny = make_tiny_utkface(tmp_path / "data")
    config = write_config(tmp_path / "tiny.toml", tiny["splits"], "freeze.early_freeze = false")
    out = tmp_path / "run"
    argv = ["--config", str(config), "--data", str(tiny["images"]), "--chips", str(tiny["chips"]),
            "--out", str(out), "--epochs", "2"]
    mp.spawn(_worker, args=(2, _free_port(), argv, str(tmp_path)), nprocs=2, join=True)

    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["params"].keys() == r1["params"].keys()
    for k, v in r0["params"].items():
        assert torch.equal(v, r1["params"][k]), f"{k} differs between the ranks"
    # validation losses and metrics are reduced over both shards: the same on both ranks
    assert [h["val_loss"] for h in r0["history"]] == [h["val_loss"] for h in r1["history"]]
    assert [h["weights"] for h in r0["history"]] == [h["weights"] for h in r1["history"]]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "curves.png", "last.pt", "log.csv", "run.json"]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    for k, v in r0["params"].items():
        assert torch.equal(ckpt["model_state"][k], v)
    # and the params did move: training happened
    torch.manual_seed(0)
    fresh = training_fixtures.TinyBackbone().state_dict()
    assert not torch.equal(ckpt["model_state"]["backbone.stages.0.0.weight"], fresh["stages.0.0.weight"])
