"""Sample models shipped inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

from trtkit.profiles import Profile, ShapeRange

__all__ = ["TINY_CNN_SHAPES", "tiny_cnn_path"]

TINY_CNN_SHAPES: Final = Profile(
    {"image": ShapeRange((1, 3, 32, 32), (4, 3, 64, 64), (16, 3, 128, 128))}
)
"""A profile for :func:`tiny_cnn_path`: batch 1-16, height and width 32-128."""


def tiny_cnn_path() -> Path:
    """Path to ``tiny_cnn.onnx``: image[batch, 3, height, width] -> probs[batch, 10] (1.7 kB, FP32)."""
    return Path(str(resources.files("trtkit") / "data" / "tiny_cnn.onnx"))
