"""A disk cache for the slow, model-independent parts of the accuracy run.

Finding the faces of 3,287 images and running the peers on them takes minutes on this
CPU and does not depend on FaceAttr's model, so a rerun with a new model reuses them.
An entry's key hashes everything its result depends on: the image names and sizes, the
source of the code that made it (detector, alignment, runner scripts) and its settings.
Change any of them and the key changes; ``--no-cache`` ignores the cache altogether. The
cache lives in ``<out>/cache`` (``benchmarks/out/cache`` by default, git-ignored).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from benchmarks.common import REPO_ROOT


def key_of(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path) and p.is_file():
            h.update(p.read_bytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def files_signature(image_dir: Path, files: list[str]) -> list:
    """Names and byte sizes: cheap, and enough to notice another copy of the data set."""
    return [(f, (image_dir / f).stat().st_size if (image_dir / f).is_file() else -1) for f in files]


def source_files(*relative: str) -> list[Path]:
    return [REPO_ROOT / r for r in relative]


def load_json(folder: Path, name: str, key: str) -> dict | None:
    path = folder / f"{name}-{key}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def save_json(folder: Path, name: str, key: str, value: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{name}-{key}.json.partial"
    tmp.write_text(json.dumps(value))
    tmp.replace(folder / f"{name}-{key}.json")


def load_arrays(folder: Path, name: str, key: str) -> dict[str, np.ndarray] | None:
    path = folder / f"{name}-{key}.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_arrays(folder: Path, name: str, key: str, arrays: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{name}-{key}.partial.npz"
    np.savez(tmp, **arrays)
    tmp.replace(folder / f"{name}-{key}.npz")
