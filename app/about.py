"""Help menu dialogs: About (versions, provider, model), Model card, Keyboard shortcuts.

The model card is the loaded model's own: ``<model>.md`` or ``MODEL_CARD.md`` beside the
ONNX file when there is one (the shipped model has it), else a card written from the
description the file carries (tasks, backbone, training, metrics), so every loaded model
has one.
"""
from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from engine.modelspec import ModelSpec

# (keys, what they do): the Help ▸ Keyboard shortcuts table and the README's
SHORTCUTS = (
    ("Space", "Play / pause"),
    ("← / →", "Previous / next frame (image in a folder); pauses"),
    ("Home", "Back to the start"),
    ("[ / ]", "Slower / faster"),
    ("F", "Full screen (Esc leaves it)"),
    ("Ctrl+O", "Open a video or image"),
    ("Ctrl+Shift+O", "Open a folder of images"),
    ("Ctrl+M", "Open a model"),
    ("S", "Snapshot: the frame as PNG and its faces as JSON"),
    ("Ctrl+E", "Export results of the open file (as `faceattr annotate`)"),
    ("R", "Record the annotated video on / off"),
    ("Shift+S", "Stop"),
    ("Ctrl+Q", "Quit"),
)


def card_markdown(spec: ModelSpec, model_path: Path) -> str:
    """The model's card as Markdown."""
    for candidate in (model_path.with_suffix(".md"), model_path.parent / "MODEL_CARD.md"):
        if candidate.is_file():
            try:
                return candidate.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                break
    lines = [f"# {spec.name}", "", f"File: `{model_path}`", "", f"Backbone: {spec.backbone}", "", "## Tasks", ""]
    for t in spec.tasks:
        what = ", ".join(t.labels) if t.labels else (t.unit or "")
        lines.append(f"- **{t.name}** ({t.kind}){': ' + what if what else ''}")
    for title, section in (("Training", spec.training), ("Metrics", spec.metrics)):
        if section:
            lines += ["", f"## {title}", "", "```", json.dumps(section, indent=2, ensure_ascii=False), "```"]
    return "\n".join(lines) + "\n"


def about_markdown(versions: dict[str, str], provider: str | None, spec: ModelSpec | None,
                   model_path: Path | None) -> str:
    lines = ["# FaceAttr", "", "Real-time face attributes from a camera, a video, an image or a folder.", ""]
    if spec is not None:
        lines += [f"- Model: **{spec.name}** (`{model_path}`)", f"- Running on: {provider}"]
    else:
        lines.append("- No model is loaded.")
    lines += ["", "## Versions", ""] + [f"- {name}: {version}" for name, version in versions.items()]
    return "\n".join(lines) + "\n"


def shortcuts_markdown() -> str:
    return "# Keyboard shortcuts\n\n| Keys | Does |\n|---|---|\n" + "".join(
        f"| {keys} | {what} |\n" for keys, what in SHORTCUTS)


def markdown_dialog(parent: QWidget, title: str, markdown: str) -> QDialog:
    """A non-modal dialog showing ``markdown`` rendered; links open in the browser."""
    dialog = QDialog(parent)
    dialog.setWindowTitle(title)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    browser = QTextBrowser(dialog)
    browser.setOpenExternalLinks(True)
    browser.setMarkdown(markdown)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, dialog)
    buttons.rejected.connect(dialog.close)
    layout = QVBoxLayout(dialog)
    layout.addWidget(browser)
    layout.addWidget(buttons)
    dialog.resize(640, 560)
    dialog.show()
    return dialog
