"""Keep RESULTS.md whole across machines: the run logs archive, and rows whose logs were lost.

A session's machine does not outlive it, and ``runs/`` (checkpoints of 100 MB and more) is
not committed; the figures of a table must still come from the files a run wrote. So every
generation first copies each run's small files (``log.csv``, ``run.json``, the evaluations'
``metrics.json``) into ``training/runlogs/<run>/``, which is committed, and reads the runs
from there: a run made on another machine stays in the tables.

Runs made before that archive existed have no logs left anywhere. Their rows, as the
previous RESULTS.md printed them, are carried over (and marked †) where the new document
would say "not run yet" or lacks them, until a rerun replaces them.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

MARK = "†"
FOOTNOTE = (f"{MARK}: carried over from the previous RESULTS.md; the run folder it was generated from was lost "
            "with the machine it ran on, before `training/runlogs/` kept every run's logs. The command beside it "
            "reproduces it; a rerun replaces the row.")
KEPT = ("log.csv", "run.json", "metrics.json")  # per folder: what the generator reads (no weights, no images)
_NOTE = re.compile(r"^- (.*?), `runs/([^`]+)`")
_SEEDS = re.compile(r" \(\d+ of \d+ seeds\)")


def archive_runs(runs_dir: Path, archive: Path) -> int:
    """Copy the small files of every run folder under ``runs_dir`` into ``archive``; how many runs."""
    n = 0
    for folder in sorted(p for p in Path(runs_dir).glob("*") if p.is_dir()):
        files = [f for f in folder.rglob("*") if f.is_file() and f.name in KEPT and len(f.relative_to(folder).parts) <= 2]
        if not files:
            continue
        for f in files:
            dest = archive / folder.name / f.relative_to(folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
        n += 1
    return n


def _sections(text: str) -> dict[str, list[str]]:
    """'### title' -> its lines (the title line excluded); '' holds what comes before the first."""
    out, title = {"": []}, ""
    for line in text.splitlines():
        if line.startswith("### "):
            title = line[4:].strip()
            out[title] = []
        else:
            out[title].append(line)
    return out


def _row_key(line: str) -> str:
    """A table row's identity: a table's method label (without its seed count and recipe mark), or
    for rows named by a path (model files, runs) the last cell: the command that made the figures."""
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    first = _SEEDS.sub("", cells[0].replace(" [quick recipe]", "").replace(f" {MARK}", "")).strip()
    return cells[-1] if first.startswith("`") else first


def _rows(lines: list[str]) -> list[str]:
    table = [ln for ln in lines if ln.startswith("| ")]
    return table[1:]  # past the header (the separator starts with "|---")


def _note_label(line: str) -> str | None:
    m = _NOTE.match(line)
    return m.group(1).replace(f" {MARK}", "") if m else None


def _merge_section(lines: list[str], old_lines: list[str]) -> tuple[list[str], bool]:
    """One section of the new document with the old one's rows it lacks or only names as not run."""
    lines, notes, replaced, carried = list(lines), [], set(), False
    present = {_row_key(ln): ln for ln in _rows(lines)}
    for old in (ln for ln in _rows(old_lines) if "not run yet" not in ln):
        key = _row_key(old)
        if key in present and "not run yet" not in present[key]:
            continue
        if key in present:
            lines[lines.index(present[key])] = _mark(old)
            replaced.add(key)
        else:
            last_row = max(i for i, ln in enumerate(lines) if ln.startswith("|"))
            lines.insert(last_row + 1, _mark(old))
        notes += [_mark(ln) for ln in old_lines if _note_label(ln) == key]
        carried = True
    lines = [ln for ln in lines if not (_note_label(ln) in replaced and "not run yet" in ln)]
    if notes:
        at_notes = [i for i, ln in enumerate(lines) if _note_label(ln) is not None]
        at = (at_notes[-1] + 1) if at_notes else max(i for i, ln in enumerate(lines) if ln.startswith("|")) + 1
        if not at_notes and at < len(lines) and not lines[at].strip():
            at += 1  # after the blank line that ends the table
        lines[at:at] = notes if at_notes or not lines[at - 1].startswith("|") else ["", *notes]
    if lines and lines[-1].strip():
        lines.append("")
    return lines, carried


def carry_over(new: str, previous: str) -> str:
    """``new`` with the rows of ``previous`` it lacks or has as "not run yet", marked with MARK."""
    old_sections, sections = _sections(previous), _sections(new)
    carried = False
    for title, old_lines in old_sections.items():
        if not title:
            continue
        if title in sections:
            sections[title], more = _merge_section(sections[title], old_lines)
            carried = carried or more
            continue
        old_rows = set(_rows(old_lines))
        if any("not run yet" not in ln for ln in old_rows):  # a section the new document lacks whole
            sections[title] = [_mark(ln) if ln in old_rows or _note_label(ln) else ln for ln in old_lines]
            carried = True
    out = []
    for title, lines in sections.items():
        if title:
            out.append(f"### {title}")
        out.extend(lines)
        if not title and carried and FOOTNOTE not in lines:
            out += [FOOTNOTE, ""] if out and not out[-1].strip() else ["", FOOTNOTE, ""]
    return "\n".join(out) + ("\n" if new.endswith("\n") else "")


def _mark(line: str) -> str:
    if MARK in line:
        return line
    if line.startswith("| "):
        cells = line.split("|")
        cells[1] = f"{cells[1].rstrip()} {MARK} "
        return "|".join(cells)
    m = _NOTE.match(line)
    return f"- {m.group(1)} {MARK}{line[len(m.group(1)) + 2:]}" if m else line
