"""The runtime double's own plumbing (tests/support/trt_double.py), where a mistake would show up as a trtkit
failure elsewhere."""

from __future__ import annotations

import importlib.abc
import sys
import threading
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import pytest
from support import trt_double


class _SlowFailingCupy(importlib.abc.MetaPathFinder):
    """``import cupy`` that takes a while and fails, as CuPy 14 does under NumPy 1."""

    def __init__(self) -> None:
        self.attempts = 0

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if name != "cupy":
            return None
        self.attempts += 1
        time.sleep(0.05)
        raise ImportError("Failed to import CuPy (numpy.core.multiarray failed to import)")


def test_the_double_decides_once_whether_cupy_loads_even_from_many_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two `trtkit serve` instances run the double on two threads; each retrying a failing CuPy import used to
    # fail 7 to 28 % of requests under load on the H200.
    finder = _SlowFailingCupy()
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    monkeypatch.setattr(trt_double, "_cupy_module", [])
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(trt_double._cupy())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [None] * 8
    assert finder.attempts == 1
    assert trt_double._cupy() is None and finder.attempts == 1
