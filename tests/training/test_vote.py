"""training.vote: majority vote of classes and mean of ages across models' prediction files."""
from __future__ import annotations

import pytest

from training.vote import main, vote


def _table(rows):
    return {f: {"file": f, "gender_true": gt, "age_true": at, "gender_pred": gp, "age_pred": ap}
            for f, gt, at, gp, ap in rows}


def test_classes_go_by_majority_ages_by_mean_on_the_faces_all_models_saw():
    a = _table([("x", "1", "30", "1", "20"), ("y", "0", "40", "1", "40"), ("z", "0", "50", "0", "50")])
    b = _table([("x", "1", "30", "0", "40"), ("y", "0", "40", "0", "44")])
    c = _table([("x", "1", "30", "1", "30"), ("y", "0", "40", "0", "36")])
    scores = vote([a, b, c])
    assert scores["faces"] == 2  # z: only one model saw it
    assert scores["gender_acc"] == pytest.approx(1.0)  # x: 1,0,1 -> 1 right; y: 1,0,0 -> 0 right
    assert scores["age_mae"] == pytest.approx((0 + 0) / 2)  # x: mean 30; y: mean 40
    assert vote([a, b])["gender_acc"] == pytest.approx(0.5)  # ties go to the first file: x right (1), y wrong (1)


def test_the_cli_prints_one_line_and_refuses_files_that_share_no_face(tmp_path, capsys):
    for name, rows in (("a", "x,1,30,1,31"), ("b", "x,1,30,1,33"), ("c", "q,1,30,1,33")):
        (tmp_path / f"{name}.csv").write_text("file,gender_true,age_true,gender_pred,age_pred\n" + rows + "\n")
    assert main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]) == 0
    assert "ensemble of 2: gender_acc 100.00 %, age_mae 2.000 (1 faces)" in capsys.readouterr().out
    assert main([str(tmp_path / "a.csv"), str(tmp_path / "c.csv")]) == 2
    assert "share no face" in capsys.readouterr().err
