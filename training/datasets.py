"""The datasets a run trains on, by name (``data.dataset``): one, or several joined with ``+``.

Each registered loader turns the config into a :class:`Part`: its splits (``training.samples.Splits``)
and its chip cache. Joined datasets train one network on the union of their tasks; a task
shared by name (gender in UTKFace and MTFL) must mean the same thing (same kind and labels),
and a sample trains only the tasks its dataset labels (the others are NaN, skipped by the
losses and metrics: partial labels).

    utkface        data.image_dir + data.chips_dir, protocol coral | full
    celeba         data.image_dir + data.chips_dir, data.attributes
    mtfl           data.image_dir + data.chips_dir   (alone)
    utkface+mtfl   UTKFace as above, MTFL from data.mtfl_dir + data.mtfl_chips
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.modelspec import TaskSpec
from training.chips import ChipCache
from training.config import Config
from training.celeba import load_celeba
from training.samples import DataError, Splits
from training.utkface import load_utkface


@dataclass(frozen=True)
class Part:
    name: str
    splits: Splits
    cache: ChipCache


Loader = Callable[[Config, bool], Part]  # (config, joined with others) -> Part
_LOADERS: dict[str, Loader] = {}


def register_dataset(name: str):
    def deco(fn: Loader) -> Loader:
        _LOADERS[name] = fn
        return fn
    return deco


def available_datasets() -> list[str]:
    return list(_LOADERS)


def _need(value: str, message: str) -> str:
    if not value:
        raise DataError(message)
    return value


def _splits_dir(cfg: Config) -> Path | None:
    return Path(cfg.data.splits_dir) if cfg.data.splits_dir else None


@register_dataset("utkface")
def _utkface(cfg: Config, joined: bool) -> Part:
    image_dir = _need(cfg.data.image_dir, "no dataset folder given: pass --data DIR (or set data.image_dir)")
    chips = _need(cfg.data.chips_dir, "no chip cache given: pass --chips DIR (build one with `python -m training.chips IMAGES --out DIR`)")
    return Part("utkface", load_utkface(cfg.data.protocol, Path(image_dir), _splits_dir(cfg)), ChipCache.open(chips))


@register_dataset("celeba")
def _celeba(cfg: Config, joined: bool) -> Part:
    image_dir = _need(cfg.data.image_dir, "no dataset folder given: pass --data DIR (or set data.image_dir)")
    chips = _need(cfg.data.chips_dir, "no chip cache given: pass --chips DIR")
    return Part("celeba", load_celeba(Path(image_dir), cfg.data.attributes), ChipCache.open(chips))


@register_dataset("mtfl")
def _mtfl(cfg: Config, joined: bool) -> Part:
    from training.mtfl import load_mtfl

    root = cfg.data.mtfl_dir if joined else cfg.data.image_dir
    chips = cfg.data.mtfl_chips if joined else cfg.data.chips_dir
    _need(root, "no MTFL folder given: pass --mtfl DIR (the MTFL/ folder of nieag/deepl18_project at b5a14242)")
    _need(chips, "no MTFL chip cache given: pass --mtfl-chips DIR (build it with `python -m training.mtfl_chips MTFL --out DIR`)")
    return Part("mtfl", load_mtfl(Path(root), _splits_dir(cfg)), ChipCache.open(chips))


def load_parts(cfg: Config) -> list[Part]:
    names = cfg.data.dataset.split("+")
    unknown = [n for n in names if n not in _LOADERS]
    if unknown:
        raise DataError(f"data.dataset '{cfg.data.dataset}': unknown {unknown} (choose from: {', '.join(_LOADERS)})")
    return [_LOADERS[n](cfg, len(names) > 1) for n in names]


def label_mirrors(dataset: str) -> dict[str, tuple[int, ...]]:
    """Task -> its labels under a horizontal flip, for the datasets named by ``data.dataset``
    (head pose: left <-> right): training's flip, export's and calibration's flip TTA."""
    from training.mtfl import MIRRORED_LABELS

    known = {"mtfl": MIRRORED_LABELS}
    out: dict[str, tuple[int, ...]] = {}
    for name in dataset.split("+"):
        out.update(known.get(name, {}))
    return out


def union_tasks(parts: list[Part]) -> tuple[TaskSpec, ...]:
    """Every part's tasks, in order of first appearance; a shared name must be the same task."""
    by_name: dict[str, TaskSpec] = {}
    for part in parts:
        for t in part.splits.tasks:
            seen = by_name.setdefault(t.name, t)
            if (seen.kind, seen.labels) != (t.kind, t.labels):
                raise DataError(f"task '{t.name}' means different things in the joined datasets "
                                f"({seen.kind} {seen.labels} vs {part.name}: {t.kind} {t.labels})")
    return tuple(by_name.values())
