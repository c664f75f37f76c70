"""The one place that imports TensorRT: backend selection, features, log bridging and Protocol types.

:func:`get_backend` picks the backend: a :class:`Backend` given as it is, else the ``name`` argument, else the
``TRTKIT_BACKEND`` environment variable, else full TensorRT when it is importable and TensorRT-RTX otherwise.
Submodules: :mod:`~trtkit.backend.core` (:class:`Backend`, :class:`Features`), :mod:`~trtkit.backend.protocols`
(the TensorRT surface trtkit calls), :mod:`~trtkit.backend.logs` (TensorRT's log, captured for errors).
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Final

from trtkit.backend.core import (
    BACKEND_NAMES,
    DISPLAY_NAMES,
    MIN_TENSORRT,
    MODULE_NAMES,
    Backend,
    BackendName,
    Features,
    install_hint,
    version_tuple,
)
from trtkit.backend.logs import LogCapture
from trtkit.backend.protocols import (
    Builder,
    BuilderConfig,
    CudaEngine,
    Dims,
    EngineInspector,
    EnumValue,
    ExecutionContext,
    HostMemory,
    Network,
    OnnxParser,
    OptimizationProfile,
    ParserErrorRecord,
    PluginRegistry,
    RtxCudaEngine,
    RtxExecutionContext,
    RtxRuntime,
    Runtime,
    RuntimeConfig,
    Tensor,
    TimingCache,
    TrtLogger,
    TrtModule,
)
from trtkit.errors import ConfigError, DependencyError
from trtkit.log import get_logger

__all__ = [
    "BACKEND_NAMES",
    "DISPLAY_NAMES",
    "ENV_VAR",
    "MIN_TENSORRT",
    "MODULE_NAMES",
    "Backend",
    "BackendName",
    "Builder",
    "BuilderConfig",
    "CudaEngine",
    "Dims",
    "EngineInspector",
    "EnumValue",
    "ExecutionContext",
    "Features",
    "HostMemory",
    "LogCapture",
    "Network",
    "OnnxParser",
    "OptimizationProfile",
    "ParserErrorRecord",
    "PluginRegistry",
    "RtxCudaEngine",
    "RtxExecutionContext",
    "RtxRuntime",
    "Runtime",
    "RuntimeConfig",
    "Tensor",
    "TimingCache",
    "TrtLogger",
    "TrtModule",
    "available_backends",
    "get_backend",
    "install_hint",
    "version_tuple",
]

ENV_VAR: Final = "TRTKIT_BACKEND"

_MODULES: Final = MODULE_NAMES
_ALIASES: Final[dict[str, BackendName]] = {
    "tensorrt": "tensorrt",
    "trt": "tensorrt",
    "tensorrt_rtx": "tensorrt_rtx",
    "tensorrt-rtx": "tensorrt_rtx",
    "rtx": "tensorrt_rtx",
}

_log = get_logger("backend")

_backends: dict[BackendName, Backend] = {}
_backends_lock = threading.Lock()


def _normalize(name: str) -> BackendName:
    key = name.strip().lower()
    if key not in _ALIASES:
        raise ConfigError(
            f"unknown backend {name!r}; expected one of 'tensorrt', 'tensorrt_rtx' or 'auto' "
            f"(argument backend= or environment variable {ENV_VAR})"
        )
    return _ALIASES[key]


def _import(name: BackendName) -> Backend:
    with _backends_lock:
        if name in _backends:
            return _backends[name]
        try:
            module = importlib.import_module(_MODULES[name])
        except (ImportError, OSError) as exc:
            raise DependencyError(
                f"{DISPLAY_NAMES[name]} is not installed or failed to load ({type(exc).__name__}: {exc}). "
                f"Install it with: {install_hint(name)}"
            ) from exc
        backend = Backend(name, module)
        _log.debug("loaded %s", backend.label)
        _backends[name] = backend
        return backend


def available_backends() -> list[BackendName]:
    """Backends whose module can be imported here, in preference order."""
    found: list[BackendName] = []
    for name in BACKEND_NAMES:
        try:
            _import(name)
        except DependencyError:
            continue
        found.append(name)
    return found


def get_backend(name: str | Backend | None = None) -> Backend:
    """Return the backend to use: the one place that turns a ``backend=`` argument into a :class:`Backend`.

    Args:
        name: a :class:`Backend` (returned as it is), ``"tensorrt"``, ``"tensorrt_rtx"`` (aliases ``"trt"``,
            ``"rtx"``) or ``"auto"``. ``None`` reads the ``TRTKIT_BACKEND`` environment variable, then falls
            back to ``"auto"``: full TensorRT when it is importable, otherwise TensorRT-RTX.

    Raises:
        DependencyError: the requested backend, or with ``"auto"`` any backend, cannot be imported.
        ConfigError: ``name`` is not a backend name.
    """
    if isinstance(name, Backend):
        return name
    if name is None:
        name = os.environ.get(ENV_VAR) or "auto"
    if not isinstance(name, str):
        raise ConfigError(
            f"backend must be 'tensorrt', 'tensorrt_rtx', 'auto', a trtkit.backend.Backend or None, got "
            f"{type(name).__name__} {name!r}"
        )
    if name.strip().lower() != "auto":
        return _import(_normalize(name))
    errors: list[str] = []
    for candidate in BACKEND_NAMES:
        try:
            return _import(candidate)
        except DependencyError as exc:
            errors.append(exc.message)
    raise DependencyError(
        "no TensorRT backend is installed. Install one of:\n"
        f"  {install_hint('tensorrt')}\n  {install_hint('tensorrt_rtx')}\n"
        "Details:\n  " + "\n  ".join(errors)
    )
