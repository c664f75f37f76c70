"""The path of an input from ``engine(x)`` to TensorRT: every trtkit module is entered once.

A module is *entered* when a function of it is called from a function of another module. The calls of one warm
``engine(x)`` are traced with ``sys.setprofile`` up to the double's ``set_tensor_address`` (PyTorch: the call
binds the fresh output torch made) or ``execute_async_v3`` (NumPy: the staging buffers are those of the warm-up
call, so nothing is bound again), which the context module must call. ``benchmarks/input_path.py`` prints the
same path by hand.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from support import trt_double
from support.tracing import DOUBLE, trace_entries

from trtkit.backend import Backend
from trtkit.engine import Engine
from trtkit.runtime import load_engine

pytestmark = pytest.mark.gpu

AFFINE = trt_double.make_plan(profiles=[{"x": ((1, 4), (8, 4), (64, 4))}])


BINDINGS, CONTEXT = "trtkit.runtime.bindings", "trtkit.runtime.context"


def _as_context(entries: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Context's base class Bindings (trtkit.runtime.bindings) holds Context's own binding methods: a call
    between the two is a call within Context."""
    merged = [(CONTEXT if a == BINDINGS else a, CONTEXT if b == BINDINGS else b, f) for a, b, f in entries]
    return [e for e in merged if e[0] != e[1]]


def _check_path(functions: list[str], entries: list[tuple[str, str, str]], until: str) -> None:
    entries = _as_context(entries)
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
