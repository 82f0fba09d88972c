"""Training configuration: explicit dataclasses read from TOML (tomllib; nothing is executed).

A config file has the sections ``[data] [model] [optim] [weighting] [freeze] [speed]`` and
the top-level keys ``name``, ``seed``, ``out_dir``; every key is optional (the defaults below
are the thesis setup, seeds/003 §3.6) and any key not listed here is an error that names
it. ``load_config("utkface_thesis")`` reads ``training/configs/utkface_thesis.toml``; a path
works too. Field meanings are in training/README.md.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

PRESETS_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """The config file is missing, not TOML, or has an unknown key or a wrong value."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "utkface"  # utkface | celeba
    protocol: str = "coral"  # utkface: coral | full
    image_dir: str = ""  # the dataset's image folder (command line: --data)
    chips_dir: str = ""  # the chip cache of that folder (command line: --chips)
    splits_dir: str = ""  # utkface: folder of the protocol's split CSVs; "" = the shipped training/splits/
    attributes: tuple[str, ...] = ("Male", "Young")  # celeba: the attributes that become tasks
    flip: bool = True  # random horizontal flips of training chips


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "dlib-resnet29"
    pretrained: bool = True
    shared_dims: tuple[int, ...] = (256,)  # one Linear-LeakyReLU-BatchNorm block per entry; () = none
    head_dim: int = 128  # the per-task penultimate layer; 0 = output layer straight on the shared features
    dropout: float = 0.3
    tasks: tuple[str, ...] = ()  # which of the dataset's tasks to learn; () = all
    age_kind: str = "regression"  # utkface age: regression (0..1 of its range) | expectation (one bin per year)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-5
    weight_decay: float = 1e-5
    batch_size: int = 64
    epochs: int = 100
    plateau_factor: float = 0.1  # lr x factor when the total validation loss stops decreasing
    plateau_patience: int = 2
    num_workers: int = 0  # DataLoader worker processes


@dataclass(frozen=True)
class WeightingConfig:
    kind: str = "loss_weight_layer"  # loss_weight_layer | equal | uncertainty | dynamic
    lam: float = 0.1  # TOML key `lambda`: the Loss Weight Layer's regularisation λ
    lr: float = 0.0  # learning rate of the weighting parameters; 0 = optim.lr


@dataclass(frozen=True)
class FreezeConfig:
    early_freeze: bool = True  # thesis Algorithm 1
    patience: int = 5  # P of Algorithm 1
    early_stop_patience: int = 10  # stop when the total validation loss has not improved this long; 0 = never


@dataclass(frozen=True)
class SpeedConfig:
    frozen_stages: int = 0  # leading backbone stages never trained; -1 = the whole backbone
    cache_stem: bool = False  # with frozen_stages != 0: compute their activations once (float16, on disk)
    device: str = "auto"  # auto | cpu | cuda


@dataclass(frozen=True)
class Config:
    name: str = "run"
    seed: int = 0
    out_dir: str = "runs"  # the run writes to out_dir/name unless --out is given
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)

    def to_dict(self) -> dict[str, Any]:
        """The TOML-shaped dict (stored in checkpoints); from_dict(to_dict()) == self."""
        d = dataclasses.asdict(self)
        d["weighting"]["lambda"] = d["weighting"].pop("lam")
        return d


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "weighting": WeightingConfig,
             "freeze": FreezeConfig, "speed": SpeedConfig}
_ALIASES = {("weighting", "lambda"): "lam"}
_CHOICES = {("data", "dataset"): ("utkface", "celeba"), ("data", "protocol"): ("coral", "full"),
            ("model", "age_kind"): ("regression", "expectation"),
            ("weighting", "kind"): ("loss_weight_layer", "equal", "uncertainty", "dynamic"),
            ("speed", "device"): ("auto", "cpu", "cuda")}


def _value(where: str, default: Any, value: Any) -> Any:
    """Check ``value`` against the type of the field's default; lists become tuples."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        element = type(default[0]) if default else str
        ok = isinstance(value, (list, tuple))
        ok = ok and all(isinstance(v, element) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


def _section(source: str, name: str, cls, raw: Any):
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{name}] must be a table, got {raw!r}")
    defaults = cls()
    keymap = {f.name: f.name for f in dataclasses.fields(cls)}  # TOML key -> field
    for (section, key), attr in _ALIASES.items():
        if section == name:
            del keymap[attr]
            keymap[key] = attr
    values = {}
    for key, value in raw.items():
        if key not in keymap:
            raise ConfigError(f"{source}: unknown key '{name}.{key}' (known in [{name}]: {', '.join(sorted(keymap))})")
        attr = keymap[key]
        values[attr] = _value(f"{source}: '{name}.{key}'", getattr(defaults, attr), value)
        choices = _CHOICES.get((name, attr))
        if choices and values[attr] not in choices:
            raise ConfigError(f"{source}: '{name}.{key}' is '{values[attr]}', not one of {', '.join(choices)}")
    return cls(**values)


def config_from_dict(d: Mapping[str, Any], source: str = "config") -> Config:
    """Validate a TOML-shaped dict into a Config; ConfigError names the bad key."""
    top = {"name": "run", "seed": 0, "out_dir": "runs"}
    values: dict[str, Any] = {}
    for key, value in d.items():
        if key in _SECTIONS:
            values[key] = _section(source, key, _SECTIONS[key], value)
        elif key in top:
            values[key] = _value(f"{source}: '{key}'", top[key], value)
        else:
            known = ", ".join(sorted([*top, *_SECTIONS]))
            raise ConfigError(f"{source}: unknown key '{key}' (known at the top level: {known})")
    return Config(**values)


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A preset name (``utkface_thesis``) or a path to a .toml file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p
    return PRESETS_DIR / f"{name_or_path}.toml"


def load_config(name_or_path: str | Path) -> Config:
    path = resolve_config_path(name_or_path)
    if not path.is_file():
        presets = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.toml")))
        raise ConfigError(f"{name_or_path}: no such config file or preset (presets: {presets})")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e
    cfg = config_from_dict(raw, source=path.name)
    return cfg if "name" in raw else dataclasses.replace(cfg, name=path.stem)


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))
