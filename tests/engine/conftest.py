"""Fixtures shared by the engine tests."""
import pytest

from engine.pipeline import Pipeline, PipelineConfig


@pytest.fixture(scope="module")
def pipeline(tiny_model_path) -> Pipeline:
    """A real pipeline (dlib HOG, dlib alignment, ONNX Runtime) on the tiny fixture model."""
    return Pipeline.create(PipelineConfig(tiny_model_path, backend="cpu"))
