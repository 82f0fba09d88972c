"""The annotate section's sequential-vs-pipelined rows: shape, record identity, report lines.
Tiny sizes; the numbers mean nothing here and are not checked."""
from __future__ import annotations

import math

from benchmarks.annotate_modes import MODES, measure_annotation_modes, report_lines, summary_rows
from tests.engine.scenes import make_scene


def test_modes_are_measured_in_one_run_with_ratios_and_identical_records(tiny_model_path, tmp_path):
    scene = make_scene(tmp_path / "walk.mp4", frames=8)
    modes = (MODES[0], MODES[2])  # sequential and pipelined, 1 network thread
    sec = measure_annotation_modes(tiny_model_path, scene.path, repeats=1, modes=modes, log=lambda *_: None)
    seq, pipe = sec["rows"]
    assert [r["mode"] for r in sec["rows"]] == [m.name for m in modes]
    assert seq["frames"] == pipe["frames"] == 8 and all(math.isfinite(r["fps"]) and r["fps"] > 0 for r in sec["rows"])
    assert seq["ratio_to_single_threaded"] == 1.0 and pipe["ratio_to_single_threaded"] > 0
    assert pipe["records_identical"] is True and sec["records_identical"] is True
    assert sec["best"] == pipe["mode"] and isinstance(sec["meets_fps_target"], bool)
    lines = report_lines(sec)
    assert any(pipe["mode"] in line and "yes" in line for line in lines)
    assert [row[0].startswith("batch annotation") for row in summary_rows(sec)] == [True, True]
