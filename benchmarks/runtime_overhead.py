"""Host overhead of trtkit per call over a hand-written raw TensorRT loop, on the engine double (needs a GPU).

    PYTHONPATH=src:tests python benchmarks/runtime_overhead.py [OUT.json]

Every loop drives the same double engine and the same device buffers on one stream, and synchronizes once at
the end, so what is timed is the host's cost of issuing a call. Two settings:

* ``host_*``: the double's ``execute_async_v3`` replaced by a no-op that returns True, in the raw loop and in
  trtkit alike, so the difference is trtkit's own work per call (the target: at most 10 us);
* ``e2e_*``: the double really runs its op (two CuPy kernels) on the device memory.

The raw loop is what a user writes against TensorRT: set both tensor addresses, then ``execute_async_v3``.
Also records the device pool's statistics before and after 10,000 calls (no allocation in steady state).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch
from support import trt_double

from trtkit.backend import Backend
from trtkit.engine import Engine
from trtkit.runtime import load_engine, memory

N, REPEATS = 5000, 7


def per_call_us(fn: Any, sync: Any, n: int = N) -> float:
    """Microseconds per call of ``fn`` over ``n`` back-to-back calls and one final sync."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t0) / n * 1e6


def measure(variants: dict[str, Any], sync: Any) -> dict[str, float]:
    """Per variant, the fastest of REPEATS rounds; rounds interleave the variants so that drift on a shared
    machine hits all of them alike (the minimum is the least disturbed estimate of the cost itself)."""
    for fn in variants.values():
        per_call_us(fn, sync, 500)  # warm-up
    best = {name: float("inf") for name in variants}
    for _ in range(REPEATS):
        for name, fn in variants.items():
            best[name] = min(best[name], per_call_us(fn, sync))
    return best


def main() -> None:
    mod = trt_double.make_module()
    be = Backend.from_module("tensorrt", mod)
    plan = trt_double.make_plan(profiles=[{"x": ((1, 4), (64, 4), (1024, 4))}])
    le = load_engine(plan, backend=be)
    torch_stream = torch.cuda.Stream()
    torch.cuda.set_stream(torch_stream)  # the caller's current stream; trtkit's facade runs on it
    handle = torch_stream.cuda_stream
    s = memory.to_stream(handle)
    x = torch.randn(64, 4, device="cuda")
    y = torch.empty(64, 4, device="cuda")

    raw = le.trt_engine.create_execution_context(mod.ExecutionContextAllocationStrategy.STATIC)
    raw.set_optimization_profile_async(0, handle)
    raw.set_input_shape("x", (64, 4))
    assert raw.infer_shapes() == []

    def raw_call() -> None:
        raw.set_tensor_address("x", x.data_ptr())
        raw.set_tensor_address("y", y.data_ptr())
        if not raw.execute_async_v3(handle):
            raise RuntimeError("raw execute failed")

    def raw_call_new_output() -> Any:
        out = torch.empty(64, 4, device="cuda")  # a raw loop that returns a fresh output, like engine(x)
        raw.set_tensor_address("x", x.data_ptr())
        raw.set_tensor_address("y", out.data_ptr())
        if not raw.execute_async_v3(handle):
            raise RuntimeError("raw execute failed")
        return out

    ctx = le.create_context(stream=handle)
    eng = Engine(le)
    variants = {
        "raw_loop": raw_call,
        "raw_loop_new_output": raw_call_new_output,
        "facade_engine_x": lambda: eng(x),  # outputs made by torch.empty on the caller's stream
        "facade_engine_x_outputs": lambda: eng.infer({"x": x}, outputs={"y": y}),
        "context_infer_trusted_stream": lambda: ctx.infer({"x": x}, outputs={"y": y}, sync_inputs=False),
        "context_infer_default_ordering": lambda: ctx.infer({"x": x}, outputs={"y": y}),
        "context_infer_pool_outputs": lambda: ctx.infer({"x": x}),
    }
    results: dict[str, Any] = {"device": le.device_info.name, "calls_per_run": N, "runs": REPEATS}
    for name, us in measure(variants, s.sync).items():
        results[f"e2e_{name}_us"] = us
    real = type(raw).execute_async_v3
    type(raw).execute_async_v3 = lambda self, stream: True  # both loops now skip the double's work
    try:
        for name, us in measure(variants, s.sync).items():
            results[f"host_{name}_us"] = us
    finally:
        type(raw).execute_async_v3 = real
    results["host_overhead_facade_engine_x_vs_raw_new_output_us"] = (
        results["host_facade_engine_x_us"] - results["host_raw_loop_new_output_us"])
    for name in variants:
        if not name.startswith("raw_loop"):
            results[f"host_overhead_{name}_us"] = results[f"host_{name}_us"] - results["host_raw_loop_us"]
            results[f"e2e_overhead_{name}_us"] = results[f"e2e_{name}_us"] - results["e2e_raw_loop_us"]

    for label, fn in (("facade", lambda: eng(x)), ("context_pool_outputs", lambda: ctx.infer({"x": x}))):
        fn()
        s.sync()
        before = le.pool.stats()
        for _ in range(10_000):
            fn()
        s.sync()
        torch.cuda.synchronize()
        after = le.pool.stats()
        results[f"pool_{label}_before_10000_calls"] = before.to_dict()
        results[f"pool_{label}_after_10000_calls"] = after.to_dict()
    text = json.dumps(results, indent=2)
    print(text)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
