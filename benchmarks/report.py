"""RESULTS.md and its plots from the benchmarks' JSON files.

    python -m benchmarks.report [--speed benchmarks/out/speed.json]
                                [--accuracy benchmarks/out/accuracy.json] [--out benchmarks]

Writes ``<out>/RESULTS.md`` and, under ``<out>/results/``, the PNG plots and a copy of
each JSON file it read (so the committed numbers keep their raw data). Nothing here
measures anything: every number comes from the JSON files.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from benchmarks.annotate_modes import report_lines as annotate_modes_lines, summary_rows as annotate_modes_summary
from benchmarks.common import OUT_DIR, REPO_ROOT
from benchmarks.live_hd import report_lines as live_hd_lines, summary_rows as live_hd_summary
from benchmarks.report_plots import plot_network, plot_scaling
from benchmarks.startup import startup_lines

STAGE_ORDER = ("decode", "detect_hog_up0", "detect_hog_up1", "detect_cnn_up0", "align", "network",
               "track", "smooth", "render", "encode")


def _f(v, digits: int = 1, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    if pct:
        return f"{100 * v:.{digits}f} %"
    return f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


def _machine(doc: dict) -> list[str]:
    m = doc["machine"]
    return [f"- CPU: {m['cpu']} ({', '.join(m.get('cpu_simd') or []) or 'SIMD flags unknown'}), "
            f"{m['logical_cores']} logical cores ({m['usable_cores']} usable), "
            f"{m['memory_gib']} GiB; {m['os']}",
            f"- Python {m['python']}, numpy {m['numpy']}, OpenCV {m['opencv']}, dlib {m['dlib']}, "
            f"ONNX Runtime {m['onnxruntime']} ({', '.join(m['onnxruntime_providers'])})",
            f"- git {m['git_commit']}, {m['date']}; load average (1/5/15 min) when written: {m['loadavg_1_5_15']}"]


# ---------------------------------------------------------------- speed

def _speed(doc: dict, res_dir: Path) -> list[str]:
    L = ["## Speed", "", f"Command: `{doc['command']}`", ""] + _machine(doc) + [""]
    if doc.get("quick"):
        L += ["**This is a `--quick` smoke run on tiny sizes: its numbers are not results.**", ""]
    L += [f"Model measured: {doc['model']['note']} (`{doc['model']['name']}`, backbone {doc['model']['backbone']}, "
          f"tasks {', '.join(doc['model']['tasks'])}). Test faces: {doc['test_faces']}.", ""]
    s = doc["sections"]
    if "stages" in s:
        st = s["stages"]
        L += ["### Per stage (median ms per frame; per face in brackets)", "",
              f"Load average during the section: {st['loadavg_start']} -> {st['loadavg_end']}. "
              + st["detectors_full_frame"] + ".", ""]
        rows = st["rows"]
        header = ["stage"] + [f"{r['width']}x{r['height']}, {r['faces_found']}/{r['faces_placed']} faces" for r in rows]
        body = []
        for name in STAGE_ORDER:
            if not any(name in r["stages"] for r in rows):
                continue
            cells = [name]
            for r in rows:
                e = r["stages"].get(name)
                if e is None:
                    cells.append("")
                elif name in ("align", "network", "render") and r["faces_found"] > 1:
                    cells.append(f"{e['median_ms']:.1f} ({e['per_face_ms']:.2f})")
                else:
                    cells.append(f"{e['median_ms']:.1f}" if e["median_ms"] >= 0.1 else f"{e['median_ms']:.3f}")
            body.append(cells)
        body.append(["**frame total** (decode + HOG up0 + align + network + track + smooth + render + encode)"]
                    + [f"**{r['frame_total_hog_up0_ms']:.1f}**" for r in rows])
        L += _table(header, body)
        png = plot_scaling(rows, res_dir / "scaling.png")
        L += [f"![cost vs faces and resolution](results/{png.name})", ""]
    if "network" in s:
        L += _network(s["network"], res_dir)
    if "live" in s:
        L += _live(s["live"])
    if "live_hd" in s:
        L += live_hd_lines(s["live_hd"])
    if "annotate" in s:
        a = s["annotate"]
        L += ["### Batch annotation throughput", "",
              f"`engine.annotate.annotate_file` on `{Path(a['video']).name}` ({a['frames']} frames, default settings, "
              f"annotated mp4 + JSONL): {a['annotate_s']:.2f} s = {a['annotate_fps']:.1f} fps. Decoding and encoding the "
              f"same file alone (cv2.VideoCapture -> engine VideoWriter): {a['decode_encode_s']:.2f} s = "
              f"{a['decode_encode_fps']:.1f} fps.", "",
              f"Ratio (annotation throughput / decode+encode throughput): **{a['throughput_ratio']:.3f}** "
              f"(target >= {a['target_ratio']}): **{'met' if a['meets_target'] else 'missed'}**. "
              f"Load {a['loadavg_start']} -> {a['loadavg_end']}.", ""]
        if not a["meets_target"]:
            L += ["Why: decoding plus MPEG-4 encoding a 640x480 frame costs about "
                  f"{1000 / a['decode_encode_fps']:.1f} ms here, while detection and the network cost tens of ms "
                  "per frame (see the stage table), so a ratio of 0.5 would need the whole analysis to cost no "
                  "more than decode+encode. The target, as written, cannot be met on this CPU by any pipeline "
                  "that runs a face detector on every frame.", ""]
        if "modes" in a:
            L += annotate_modes_lines(a["modes"])
    if "startup" in s:
        L += startup_lines(s["startup"])
    L += ["### GPU", ""]
    g = doc.get("gpu", {})
    if g.get("available"):
        L += _gpu(g)
    else:
        L += ["No GPU machine was available to this session: no GPU numbers. "
              "(`benchmarks/out/gpu.json`, written by a session that has one, is included here when present.)", ""]
    return L


def _gpu(g: dict) -> list[str]:
    m = g.get("machine", {})
    dev = (g.get("device") or {}).get("nvidia_smi")
    L = [f"From `{g['source']}` (`{g.get('command', 'python -m benchmarks.gpu')}`): device "
         f"{'; '.join(dev) if dev else 'unknown'}, back-end {g.get('backend')} -> provider {g.get('provider')}; "
         f"host CPU {m.get('cpu', '?')}, {m.get('logical_cores', '?')} cores; {g.get('model', {}).get('note', '')}.", ""]
    if g.get("notes"):
        L += ["Notes: " + "; ".join(g["notes"]), ""]
    if g.get("network"):
        L += _table(["batch", "ms per batch (median)", "ms per face", "faces/s"],
                    [[b, f"{r['batch_ms']['median_ms']:.2f}", f"{r['ms_per_face']:.3f}", f"{r['faces_per_s']:.0f}"]
                     for b, r in g["network"].items()])
    a = g.get("annotate_sample")
    if a:
        L += [f"Batch annotation of the sample video there: {a['frames']} frames at {a['fps']} fps"
              + (f" (error: {a['error']})" if a.get("error") else "") + ".", ""]
    if g.get("live"):
        L += _live(g["live"])
    return L


def _network(n: dict, res_dir: Path) -> list[str]:
    L = ["### The network alone, per face, CPU", "",
         f"{n['faces']} real faces, tiled to each batch size. FaceAttr: one network, tasks {', '.join(n['tasks'])}. "
         "Peers: gender + age only (two networks each; no race). "
         + (f"FaceAttr's numbers: {n['faceattr_note']}. " if n.get("faceattr_note") else "")
         + f"Load average {n['loadavg_start']} -> {n['loadavg_end']}.", ""]
    rows = []
    for name, v in n["faceattr"].items():
        rows.append([f"FaceAttr, {name}"] + [f"{r['ms_per_face']:.2f}" for r in v["batches"].values()])
    batches = list(next(iter(n["faceattr"].values()))["batches"].keys())
    for pname, p in n["peers"].items():
        if "variants" not in p:
            rows.append([p["title"], p.get("skipped") or p.get("error", "")] + [""] * (len(batches) - 1))
            continue
        for vname, v in p["variants"].items():
            rows.append([f"{p['title']}: {vname}"] + [f"{v['batches'][b]['both_ms_per_face']:.2f}" if b in v["batches"] else ""
                                                     for b in batches])
    L += _table(["ms per face"] + [f"batch {b}" for b in batches], rows)
    spin = n.get("ort_spinning")
    if spin:
        L += ["ONNX Runtime's thread pool on this 2-core CPU: HOG (640x480, 4 faces) then the network (4 faces), "
              "alternating in one thread as in the pipeline:", ""]
        L += _table(["ONNX Runtime session", "HOG ms", "network ms"],
                    [[k, f"{v['hog_640x480_ms']:.1f}", f"{v['network_4_faces_ms']:.1f}"] for k, v in spin.items()])
        L += ["With spinning allowed (the default), the worker threads keep a core busy after each run, so the "
              "detector that runs next (and other processes) lose it; compare the rows.", ""]
    if n["ratios"]:
        L += ["Peer ms/face divided by FaceAttr ms/face at the same batch and thread count (> 1: FaceAttr is faster):", ""]
        L += _table(["peer", "variant", "threads", "batch", "peer", "FaceAttr", "ratio"],
                    [[r["peer"], r["variant"], r["threads"], r["batch"], f"{r['peer_ms_per_face']:.2f}",
                      f"{r['faceattr_ms_per_face']:.2f}", f"**{r['peer_over_faceattr']:.2f}**"] for r in n["ratios"]])
    for pname, p in n["peers"].items():
        if "fed" in p:
            L += [f"- {p['title']} was fed: {p['fed']}."]
    L += ["- Levi-Hassner was fed FaceAttr's landmarks as a dlib-aligned 227x227 chip (see Accuracy)." if "levi" in n["peers"] else "", ""]
    png = plot_network(n, res_dir / "network.png")
    return L + [f"![network per face](results/{png.name})", ""]


def _live(live: dict) -> list[str]:
    t = live["targets"]
    L = ["### Live pipeline", "",
         f"`{Path(live['video']).name}` ({live['size_wh'][0]}x{live['size_wh'][1]}) played as a live {live['source_fps']:g} fps "
         f"source (frames released by the wall clock), {live['seconds']:g} s per setting; newest-frame mailbox; labels "
         f"drawn by the Renderer. Latency: frame released -> labels drawn. Target: >= {t['fps']:g} fps (counted as met at "
         f">= {t['fps_counts_as_met_at']:.1f}) and p95 latency <= {t['p95_latency_ms']:g} ms on frames with up to "
         f"{t['max_faces']} faces. Load {live['loadavg_start']} -> {live['loadavg_end']}.", ""]
    rows = [[v["variant"], f"{v['delivered_fps']:.1f}", f"{v['dropped']}/{v['frames_released']}",
             _f(v["latency_ms"]["p50"]), _f(v["latency_ms"]["p95"]), _f(v["latency_ms_up_to_5_faces"]["p95"]),
             f"{v['faces_per_frame']['mean']:.1f} (max {v['faces_per_frame']['max']})",
             _f(v.get("recall_iou50"), 1, True),
             f"{_f(v.get('detect_median_ms_when_run'))} / {v['stage_median_ms'].get('model', 0):.1f}",
             "**met**" if v["meets_target"] else "missed"] for v in live["variants"]]
    L += _table(["setting", "fps", "dropped", "p50 ms", "p95 ms", "p95 ms (<=5 faces)", "faces/frame",
                 "face recall (IoU 0.5)", "detect (when run) / network ms", "target"], rows)
    L += ["Faces per frame and the <=5-faces scope count the faces fully in view by the video's truth file "
          "when it has one; recall is the share of those the pipeline reported (IoU >= 0.5), on the frames it "
          "processed.", ""]
    met = live["meeting_target"]
    L += [f"Settings that meet the target: {', '.join(met) if met else '**none** on this run'}.", ""]
    return L


# ---------------------------------------------------------------- accuracy

def _accuracy(doc: dict, calibration: dict | None) -> list[str]:
    L = ["## Accuracy", "", f"Command: `{doc['command']}`", ""] + _machine(doc) + [""]
    if doc.get("quick"):
        L += ["**This is a `--quick` smoke run (a 50-image sample): its numbers are not results.**", ""]
    if doc.get("skipped"):
        return L + [doc["skipped"], "", "Reference (thesis, published):", ""] + _reference(doc) + [doc["celeba"], ""]
    d = doc["dataset"]
    L += [f"{d['name']}: {d['images']} images; a face found in {d['faces_found']} ({d['no_face']} without, "
          f"{d['unreadable']} unreadable) by {d['detection']}; every system is scored on those same faces. "
          f"{d['dedup']}: {d['faces_found_dedup']} of them.", ""]
    cc = d.get("chip_cache_check")
    if cc and cc.get("checked"):
        L += [f"Train = serve check: {cc['identical']} of {cc['checked']} chips made here are identical to the training "
              f"chip cache's (max |diff| {cc['max_abs_diff']}).", ""]
    systems = doc["systems"]
    for split in ("test", "test_dedup"):
        L += [f"### {'CORAL test' if split == 'test' else 'CORAL test, de-duplicated'}", ""]
        rows = []
        for key, s in systems.items():
            if split not in s:
                rows.append([s["title"], "", "", "", "", s.get("skipped") or s.get("error", "")])
                continue
            o = s[split]["overall"]
            rows.append([s["title"], o["n"], _f(o["age_mae"], 2), _f(o["age_cs5"], 1, True),
                         _f(o["gender_acc"], 2, True), _f(o["race_acc"], 2, True)])
        if split == "test":
            ref = doc["reference"][0]
            rows.append([f"{ref['system']} ({ref['note']})", "3287 (thesis)", _f(ref["age_mae"], 2), "n/a",
                         _f(ref["gender_acc"], 2, True), _f(ref["race_acc"], 2, True)])
        L += _table(["system", "faces", "age MAE (years)", "CS@5", "gender acc", "race acc"], rows)
    L += ["What each system was fed:", ""]
    for s in systems.values():
        if "fed" in s:
            L.append(f"- {s['title']}: {s['fed']}" + (f"; age estimate: {s['age_estimate']}" if "age_estimate" in s else ""))
    L += [f"- Levi-Hassner age ranges and the age used for each: "
          + ", ".join(f"{k} -> {v:g}" for k, v in doc["levi_age_ranges"].items())
          + ". Ages 21-24, 33-37, 44-47 and 54-59 fall between its ranges, so its MAE carries that coarseness."]
    for name, text in (doc.get("peer_training_data") or {}).items():
        L.append(f"- What {name} was trained on: {text}.")
    L += [""]
    if calibration:
        L += ["Levi-Hassner input, chosen on CORAL *train* images "
              f"(`python -m benchmarks.peers.calibrate_levi`, {calibration['images']} faces):", ""]
        L += _table(["input", "gender acc", "age MAE (midpoint)", "age MAE (expected)"],
                    [[k, _f(v["gender_acc"], 1, True), _f(v["age_mae_midpoint"], 2), _f(v["age_mae_expected"], 2)]
                     for k, v in calibration["results"].items()])
    L += ["### Per group (CORAL test; race x gender by the true labels)", ""]
    for s in systems.values():
        if "test" not in s:
            continue
        L += [f"**{s['title']}**", ""]
        L += _table(["race", "gender", "n", "age MAE", "gender acc", "race acc"],
                    [[g["race"], g["gender"], g["n"], _f(g["age_mae"], 2), _f(g["gender_acc"], 1, True),
                      _f(g["race_acc"], 1, True)] for g in s["test"]["groups"]])
    L += ["### Reference and CelebA", ""] + _reference(doc) + [doc["celeba"], ""]
    return L


def _reference(doc: dict) -> list[str]:
    rows = []
    for r in doc["reference"]:
        rows.append([r["dataset"], _f(r.get("gender_acc"), 2, True), _f(r.get("race_acc"), 2, True),
                     _f(r.get("age_mae"), 2), _f(r.get("young_acc"), 2, True), r["note"]])
    return _table(["thesis, published", "gender acc", "race acc", "age MAE", "young acc", ""], rows)


# ---------------------------------------------------------------- main

def _summary(speed: dict | None, accuracy: dict | None) -> list[str]:
    """The headline numbers against the issue's targets, each pointing at its section."""
    rows = []
    sec = (speed or {}).get("sections", {})
    live = sec.get("live")
    if live:
        d = live["variants"][0]
        # Best: one that meets the target, else the lowest p95 latency among settings that
        # still find the faces (recall >= 95 % where the video has a truth file).
        keeps = [v for v in live["variants"] if (v.get("recall_iou50") or 1.0) >= 0.95] or live["variants"]
        best = min(keeps, key=lambda v: (not v["meets_target"], v["latency_ms_up_to_5_faces"]["p95"] or 1e9))
        rows.append([f"live, {d['variant']}", ">= 30 fps, p95 <= 33 ms",
                     f"{d['delivered_fps']:.1f} fps, p95 {_f(d['latency_ms_up_to_5_faces']['p95'])} ms, "
                     f"recall {_f(d.get('recall_iou50'), 1, True)}",
                     "met" if d["meets_target"] else "missed"])
        rows.append([f"live, best setting with face recall >= 95 % ({best['variant']})", ">= 30 fps, p95 <= 33 ms",
                     f"{best['delivered_fps']:.1f} fps, p95 {_f(best['latency_ms_up_to_5_faces']['p95'])} ms, "
                     f"recall {_f(best.get('recall_iou50'), 1, True)}", "met" if best["meets_target"] else "missed"])
    if "live_hd" in sec:
        rows += live_hd_summary(sec["live_hd"])
    a = sec.get("annotate")
    if a:
        rows.append(["batch annotation / (decode+encode)", ">= 0.5", f"{a['throughput_ratio']:.3f}",
                     "met" if a["meets_target"] else "missed"])
        if "modes" in a:
            rows += annotate_modes_summary(a["modes"])
    start = sec.get("startup")
    if start:
        first = start["median_warm"].get("first_labelled_frame_s")
        rows.append(["app start to first labelled frame", f"<= {start['target_s']} s",
                     f"{first} s (median)" if first is not None else "no labelled frame",
                     "met" if start["meets_target"] else "missed"])
    net = sec.get("network")
    if net:
        for r in net["ratios"]:
            if r["batch"] in (1, 8) and r["threads"] == 1 and ("shipped" in r["variant"] or r["peer"] == "levi"):
                rows.append([f"network per face vs {r['peer']} ({r['variant']}), batch {r['batch']}, 1 thread",
                             "faster", f"peer/FaceAttr = {r['peer_over_faceattr']:.2f}",
                             "faster" if r["peer_over_faceattr"] > 1 else "slower"])
    systems = (accuracy or {}).get("systems", {})
    fa = systems.get("faceattr", {}).get("test", {}).get("overall")
    if fa:
        ref = accuracy["reference"][0]
        rows.append(["CORAL test: FaceAttr vs thesis", f"age MAE {ref['age_mae']}, gender {_f(ref['gender_acc'], 2, True)}, "
                     f"race {_f(ref['race_acc'], 2, True)}",
                     f"age MAE {_f(fa['age_mae'], 2)}, gender {_f(fa['gender_acc'], 2, True)}, race {_f(fa['race_acc'], 2, True)}",
                     "see Accuracy"])
        for key in ("cydral", "levi"):
            o = systems.get(key, {}).get("test", {}).get("overall")
            if o:
                better = [m for m in ("age_mae", "gender_acc") if o[m] is not None and fa[m] is not None
                          and ((fa[m] < o[m]) if m == "age_mae" else (fa[m] > o[m]))]
                rows.append([f"CORAL test: FaceAttr vs {key}", "more accurate",
                             f"age MAE {_f(fa['age_mae'], 2)} vs {_f(o['age_mae'], 2)}, gender "
                             f"{_f(fa['gender_acc'], 2, True)} vs {_f(o['gender_acc'], 2, True)}",
                             "better on " + (", ".join(better) if better else "neither")])
    if not rows:
        return []
    quick = (speed or {}).get("quick") or (accuracy or {}).get("quick")
    return (["## Summary", ""] + (["**Made from `--quick` smoke runs: not results.**", ""] if quick else [])
            + _table(["what", "target", "measured", "verdict"], rows))


def build(speed: dict | None, accuracy: dict | None, out: Path, calibration: dict | None = None) -> Path:
    res_dir = out / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    L = ["# FaceAttr benchmark results", "",
         "Generated by `python -m benchmarks.report` from the JSON files in `benchmarks/results/` (copies of "
         "`benchmarks/out/*.json` as written by the commands below). Do not edit by hand: rerun",
         "", "```", "bash benchmarks/peers/setup.sh          # the peers' venvs (once)",
         "python -m benchmarks.speed               # -> benchmarks/out/speed.json",
         "python -m benchmarks.accuracy            # -> benchmarks/out/accuracy.json",
         "python -m benchmarks.report              # -> benchmarks/RESULTS.md + benchmarks/results/", "```", "",
         "The CPU may be shared with other work while measuring (training jobs, here): each section records the "
         "load average around it. Medians after warm-up; ratios come from the same run.", ""]
    L += _summary(speed, accuracy)
    if speed:
        L += _speed(speed, res_dir)
    else:
        L += ["## Speed", "", "No speed.json: run `python -m benchmarks.speed`.", ""]
    if accuracy:
        L += _accuracy(accuracy, calibration)
    else:
        L += ["## Accuracy", "", "No accuracy.json: run `python -m benchmarks.accuracy`.", ""]
    path = out / "RESULTS.md"
    path.write_text("\n".join(L).rstrip() + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    p.add_argument("--speed", type=Path, default=OUT_DIR / "speed.json")
    p.add_argument("--accuracy", type=Path, default=OUT_DIR / "accuracy.json")
    p.add_argument("--calibration", type=Path, default=OUT_DIR / "levi_calibration.json")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks")
    args = p.parse_args(argv)
    docs = {}
    for name, path in (("speed", args.speed), ("accuracy", args.accuracy), ("calibration", args.calibration)):
        if path.is_file():
            docs[name] = json.loads(path.read_text())
            (args.out / "results").mkdir(parents=True, exist_ok=True)
            if path.resolve() != (args.out / "results" / path.name).resolve():
                shutil.copyfile(path, args.out / "results" / path.name)
        else:
            print(f"report: {path} not found; that section says so")
    if not docs.get("speed") and not docs.get("accuracy"):
        print("error: neither speed.json nor accuracy.json exists; run the benchmarks first", file=sys.stderr)
        return 2
    path = build(docs.get("speed"), docs.get("accuracy"), args.out, docs.get("calibration"))
    print(f"report: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
