"""The path of one warm ``engine(x)`` call through trtkit's modules, on the engine double (needs a GPU).

    PYTHONPATH=src:tests python benchmarks/input_path.py

Prints, for a NumPy input and (when PyTorch is installed) a PyTorch CUDA input, the trtkit functions called in
order and the module entries (a function of one module called from another) up to TensorRT: the double's
``set_tensor_address`` or ``execute_async_v3``. tests/runtime/test_input_path_gpu.py asserts that no module is
entered twice.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from types import FrameType

import numpy as np
from support import trt_double

from trtkit.backend import Backend
from trtkit.engine import Engine
from trtkit.runtime import load_engine

DOUBLE = trt_double.__name__


def trace(call: Callable[[], object], until: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The trtkit (and double) functions ``call`` runs, and its module entries up to the double's ``until``."""
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
        functions.append(f"{callee}.{frame.f_code.co_qualname}")
        back = frame.f_back
        caller = str(back.f_globals.get("__name__", "")) if back is not None else ""
        if caller != callee:
            entries.append((caller, callee, frame.f_code.co_qualname))
        if callee == DOUBLE and frame.f_code.co_qualname.endswith(until):
            done = True

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return functions, entries


def show(label: str, engine: Engine, x: object, until: str) -> None:
    keep = engine(x)  # warm-up; kept so that the traced call's outputs get new addresses
    functions, entries = trace(lambda: engine(x), until)
    print(f"== {label}: functions in order")
    for f in functions:
        print(f"  {f}")
    print(f"== {label}: module entries")
    for caller, callee, function in entries:
        print(f"  {caller} -> {callee}  ({function})")
    entered = [callee for _, callee, _ in entries]
    twice = sorted({m for m in entered if entered.count(m) > 1})
    print(f"== {label}: path  " + " -> ".join(entered) + (f"  (entered twice: {twice})" if twice else ""))
    del keep


def main() -> None:
    be = Backend.from_module("tensorrt", trt_double.make_module())
    plan = trt_double.make_plan(profiles=[{"x": ((1, 4), (8, 4), (64, 4))}])
    with load_engine(plan, backend=be) as le:
        engine = Engine(le)
        show("numpy", engine, np.ones((8, 4), np.float32), "execute_async_v3")
        if importlib.util.find_spec("torch") is not None:
            import torch

            show("torch", engine, torch.ones(8, 4, device="cuda"), "set_tensor_address")


if __name__ == "__main__":
    main()
