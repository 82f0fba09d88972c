"""Training configuration: explicit dataclasses read from TOML (tomllib; nothing is executed).

A config file has the sections ``[data] [model] [optim] [weighting] [freeze] [speed]
[augment] [loss]`` and
the top-level keys ``name``, ``seed``, ``out_dir``; every key is optional (the defaults below
are the thesis setup, seeds/003 §3.6) and any key not listed here is an error that names
it. ``load_config("utkface_thesis")`` reads ``training/configs/utkface_thesis.toml``; a path
works too. Field meanings are in training/README.md.

An overlay (``training/configs/overlays/NAME.toml``, ``fit --overlay NAME``) is a partial config
put over a preset: the cheaper recipe the ablation tables use on a 2-core CPU is one
(``quick``), so the tables' presets stay the thesis's own and the cheaper rows say so.
"""
from __future__ import annotations

import dataclasses
import importlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

PRESETS_DIR = Path(__file__).resolve().parent / "configs"
OVERLAYS_DIR = PRESETS_DIR / "overlays"  # partial configs put over a preset (fit --overlay)


class ConfigError(ValueError):
    """The config file is missing, not TOML, or has an unknown key or a wrong value."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "utkface"  # utkface | celeba | mtfl | utkface+mtfl (partial labels: each sample trains the tasks it has)
    protocol: str = "coral"  # utkface: coral | full
    image_dir: str = ""  # the dataset's image folder (command line: --data)
    chips_dir: str = ""  # the chip cache of that folder (command line: --chips)
    mtfl_dir: str = ""  # utkface+mtfl: the MTFL folder (command line: --mtfl); mtfl alone uses image_dir
    mtfl_chips: str = ""  # utkface+mtfl: its chip cache, from training.mtfl_chips (command line: --mtfl-chips)
    splits_dir: str = ""  # utkface: folder of the protocol's split CSVs; "" = the shipped training/splits/
    attributes: tuple[str, ...] = ("Male", "Young")  # celeba: the attributes that become tasks
    flip: bool = True  # random horizontal flips of training chips
    refit: bool = False  # train on the training and validation splits together: the final refit of a recipe chosen
    # on validation (the validation figures are then of seen data, and best.pt is the last epoch)
    balance: tuple[str, ...] = ()  # tasks whose rare groups (classes; age bands) are drawn more often (training/balance.py)
    balance_power: float = 0.5  # a sample's draw weight = (its group's share) ** -power; 1 = every group equally often


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "dlib-resnet29"
    pretrained: bool = True
    shared_dims: tuple[int, ...] = (256,)  # one Linear-LeakyReLU-BatchNorm block per entry; () = none
    head_dim: int = 128  # the per-task penultimate layer; 0 = output layer straight on the shared features
    dropout: float = 0.3
    tasks: tuple[str, ...] = ()  # which of the dataset's tasks to learn; () = all
    age_kind: str = "regression"  # utkface age: regression (0..1 of its range) | expectation (one bin per year)
    init_from: str = ""  # a training checkpoint (.pt) whose weights start the run where names and shapes match
    init_seed: int = -1  # seed of the fresh layers' random initialisation; -1 = the run's seed. Runs that share
    # it start from one network and differ only in data order, augmentation and dropout (soup ingredients)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-5
    weight_decay: float = 1e-5
    batch_size: int = 64
    epochs: int = 100
    plateau_factor: float = 0.1  # lr x factor when the total validation loss stops decreasing
    plateau_patience: int = 2
    num_workers: int = 0  # unused since the in-memory batcher (kept so older configs load)
    schedule: str = "plateau"  # plateau (thesis: lr x factor on a plateau) | cosine (per step, after warm-up)
    warmup_epochs: float = 0.0  # linear warm-up from ~0 to lr over this many epochs (cosine)
    min_lr_ratio: float = 0.0  # cosine: the last step's lr as a share of lr
    backbone_lr_mult: float = 1.0  # the backbone's lr = lr x this (shared layers and heads: lr)
    precise_bn_batches: int = 0  # >0: BatchNorm statistics recomputed over this many clean training batches before each validation
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off. On: the EMA
    #                   weights are validated and saved as model_state (what export and evaluate use)


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
    bf16: str = "off"  # off | auto (bf16 autocast where the hardware has bf16: CUDA, or a CPU with AVX-512 BF16 / AMX; else fp32 with a note) | always
    threads: int = 0  # torch intra-op threads; 0 = torch's default (one per core). 1 can be faster on a CPU shared with other jobs
    channels_last: bool = False  # NHWC memory layout for the convolutions (faster with bf16 on CPU)


@dataclass(frozen=True)
class AugmentConfig:
    """Batched chip augmentation (training/augment.py), applied in this order; 0 = off."""
    scale: float = 0.0  # random zoom factor in [1 - scale, 1 + scale]
    rotate: float = 0.0  # random rotation in [-rotate, rotate] degrees
    shift: float = 0.0  # random shift in [-shift, shift] of the chip side, per axis
    brightness: float = 0.0  # add U(-b, b) x 255
    contrast: float = 0.0  # scale around the chip mean by U(1 - c, 1 + c)
    saturation: float = 0.0  # scale the distance from gray by U(1 - s, 1 + s)
    blur: float = 0.0  # share of chips blurred (Gaussian, sigma U(0.3, blur_sigma))
    blur_sigma: float = 1.5
    downscale: float = 0.0  # share of chips down- and up-scaled (to U(downscale_min, 1) of the side): a cheap JPEG/low-res stand-in
    downscale_min: float = 0.5
    low_light: float = 0.0  # share of chips darkened (gamma U(1.5, 2.5)) with sensor noise
    grey: float = 0.0  # share of chips turned greyscale
    occlude: float = 0.0  # share of chips with a grey rectangle of 15-35 % of each side over part of the face


@dataclass(frozen=True)
class LossConfig:
    age: str = "auto"  # auto (mse for age_kind regression, soft_bins for expectation) | mse | l1 | soft_bins | dldl
    age_sigma: float = 2.0  # dldl: sigma (years) of the Gaussian target distribution
    age_l1: float = 0.0  # expectation: + this x |E[age] - age| / (range width) (DLDL-v2's expectation term)
    label_smoothing: float = 0.0  # binary and multiclass targets


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
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict[str, Any]:
        """The TOML-shaped dict (stored in checkpoints); from_dict(to_dict()) == self."""
        d = dataclasses.asdict(self)
        d["weighting"]["lambda"] = d["weighting"].pop("lam")
        return d


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "weighting": WeightingConfig,
             "freeze": FreezeConfig, "speed": SpeedConfig, "augment": AugmentConfig, "loss": LossConfig}
_ALIASES = {("weighting", "lambda"): "lam"}
_CHOICES = {("data", "dataset"): ("utkface", "celeba", "mtfl", "utkface+mtfl"), ("data", "protocol"): ("coral", "full"),
            ("model", "age_kind"): ("regression", "expectation"),
            ("speed", "device"): ("auto", "cpu", "cuda"), ("speed", "bf16"): ("off", "auto", "always"),
            # open sets: the registries' names, looked up when a config is read
            ("optim", "schedule"): lambda: importlib.import_module("training.schedule").available_schedules(),
            ("loss", "age"): lambda: importlib.import_module("training.losses").available_age_losses(),
            ("weighting", "kind"): lambda: importlib.import_module("training.weighting").available_weightings()}


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
        choices = choices() if callable(choices) else choices
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


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e


def resolve_overlay_path(name_or_path: str | Path) -> Path:
    """An overlay name (``quick``: training/configs/overlays/quick.toml) or a path to a .toml file."""
    p = Path(name_or_path)
    return p if p.suffix == ".toml" or p.exists() else OVERLAYS_DIR / f"{name_or_path}.toml"


def overlay(raw: dict, over: Mapping[str, Any], source: str) -> dict:
    """``raw`` with ``over``'s keys put over it, section by section (a key an overlay sets wins;
    every other key of the preset stays). The name and seed of the preset are kept."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for key, value in over.items():
        if key in ("name", "seed"):
            raise ConfigError(f"{source}: an overlay cannot set '{key}' (it belongs to the preset)")
        if isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


def load_config(name_or_path: str | Path, overlays: Sequence[str | Path] = ()) -> Config:
    """A preset (or .toml file), with each overlay's keys put over it in order (see ``overlay``)."""
    path = resolve_config_path(name_or_path)
    if not path.is_file():
        presets = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.toml")))
        raise ConfigError(f"{name_or_path}: no such config file or preset (presets: {presets})")
    raw = _read_toml(path)
    for name in overlays:
        over_path = resolve_overlay_path(name)
        if not over_path.is_file():
            known = ", ".join(list_overlays()) or "none"
            raise ConfigError(f"{name}: no such overlay file or name (overlays: {known})")
        raw = overlay(raw, _read_toml(over_path), over_path.name)
    source = path.name + "".join(f" + {resolve_overlay_path(o).name}" for o in overlays)
    cfg = config_from_dict(raw, source=source)
    return cfg if "name" in raw else dataclasses.replace(cfg, name=path.stem)


def list_overlays() -> list[str]:
    return sorted(p.stem for p in OVERLAYS_DIR.glob("*.toml"))


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))
