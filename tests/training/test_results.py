"""training.results builds RESULTS.md from run folders: figures from the logs, thesis beside, missing rows named."""
from __future__ import annotations

import json
import re

from training.results import main, read_run
from training.runlog import write_log_csv

NAMES = ("gender", "race", "age")
METRICS = ("gender_acc", "race_acc", "age_mae")


def record(epoch: int, val_total: float, acc: tuple[float, float, float]) -> dict:
    return {"epoch": epoch, "lr": 1e-4, "seconds": 60.0 + epoch, "val_total": val_total,
            "train_loss": dict.fromkeys(NAMES, 0.5), "val_loss": dict.fromkeys(NAMES, val_total),
            "weights": dict.fromkeys(NAMES, 1 / 3), "metrics": dict(zip(METRICS, acc)), "frozen": [], "events": []}


def make_run(runs, name: str, preset: str, seed: int, history: list[dict], epochs: int, test: dict | None = None,
             overlays: tuple[str, ...] = ()):
    folder = runs / name
    folder.mkdir(parents=True)
    write_log_csv(folder / "log.csv", history, NAMES, METRICS)
    cmd = (f"python -m training.fit --config {preset} --out runs/{name}" + (f" --seed {seed}" if seed else "")
           + "".join(f" --overlay {o}" for o in overlays))
    (folder / "run.json").write_text(json.dumps({"config": preset, "seed": seed, "epochs": epochs,
                                                 "overlays": list(overlays),
                                                 "commands": [{"command": cmd, "git_commit": "abc", "date": "x"}]}))
    if test is not None:
        (folder / "eval").mkdir()
        (folder / "eval" / "metrics.json").write_text(json.dumps({
            "runtime": "onnxruntime (engine)", "source": "images, engine detect",
            "splits": {split: dict(zip(METRICS, v)) for split, v in test.items()}}))


def test_the_generator_puts_logged_best_epochs_beside_the_thesis_and_names_what_is_missing(tmp_path):
    runs = tmp_path / "runs"
    # best epoch = lowest val_total (epoch 2), not the last one
    make_run(runs, "utkface_thesis", "utkface_thesis", 0,
             [record(1, 0.9, (0.95, 0.80, 6.0)), record(2, 0.5, (0.97, 0.85, 5.2)), record(3, 0.6, (0.99, 0.90, 4.0))],
             epochs=3, test={"test": (0.9812, 0.8734, 4.91), "test_dedup": (0.9801, 0.8722, 4.95)})
    for seed, acc in ((0, (0.980, 0.870, 4.50)), (1, (0.990, 0.880, 4.30))):
        name = "utkface_thesis_v2" if seed == 0 else f"utkface_thesis_v2_seed{seed}"
        make_run(runs, name, "utkface_thesis_v2", seed, [record(1, 0.4, acc)], epochs=9)
    make_run(runs, "smoke", "utkface_thesis_v2", 0, [record(1, 1.0, (0.5, 0.2, 10.0))], epochs=1)
    out = tmp_path / "RESULTS.md"
    assert main(["--runs", str(runs), "-o", str(out)]) == 0
    text = out.read_text()
    line = next(l for l in text.splitlines() if l.startswith("| Proposed Multi-Task Learning Network (thesis recipe)"))
    assert "| 98.47 / 87.56 / 4.68 | 97.00 / 85.00 / 5.20 | 98.12 / 87.34 / 4.91 | 98.01 / 87.22 / 4.95 |" in line
    v2 = next(l for l in text.splitlines() if l.startswith("| Proposed MTL network, stronger recipe"))
    assert "(2 of 3 seeds)" in v2 and "98.50 ± 0.71 / 87.50 ± 0.71 / 4.40 ± 0.14" in v2 and "not evaluated yet" in v2
    assert re.search(r"runs/utkface_thesis_v2_seed2`: not run yet; `python -m training.fit --config utkface_thesis_v2 .*"
                     r"--seed 2`", text)
    assert "--config utkface_thesis_v2 --out runs/utkface_thesis_v2_seed1 --seed 1" in text  # the recorded command
    base = next(l for l in text.splitlines() if l.startswith("| Single Task baseline"))
    assert base.count("not run yet") == 3 and "93.12 / 80.79 / 5.43" in base
    assert "| `runs/smoke` | utkface_thesis_v2 | 50.00 / 20.00 / 10.00 |" in text  # every run is listed somewhere
    assert "2 of 3 epochs" not in text and "3 of 3 epochs, best epoch 2" in text


def test_a_row_without_a_full_recipe_run_takes_the_quick_one_and_says_so(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "utkface_thesis_avgloss-quick", "utkface_thesis_avgloss", 0, [record(1, 0.5, (0.96, 0.84, 5.5))],
             epochs=8, test={"test": (0.9700, 0.8500, 5.40)}, overlays=("quick",))
    make_run(runs, "utkface_thesis_noef-quick", "utkface_thesis_noef", 0, [record(1, 0.5, (0.90, 0.80, 7.0))],
             epochs=8, overlays=("quick",))
    make_run(runs, "utkface_thesis_noef", "utkface_thesis_noef", 0, [record(1, 0.5, (0.98, 0.86, 4.6))], epochs=100)
    for seed, acc in ((0, (0.97, 0.85, 5.0)), (1, (0.98, 0.87, 5.2))):
        name = "utkface_thesis-quick" if seed == 0 else f"utkface_thesis_seed{seed}-quick"
        make_run(runs, name, "utkface_thesis", seed, [record(1, 0.5, acc)], epochs=8, overlays=("quick",))
    out = tmp_path / "RESULTS.md"
    assert main(["--runs", str(runs), "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    avg = next(l for l in lines if l.startswith("| Average loss"))
    assert "[quick recipe]" in avg and "| 96.00 / 84.00 / 5.50 | 97.00 / 85.00 / 5.40 |" in avg
    assert any("runs/utkface_thesis_avgloss-quick` (seed 0, 1 of 8 epochs" in l and "--overlay quick" in l for l in lines)
    noef = next(l for l in lines if l.startswith("| Early stopping of converged task"))
    assert "[quick recipe]" not in noef and "98.00 / 86.00 / 4.60" in noef  # the full recipe's run wins
    mtl = next(l for l in lines if l.startswith("| Proposed Multi-Task Learning Network (thesis recipe)"))
    assert "(2 of 3 seeds) [quick recipe]" in mtl and "97.50 ± 0.71 / 86.00 ± 1.41 / 5.10 ± 0.14" in mtl
    assert any("runs/utkface_thesis_seed2-quick`: not run yet" in l and "--seed 2 --overlay quick" in l for l in lines)


def test_recipe_pieces_are_rows_of_their_own_run_folders_with_the_overlays_in_the_command(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "utkface_thesis+age_dldl-quick", "utkface_thesis", 0, [record(1, 0.5, (0.97, 0.86, 4.9))],
             epochs=8, overlays=("quick", "age_dldl"))
    out = tmp_path / "RESULTS.md"
    assert main(["--runs", str(runs), "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    dldl = next(l for l in lines if l.startswith("| + age: distribution over one-year bins"))
    assert "[quick recipe]" in dldl and "97.00 / 86.00 / 4.90" in dldl
    assert any("runs/utkface_thesis+ema`: not run yet" in l
               and "--out runs/utkface_thesis+ema --overlay ema`" in l for l in lines)
    assert not any(l.startswith("| `runs/utkface_thesis+age_dldl-quick`") for l in lines)  # not under "Other runs"


def test_a_run_without_a_log_is_not_a_result_and_a_missing_runs_folder_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    assert read_run(tmp_path / "runs" / "empty") is None
    assert main(["--runs", str(tmp_path / "nowhere"), "-o", str(tmp_path / "R.md")]) == 2
    assert "nowhere: no such folder of runs" in capsys.readouterr().err


def test_model_files_scored_outside_runs_are_listed_with_their_command(tmp_path):
    runs = tmp_path / "runs"
    (runs / "_shipped").mkdir(parents=True)
    (runs / "_shipped" / "metrics.json").write_text(json.dumps({
        "model": "assets/models/faceattr-utkface.onnx", "command": "python -m training.evaluate X --from-images",
        "splits": {"test": {"gender_acc": 0.98, "race_acc": 0.8624, "age_mae": 5.08, "evaluated": 3242, "listed": 3287},
                   "test_dedup": {"gender_acc": 0.981, "race_acc": 0.8644, "age_mae": 5.06}}}))
    (runs / "_shipped_full").mkdir()  # another protocol's scores belong to the model card, not these tables
    (runs / "_shipped_full" / "metrics.json").write_text(json.dumps({
        "model": "assets/models/faceattr-utkface.onnx", "protocol": "full", "command": "evaluate --protocol full",
        "splits": {"test": {"gender_acc": 0.91, "race_acc": 0.84, "age_mae": 10.4, "evaluated": 4982, "listed": 5104}}}))
    out = tmp_path / "R.md"
    assert main(["--runs", str(runs), "-o", str(out)]) == 0
    text = out.read_text()
    assert ("| `assets/models/faceattr-utkface.onnx` | 98.00 / 86.24 / 5.08 | 98.10 / 86.44 / 5.06 | 3242 of 3287 "
            "| `python -m training.evaluate X --from-images` |") in text
    assert "evaluate --protocol full" not in text


def test_flip_tta_rows_come_from_a_runs_two_validation_evaluations(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "utkface_thesis_v2", "utkface_thesis_v2", 0, [record(1, 0.4, (0.97, 0.86, 4.5))], epochs=6)
    for folder, acc in (("valid_eval", (0.9739, 0.8651, 4.5287)), ("valid_eval_tta", (0.9766, 0.8678, 4.4778))):
        (runs / "utkface_thesis_v2" / folder).mkdir()
        tasks = {"gender": {"accuracy": acc[0]}, "race": {"accuracy": acc[1]}, "age": {"mae": acc[2]}}
        (runs / "utkface_thesis_v2" / folder / "metrics.json").write_text(json.dumps(
            {"command": f"evaluate {folder}", "splits": {"valid": {"tasks": tasks}}}))
    out = tmp_path / "RESULTS.md"
    assert main(["--runs", str(runs), "-o", str(out)]) == 0
    row = next(l for l in out.read_text().splitlines() if l.startswith("| `runs/utkface_thesis_v2` | 97.39"))
    assert "| 97.39 / 86.51 / 4.53 | 97.66 / 86.78 / 4.48 | `evaluate valid_eval_tta` |" in row


def test_runs_of_another_machine_stay_from_the_kept_logs_and_lost_ones_are_carried_marked(tmp_path):
    """Each generation keeps the runs' small files in runlogs/ (beside the output); a row whose logs
    exist nowhere keeps its previous figures, marked †, until a run replaces it."""
    runs, out = tmp_path / "runs", tmp_path / "RESULTS.md"
    make_run(runs, "utkface_thesis_avgloss", "utkface_thesis_avgloss", 0, [record(1, 0.5, (0.97, 0.85, 5.2))], epochs=1,
             test={"test": (0.98, 0.86, 5.1)})
    (runs / "utkface_thesis_avgloss" / "best.pt").write_bytes(b"weights are not kept")
    previous = ["# Training results (generated)", "", "### Table 5.4: with and without Early Freeze", "",
                "| method | thesis gender / race / age MAE | ours, valid | ours, CORAL test (engine) | ours, test_dedup (engine) |",
                "|---|---|---|---|---|",
                "| Early stopping of converged task (no Early Freeze) [quick recipe] | 98.31 / 86.58 / 4.64 | 97.82 / 86.47 / 5.50 "
                "| 98.08 / 85.66 / 5.36 | 98.19 / 85.84 / 5.34 |", "",
                "- Early stopping of converged task (no Early Freeze), `runs/utkface_thesis_noef-quick` (seed 0): `cmd`", ""]
    out.write_text("\n".join(previous))
    assert main(["--runs", str(runs), "-o", str(out)]) == 0
    kept = tmp_path / "runlogs" / "utkface_thesis_avgloss"
    assert sorted(p.name for p in kept.rglob("*") if p.is_file()) == ["log.csv", "metrics.json", "run.json"]

    import shutil
    shutil.rmtree(runs)  # a new machine: runs/ is gone, the kept logs are not
    assert main(["--runs", str(runs), "-o", str(out)]) == 0
    text = out.read_text()
    avg = next(l for l in text.splitlines() if l.startswith("| Average loss"))
    assert "97.00 / 85.00 / 5.20 | 98.00 / 86.00 / 5.10" in avg and "†" not in avg
    noef = next(l for l in text.splitlines() if l.startswith("| Early stopping of converged task"))
    assert "†" in noef and "98.08 / 85.66 / 5.36" in noef and "not run yet" not in noef
    assert "- Early stopping of converged task (no Early Freeze) †, `runs/utkface_thesis_noef-quick`" in text
    assert "not run yet; `python -m training.fit --config utkface_thesis_noef" not in text
    assert text.count("carried over from the previous RESULTS.md") == 1

    make_run(runs, "utkface_thesis_noef", "utkface_thesis_noef", 0, [record(1, 0.5, (0.96, 0.84, 5.0))], epochs=1)
    assert main(["--runs", str(runs), "-o", str(out)]) == 0  # rerun: the new figures replace the carried ones
    noef = next(l for l in out.read_text().splitlines() if l.startswith("| Early stopping of converged task"))
    assert "96.00 / 84.00 / 5.00" in noef and "†" not in noef


def test_a_refit_row_keeps_the_last_epoch_and_shows_no_validation_figures(tmp_path):
    """A refit trained on the validation split: its figures there are of seen data, so the row
    shows none, and its checkpoint is the last epoch whatever the validation loss said."""
    runs, out = tmp_path / "runs", tmp_path / "RESULTS.md"
    folder = "utkface_thesis_v2+backbone_lr01+shared_init+refit"
    make_run(runs, folder, "utkface_thesis_v2", 0, [record(1, 0.4, (0.99, 0.95, 3.0)), record(2, 0.5, (0.98, 0.94, 3.1))],
             epochs=2, test={"test": (0.985, 0.877, 4.30)}, overlays=("backbone_lr01", "shared_init", "refit"))
    assert main(["--runs", str(runs), "-o", str(out)]) == 0
    text = out.read_text()
    row = next(l for l in text.splitlines() if l.startswith("| the same seeds refit"))
    assert "(1 of 3 seeds) | 98.47 / 87.56 / 4.68 | – / – / – | 98.50 / 87.70 / 4.30 |" in row
    assert f"`runs/{folder}` (seed 0, 2 of 2 epochs, best epoch 2," in text
