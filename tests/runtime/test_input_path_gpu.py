"""The path of an input from ``engine(x)`` to TensorRT: every trtkit module is entered once.

A module is *entered* when a function of it is called from a function of another module. The calls of one warm
``engine(x)`` are traced with ``sys.setprofile`` up to the double's ``set_tensor_address`` (PyTorch: the call
binds the fresh output torch made) or ``execute_async_v3`` (NumPy: the staging buffers are those of the warm-up
call, so nothing is bound again), which the context module must call. ``benchmarks/input_path.py`` prints the
same path by hand.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from types import FrameType

import numpy as np
import pytest
from support import trt_double

from trtkit.backend import Backend
from trtkit.engine import Engine
from trtkit.runtime import load_engine

pytestmark = pytest.mark.gpu

AFFINE = trt_double.make_plan(profiles=[{"x": ((1, 4), (8, 4), (64, 4))}])
DOUBLE = trt_double.__name__


def trace_entries(call: Callable[[], object], until: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Run ``call`` under ``sys.setprofile``; return the trtkit and double functions called, in order, and the
    module entries ``(caller module, callee module, function)`` up to the first call of the double's ``until``."""
    functions: list[str] = []
    entries: list[tuple[str, str, str]] = []
    done = False

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal done
        if event != "call" or done:
            return
        callee = str(frame.f_globals.get("__name__", ""))
        if not (callee.startswith("trtkit.") or callee == DOUBLE):
            return
        name = frame.f_code.co_qualname
        functions.append(f"{callee}.{name}")
        back = frame.f_back
        caller = str(back.f_globals.get("__name__", "")) if back is not None else ""
        if caller != callee:
            entries.append((caller, callee, name))
        if callee == DOUBLE and name.endswith(until):
            done = True

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return functions, entries


def _check_path(functions: list[str], entries: list[tuple[str, str, str]], until: str) -> None:
    print("functions:\n  " + "\n  ".join(functions))
    print("module entries:\n  " + "\n  ".join(f"{a} -> {b} ({f})" for a, b, f in entries))
    print("path: " + " -> ".join(b for _, b, _ in entries))
    assert entries[0][1] == "trtkit.engine"
    entered = [callee for _, callee, _ in entries]
    assert len(entered) == len(set(entered)), f"a module is entered twice: {entered}"
    caller, callee, function = entries[-1]
    assert callee == DOUBLE and function.endswith(until), entries[-1]
    assert caller == "trtkit.runtime.context"


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    be = Backend.from_module("tensorrt", trt_double.make_module())
    with load_engine(AFFINE, backend=be) as le:
        yield Engine(le)


def test_numpy_input_path(engine: Engine) -> None:
    x = np.ones((8, 4), np.float32)
    engine(x)  # warm-up: the context, its buffers and the adapter cache exist now
    functions, entries = trace_entries(lambda: engine(x), "execute_async_v3")
    _check_path(functions, entries, "execute_async_v3")
    assert not any(f.endswith("set_tensor_address") for f in functions)  # the warm call rebinds nothing
    np.testing.assert_allclose(engine(x)["y"], 3.0)


def test_torch_input_path(engine: Engine) -> None:
    torch = pytest.importorskip("torch")
    x = torch.ones(8, 4, device="cuda")
    warm = engine(x)  # kept alive: the traced call's output is a new tensor, bound at a new address
    functions, entries = trace_entries(lambda: engine(x), "set_tensor_address")
    _check_path(functions, entries, "set_tensor_address")
    torch.testing.assert_close(warm["y"], x * 2 + 1)
