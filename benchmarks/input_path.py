"""The path of one warm ``engine(x)`` call through trtkit's modules, on the engine double (needs a GPU).

    PYTHONPATH=src:tests python benchmarks/input_path.py

Prints, for a NumPy input and (when PyTorch is installed) a PyTorch CUDA input, the trtkit functions called in
order and the module entries (a function of one module called from another) up to TensorRT: the double's
``set_tensor_address`` or ``execute_async_v3``. tests/runtime/test_input_path_gpu.py asserts that no module is
entered twice.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from support import trt_double
from support.tracing import trace_entries

from trtkit.backend import Backend
from trtkit.engine import Engine
from trtkit.runtime import load_engine


def show(label: str, engine: Engine, x: object, until: str) -> None:
    keep = engine(x)  # warm-up; kept so that the traced call's outputs get new addresses
    functions, entries = trace_entries(lambda: engine(x), until)
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
