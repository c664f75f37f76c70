"""trtkit: a typed toolkit for TensorRT's whole lifecycle, from ONNX to engine to outputs.

``import trtkit`` is light: TensorRT, CUDA and ONNX load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trtkit import log as _log  # noqa: F401  (installs the NullHandler)
from trtkit._version import __version__
from trtkit.errors import (
    BuildCancelledError,
    BuildError,
    ClosedError,
    ConfigError,
    CudaError,
    DependencyError,
    EngineFileError,
    EngineIncompatibleError,
    ExecutionError,
    InputError,
    LockTimeoutError,
    ModelError,
    OnnxParseError,
    ShapeError,
    TritonExportError,
    TritonServerError,
    TrtkitError,
    UnsupportedFeatureError,
)
from trtkit.profiles import Profile, ShapeRange

if TYPE_CHECKING:
    from trtkit.builder import BuildConfig, build_engine
    from trtkit.cache import EngineCache
    from trtkit.engine import Engine, load_engine
    from trtkit.manifest import BuiltEngine
    from trtkit.pool import EnginePool
    from trtkit.tools.serve import serve

__all__ = [
    "BuildCancelledError",
    "BuildConfig",
    "BuildError",
    "BuiltEngine",
    "ClosedError",
    "ConfigError",
    "CudaError",
    "DependencyError",
    "Engine",
    "EngineCache",
    "EngineFileError",
    "EngineIncompatibleError",
    "EnginePool",
    "ExecutionError",
    "InputError",
    "LockTimeoutError",
    "ModelError",
    "OnnxParseError",
    "Profile",
    "ShapeError",
    "ShapeRange",
    "TritonExportError",
    "TritonServerError",
    "TrtkitError",
    "UnsupportedFeatureError",
    "__version__",
    "build_engine",
    "load_engine",
    "serve",
]

_LAZY = {
    "BuildConfig": "builder",
    "BuiltEngine": "manifest",
    "build_engine": "builder",
    "EngineCache": "cache",
    "Engine": "engine",
    "EnginePool": "pool",
    "load_engine": "engine",
    "serve": "tools.serve",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trtkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
