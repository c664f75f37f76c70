"""trtkit: a typed toolkit for TensorRT's whole lifecycle, from ONNX to engine to outputs.

``import trtkit`` is light: TensorRT, CUDA and ONNX load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import log as _log  # noqa: F401  (installs the NullHandler)
from ._version import __version__
from .errors import (
    BuildCancelledError,
    BuildError,
    ClosedError,
    CudaError,
    DependencyError,
    EngineFileError,
    EngineIncompatibleError,
    ExecutionError,
    InputError,
    ModelError,
    OnnxParseError,
    ShapeError,
    TritonExportError,
    TrtkitError,
    UnsupportedFeatureError,
)
from .profiles import Profile, ShapeRange

if TYPE_CHECKING:
    from .builder import BuildConfig, BuiltEngine, build_engine
    from .cache import EngineCache
    from .engine import Engine, load_engine

__all__ = [
    "BuildCancelledError",
    "BuildConfig",
    "BuildError",
    "BuiltEngine",
    "ClosedError",
    "CudaError",
    "DependencyError",
    "Engine",
    "EngineCache",
    "EngineFileError",
    "EngineIncompatibleError",
    "ExecutionError",
    "InputError",
    "ModelError",
    "OnnxParseError",
    "Profile",
    "ShapeError",
    "ShapeRange",
    "TritonExportError",
    "TrtkitError",
    "UnsupportedFeatureError",
    "__version__",
    "build_engine",
    "load_engine",
]

_LAZY = {
    "BuildConfig": "builder",
    "BuiltEngine": "builder",
    "build_engine": "builder",
    "EngineCache": "cache",
    "Engine": "engine",
    "load_engine": "engine",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trtkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
