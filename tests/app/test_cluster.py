"""`annotate --cluster` on a real local Ray cluster of 2 CPU workers: the records of a local
run, a worker killed mid-file loses no record and doubles none, a re-run skips every file.
Skipped when Ray (the cluster extra) is not installed."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.app.test_batch import VIDEOS, annotate, make_videos, manifest_lines, records

from engine.batch import CRASH_ONCE_ENV

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cluster]')")


@pytest.fixture(scope="module")
def crash_marker(tmp_path_factory) -> Path:
    """Where a test arms the test-only crash hook (engine.batch.CRASH_ONCE_ENV)."""
    return tmp_path_factory.mktemp("crash") / "crash-once"


@pytest.fixture(scope="module")
def cluster(crash_marker):
    """A local Ray cluster with 2 CPUs (so 2 actors); its workers inherit the hook's variable."""
    before = os.environ.get(CRASH_ONCE_ENV)
    os.environ[CRASH_ONCE_ENV] = str(crash_marker)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop(CRASH_ONCE_ENV, None)
        else:
            os.environ[CRASH_ONCE_ENV] = before


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    return make_videos(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="module")
def local_records(videos, tiny_model_path, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("local") / "out"
    assert annotate(videos, out, tiny_model_path, "--jobs", "1") == 0
    return records(out)


@pytest.fixture(scope="module")
def ray_out(cluster, videos, tiny_model_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray") / "out"
    assert annotate(videos, out, tiny_model_path, "--cluster", "ray") == 0
    return out


def test_a_ray_run_writes_exactly_the_records_and_outputs_of_a_local_run(ray_out, local_records):
    assert records(ray_out) == local_records
    names = {p.name for p in ray_out.iterdir()}
    for i in range(VIDEOS):
        assert {f"clip{i}.mp4.annotated.mp4", f"clip{i}.mp4.jsonl", f"clip{i}.mp4.csv"} <= names
    assert not list(ray_out.glob("*.part*"))
    entries = manifest_lines(ray_out)
    assert [e["status"] for e in entries] == ["done"] * VIDEOS
    assert len({e["worker"] for e in entries}) == 2  # both actors worked


def test_the_parquet_of_a_ray_run_has_every_record_once(ray_out, local_records):
    import pyarrow.parquet as pq

    table = pq.read_table(ray_out / "records.parquet")
    assert table.num_rows == len(local_records)
    assert table.column_names[:9] == ["source", "frame", "time_s", "track_id", "box_x0", "box_y0", "box_x1",
                                      "box_y1", "score"]
    keys = [(r["source"], r["frame"], r["track_id"]) for r in table.to_pylist()]
    assert len(set(keys)) == len(keys)


def test_a_rerun_on_the_cluster_skips_every_file(ray_out, videos, tiny_model_path, capsys):
    before = records(ray_out)
    capsys.readouterr()
    assert annotate(videos, ray_out, tiny_model_path, "--cluster", "ray") == 0
    assert f"{VIDEOS} of {VIDEOS} input(s) already done" in capsys.readouterr().err
    assert len(manifest_lines(ray_out)) == VIDEOS and records(ray_out) == before


def test_a_worker_killed_mid_file_is_retried_and_every_record_written_once(
        cluster, crash_marker, videos, local_records, tiny_model_path, tmp_path, capsys):
    crash_marker.write_text("armed")  # the first actor to reach frame 3 of a file exits at once
    out = tmp_path / "out"
    rc = annotate(videos, out, tiny_model_path, "--cluster", "ray")
    stderr = capsys.readouterr().err
    assert rc == 0, stderr
    assert not crash_marker.exists()  # the hook fired: one worker process really died mid-file
    assert records(out) == local_records
    assert not list(out.glob("*.part*"))
    entries = manifest_lines(out)
    assert sorted(Path(e["path"]).name for e in entries) == [f"clip{i}.mp4" for i in range(VIDEOS)]
    assert all(e["status"] == "done" for e in entries)


def test_actors_take_a_cpu_each_and_a_gpu_backend_needs_gpu_nodes(cluster, tiny_model_path):
    from app.cluster import ClusterError, actor_resources
    from engine.pipeline import PipelineConfig

    assert actor_resources(PipelineConfig(tiny_model_path, backend="cpu")) == ({"num_cpus": 1}, 2)
    with pytest.raises(ClusterError, match="--backend cuda asks for GPU workers, but the Ray cluster has no GPU"):
        actor_resources(PipelineConfig(tiny_model_path, backend="cuda"))
