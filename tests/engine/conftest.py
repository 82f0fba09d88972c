"""Fixtures shared by the engine tests."""
from pathlib import Path

import pytest

from engine import assets
from engine.pipeline import Pipeline, PipelineConfig
from tests.engine.scenes import sample_clip


@pytest.fixture(scope="module")
def pipeline(tiny_model_path) -> Pipeline:
    """A real pipeline (the default detector, dlib alignment, ONNX Runtime) on the tiny fixture model."""
    return Pipeline.create(PipelineConfig(tiny_model_path, backend="cpu"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A short clip of the sample video (24 frames, 3 to 4 faces), after a few empty grey frames."""
    sample = assets.sample_video_path()
    if not sample.is_file():
        pytest.skip(f"{sample} is not there")
    return sample_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", sample)
