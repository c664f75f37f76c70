"""Optional dependencies: import one on first use, or say which package to install."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from trtkit.errors import DependencyError

__all__ = ["available", "require"]


def require(module: str, *, purpose: str, install: str) -> ModuleType:
    """Import ``module``; if it is missing or broken, raise :class:`DependencyError` naming ``install``.

    ``purpose`` completes "... needs <module>", e.g. ``purpose="comparing against ONNX Runtime"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(f"{purpose} needs {module.split('.')[0]}: {install} ({exc})") from exc


def available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
