"""The builder: an ONNX model, profiles and a :class:`BuildConfig` become an engine file (plan + manifest).

It never imports :mod:`trtkit.runtime`; the two share only the engine file (:mod:`trtkit.manifest`).
"""

from trtkit.builder.build import build_engine
from trtkit.builder.config import BuildConfig, parse_size
from trtkit.manifest import BuiltEngine

__all__ = ["BuildConfig", "BuiltEngine", "build_engine", "parse_size"]
