"""FaceAttr's desktop app (PySide6 GUI) and command line; see ``python -m app --help``."""

__version__ = "0.1.0"  # the version in pyproject.toml; used when faceattr is not pip-installed
