"""Write the UTKFace protocol files shipped in ``training/splits/``, or check them.

    python tools/make_splits.py --data ../shared/data            # (re)write the files
    python tools/make_splits.py --data ../shared/data --check    # recompute, compare, exit 1 on a difference

From ``DATA/coral/utk_{train,test}.csv`` (CORAL, copied byte for byte) and the images in
``DATA/utkface/`` it writes:
- ``coral_train80.csv`` / ``coral_valid20.csv``: the CORAL train rows split 80/20 by seed 0;
- ``coral_test_dedup.csv``: the CORAL test rows minus the files byte-identical (SHA-256) to
  a CORAL train file;
- ``full_test.csv``: the CORAL test files plus 25 % (seed 0) of the other faces under 21 or
  over 60 (the CORAL test holds ages 21-60 only);
- ``full_train80.csv`` / ``full_valid20.csv``: every other image of the folder (all ages),
  except the full test files and files byte-identical to one, split 80/20 by seed 0;
- ``SOURCES.md`` with the source of each file and the counts.
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from training.samples import (  # noqa: E402
    SPLIT_SEED, SPLITS_DIR, DataError, file_hashes, list_images, read_split_csv, split_train_valid, write_split_csv)
from training.utkface import CORAL_AGES, BadNameError, parse_utkface_name  # noqa: E402

CORAL_COLUMNS = ("", "file", "age")
FULL_EXTRA_TEST_SHARE = 0.25  # of the faces under 21 or over 60, held out for the full protocol's test


def _age(name: str) -> int:
    """The age in a UTKFace name; a name without labels counts as inside 21-60, so it stays in the
    train/valid lists, where the loader counts and skips it."""
    try:
        return parse_utkface_name(name)[0]
    except BadNameError:
        return CORAL_AGES[0]

SOURCES = """# UTKFace protocol files

Written by `python tools/make_splits.py --data ../shared/data` (check: add `--check`);
read by `training.utkface.load_utkface`. They hold file names and CORAL age codes only, no images.

| file | rows | what |
|---|---|---|
| `utk_train.csv` | {n_train} | CORAL train split, copied unchanged |
| `utk_test.csv` | {n_test} | CORAL test split, copied unchanged (the `test` split of protocol `coral`) |
| `coral_train80.csv` | {n_train80} | protocol `coral` train: rows of `utk_train.csv`, shuffled by `numpy.random.default_rng({seed})`, first floor(0.8 n) |
| `coral_valid20.csv` | {n_valid20} | protocol `coral` valid: the remaining rows of `utk_train.csv` |
| `coral_test_dedup.csv` | {n_dedup} | `utk_test.csv` minus {n_removed} files byte-identical (SHA-256) to a `utk_train.csv` file ({n_groups} duplicate groups cross the train/test boundary) |
| `full_test.csv` | {n_full_test} | protocol `full` test: the CORAL test files (ages 21-60) and {n_extra} faces under 21 or over 60, {extra_share} % (seed {seed}) of the {n_outside} such images that are neither CORAL test files nor byte-identical to one |
| `full_train80.csv` | {n_full_train} | protocol `full` train: all ages, 80 % (seed {seed}) of the {n_rest} remaining images (not in `full_test.csv`, nor byte-identical to a file there: {n_extra_dups} such copies left out) |
| `full_valid20.csv` | {n_full_valid} | protocol `full` valid: the other 20 % |

CSV columns: CORAL's own (unnamed index, `file`, `age` = real age - 21) for the CORAL-derived
files, `file` alone for the `full` lists (labels come from the names). Known name defects
(`../shared/data/README.md`) are kept in the lists and repaired or skipped, counted, by the loader.
Under `full`, {n_full_excluded} images outside the CORAL test split are byte-identical to a CORAL test
file and are left out of train/valid, so its test split has no duplicate in training
(`test_dedup` = `test` there). The CORAL test split itself holds {n_test_internal} groups of
byte-identical files; they stay (none is in training).

## Sources
- `utk_train.csv`, `utk_test.csv`: Raschka-research-group/coral-cnn, commit 8116ed8a,
  `datasets/train-test-csv/` (removed from that repository's later tree). MIT licence,
  Copyright (c) 2019 Sebastian Raschka (licence text below).
- File names and image bytes: UTKFace "aligned & cropped" (Zhang, Song, Qi, CVPR 2017; the
  copy in mattans/AgeProgression at commit d5697aba, `data/UTKFace/`), {n_images} images.
  UTKFace is for non-commercial research only; no image is shipped here.

# MTFL protocol files

Not written by this script (it checks only the UTKFace files above): listed here so every
file in this folder is accounted for.

| file | rows | what |
|---|---|---|
| `mtfl_valid10.csv` | 1000 | MTFL validation: 10 % of `training.txt` (seed 0), written by `training.mtfl.write_valid_split`; the rest of `training.txt` trains |
| `mtfl_test_blind80.csv` | 80 | a second reading of 80 `testing.txt` faces drawn at random (pandas `sample(80, random_state=42)` of the 2,960 faces the engine's MTCNN found): smile (1 = smiling) and gender, read from the engine's chips by one of this project's engineers without MTFL's labels or any model's answers. It measures how far two readings of these subjective labels agree (the default model's card); never used to train or tune |

File names only (MTFL: `nieag/deepl18_project` at commit b5a14242, `MTFL/`; research use only; no image is shipped here).

## coral-cnn licence (for `utk_train.csv`, `utk_test.csv` and the files derived from them)

MIT License

Copyright (c) 2019 Sebastian Raschka

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def make(data: Path, out: Path, seed: int = SPLIT_SEED) -> dict[str, int]:
    """Write every protocol file into ``out``; returns the counts written into SOURCES.md."""
    coral, image_dir = data / "coral", data / "utkface"
    on_disk = sorted(list_images(image_dir))
    train_rows = read_split_csv(coral / "utk_train.csv")
    test_rows = read_split_csv(coral / "utk_test.csv")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(coral / "utk_train.csv", out / "utk_train.csv")
    shutil.copyfile(coral / "utk_test.csv", out / "utk_test.csv")

    train80, valid20 = split_train_valid(train_rows, seed)
    write_split_csv(out / "coral_train80.csv", train80, CORAL_COLUMNS)
    write_split_csv(out / "coral_valid20.csv", valid20, CORAL_COLUMNS)

    hashes = file_hashes(image_dir, on_disk)
    missing = [r["file"] for r in train_rows + test_rows if r["file"] not in hashes]
    if missing:
        raise DataError(f"{image_dir}: {len(missing)} CORAL files are missing, e.g. {missing[0]!r}")
    train_hashes = {hashes[r["file"]] for r in train_rows}
    dedup = [r for r in test_rows if hashes[r["file"]] not in train_hashes]
    write_split_csv(out / "coral_test_dedup.csv", dedup, CORAL_COLUMNS)
    groups = defaultdict(set)
    for f, h in hashes.items():
        groups[h].add(f)
    train_files = {r["file"] for r in train_rows}
    test_files = {r["file"] for r in test_rows}
    crossing = sum(1 for g in groups.values() if g & train_files and g & test_files)
    test_internal = sum(1 for g in groups.values() if len(g & test_files) > 1)

    test_hashes = {hashes[f] for f in test_files}
    rest = [{"file": f} for f in on_disk if f not in test_files and hashes[f] not in test_hashes]
    # The CORAL test holds ages 21-60 only; the full protocol's test adds a share of the
    # younger and older faces, held out with every byte-identical copy.
    outside = [r for r in rest if not CORAL_AGES[0] <= _age(r["file"]) <= CORAL_AGES[1]]
    _, extra = split_train_valid(outside, seed, train_share=1 - FULL_EXTRA_TEST_SHARE)
    extra_hashes = {hashes[r["file"]] for r in extra}
    extra_files = {r["file"] for r in extra}
    rest_after = [r for r in rest if r["file"] not in extra_files and hashes[r["file"]] not in extra_hashes]
    full_train, full_valid = split_train_valid(rest_after, seed)
    write_split_csv(out / "full_train80.csv", full_train, ("file",))
    write_split_csv(out / "full_valid20.csv", full_valid, ("file",))
    full_test = [{"file": r["file"]} for r in test_rows] + sorted(extra, key=lambda r: r["file"])
    write_split_csv(out / "full_test.csv", full_test, ("file",))

    counts = dict(
        n_train=len(train_rows), n_test=len(test_rows), n_train80=len(train80), n_valid20=len(valid20),
        n_dedup=len(dedup), n_removed=len(test_rows) - len(dedup), n_groups=crossing,
        n_full_train=len(full_train), n_full_valid=len(full_valid), n_rest=len(rest_after),
        n_full_test=len(full_test), n_extra=len(extra), n_outside=len(outside),
        extra_share=round(100 * FULL_EXTRA_TEST_SHARE), n_extra_dups=len(rest) - len(rest_after) - len(extra),
        n_full_excluded=sum(1 for f in on_disk if f not in test_files and hashes[f] in test_hashes),
        n_test_internal=test_internal, n_images=len(on_disk), seed=seed,
    )
    (out / "SOURCES.md").write_text(SOURCES.format(**counts))
    return counts


def check(data: Path, shipped: Path, seed: int = SPLIT_SEED) -> list[str]:
    """Names of the shipped files that differ from a fresh computation (empty: all match)."""
    with tempfile.TemporaryDirectory() as tmp:
        make(data, Path(tmp), seed)
        return [p.name for p in sorted(Path(tmp).iterdir())
                if not (shipped / p.name).is_file() or not filecmp.cmp(p, shipped / p.name, shallow=False)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/make_splits.py", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data",
                   help="folder holding coral/ and utkface/ (default: ../shared/data)")
    p.add_argument("--out", type=Path, default=SPLITS_DIR, help="where to write (default: training/splits)")
    p.add_argument("--seed", type=int, default=SPLIT_SEED)
    p.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = p.parse_args(argv)
    try:
        if args.check:
            differ = check(args.data, args.out, args.seed)
            print("all protocol files match" if not differ else "differ: " + ", ".join(differ))
            return 1 if differ else 0
        counts = make(args.data, args.out, args.seed)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
