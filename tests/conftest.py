"""Shared fixtures. Builder tests need tensorrt_rtx (installed by the dev extra) and never skip where it is."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import trt_double

from trtkit import backend as backend_registry
from trtkit.backend import Backend, get_backend

HAVE_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
NO_RTX_REASON = "tensorrt_rtx is not installed (pip install -e '.[dev]' installs it)"


@pytest.fixture(scope="session")
def rtx() -> Backend:
    """The TensorRT-RTX backend, which builds engines on the CPU."""
    if not HAVE_RTX:
        pytest.skip(NO_RTX_REASON)
    return get_backend("tensorrt_rtx")


@pytest.fixture
def trt_double_backend(monkeypatch: pytest.MonkeyPatch) -> Backend:
    """The TensorRT runtime test double as the ``tensorrt`` backend, for code that picks a backend by name.

    ``get_backend("tensorrt")`` (and the default, through ``TRTKIT_BACKEND``) returns it until the test ends:
    the CLI's ``--backend tensorrt`` or no ``--backend`` at all runs engines on the double.
    """
    be = Backend.from_module("tensorrt", trt_double.make_module("tensorrt"))
    monkeypatch.setitem(backend_registry._backends, "tensorrt", be)
    monkeypatch.setenv("TRTKIT_BACKEND", "tensorrt")
    return be


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep every test's engine cache out of the user's home directory."""
    monkeypatch.setenv("TRTKIT_CACHE_DIR", str(tmp_path_factory.mktemp("engine-cache")))
    yield


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
