"""Which model a benchmark measures, and the timing stand-in used before the default exists.

Speed numbers need the real network's cost, not its accuracy. Until the trained default
model (``assets/models/faceattr-utkface.onnx``) exists, ``python -m benchmarks.speed``
measures a stand-in with exactly its architecture: dlib's face ResNet (weights parsed
from dlib's .dat, ``training.backbones``) + the multi-task head with UNTRAINED (seeded
random) head weights, exported through ``training.export``. Its predictions mean nothing,
its cost is the default model's; the JSON says which one was measured. Accuracy never
uses it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import OUT_DIR
from engine import assets

STANDIN_PATH = OUT_DIR / "standin-dlib-resnet29-untrained-heads.onnx"


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    kind: str  # "given", "default", "stand-in"
    note: str


def build_standin(path: Path = STANDIN_PATH) -> Path:
    """Export dlib-resnet29 + untrained multi-task heads (seed 0) to ``path`` (needs torch)."""
    import torch

    from training.backbones import create_backbone
    from training.utkface import utk_tasks
    from training.export import ExportWrapper, export_onnx, write_description
    from training.model import MultiTaskNet
    from engine.modelspec import AlignmentSpec, InputSpec, ModelSpec, Normalisation

    torch.manual_seed(0)
    backbone = create_backbone("dlib-resnet29", pretrained=True)
    net = MultiTaskNet(backbone, utk_tasks("coral")).eval()
    spec = ModelSpec(
        name="timing-stand-in-dlib-resnet29-untrained-heads", tasks=tuple(net.tasks), backbone=backbone.name,
        input=InputSpec(size=150, normalisation=Normalisation(tuple(float(v) for v in backbone.mean_rgb),
                                                              float(backbone.scale))),
        alignment=AlignmentSpec(chip_size=150),
        training={"data": "none: head weights are seeded random; for timing only (benchmarks/standin.py)"},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.onnx")
    export_onnx(ExportWrapper(net).eval(), tmp, 150)
    write_description(tmp, spec)
    tmp.replace(path)
    return path


def choose_model(given: Path | None, allow_standin: bool) -> ModelChoice:
    """The model named on the command line, else the default, else (speed only) the stand-in."""
    if given is not None:
        return ModelChoice(Path(given), "given", f"model given with --model: {given}")
    default = assets.default_model_path()
    if default.is_file():
        return ModelChoice(default, "default", f"the default model {default.relative_to(assets.bundle_root())}")
    if not allow_standin:
        raise FileNotFoundError(f"the default model {default} does not exist yet; pass --model PATH")
    if not STANDIN_PATH.is_file():
        build_standin(STANDIN_PATH)
    return ModelChoice(STANDIN_PATH, "stand-in",
                       "the default model does not exist yet: measured a timing stand-in with its "
                       "architecture (dlib-resnet29 + multi-task heads, heads untrained)")
