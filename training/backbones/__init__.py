"""Backbones by name: ``create_backbone("dlib-resnet29")``; see registry.py."""
from training.backbones.registry import Backbone, available_backbones, create_backbone, register_backbone

# Importing the modules registers their backbones.
from training.backbones import dlib_resnet, small  # noqa: E402,F401

__all__ = ["Backbone", "available_backbones", "create_backbone", "register_backbone"]
