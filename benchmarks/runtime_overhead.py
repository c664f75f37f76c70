"""Host overhead of trtkit per call over a hand-written raw TensorRT loop, on the engine double.

Both loops drive the same double engine, buffers and stream, and synchronize after every call. Run on a GPU:
    PYTHONPATH=src:tests python benchmarks/runtime_overhead.py [OUT.json]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
import trt_double

from trtkit import memory
from trtkit.backend import Backend
from trtkit.engine import Engine
from trtkit.runtime import load_engine

N, REPEATS = 3000, 5


def timed(fn: Any) -> float:
    for _ in range(300):
        fn()
    runs = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for _ in range(N):
            fn()
        runs.append((time.perf_counter() - t0) / N * 1e6)
    return statistics.median(runs)


def main() -> None:
    mod = trt_double.make_module()
    be = Backend.from_module("tensorrt", mod)
    plan = trt_double.make_plan(profiles=[{"x": ((1, 4), (64, 4), (1024, 4))}])
    le = load_engine(plan, backend=be)
    torch_stream = torch.cuda.Stream()
    handle = torch_stream.cuda_stream
    s = memory.to_stream(handle)
    x = torch.randn(64, 4, device="cuda")
    y = torch.empty(64, 4, device="cuda")

    # Raw loop: what a user writes against TensorRT directly (shapes set once, addresses each call).
    raw = le.trt_engine.create_execution_context(mod.ExecutionContextAllocationStrategy.STATIC)
    raw.set_optimization_profile_async(0, handle)
    raw.set_input_shape("x", (64, 4))
    assert raw.infer_shapes() == []

    def raw_call() -> None:
        raw.set_tensor_address("x", x.data_ptr())
        raw.set_tensor_address("y", y.data_ptr())
        if not raw.execute_async_v3(handle):
            raise RuntimeError("raw execute failed")
        s.sync()

    ctx = le.create_context(stream=handle)

    def ctx_call_out() -> None:
        ctx.infer({"x": x}, outputs={"y": y})
        s.sync()

    def ctx_call() -> None:
        ctx.infer({"x": x})
        s.sync()

    eng = Engine(le)

    def facade_call() -> None:
        eng(x)
        s.sync()

    xn = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)

    def numpy_call() -> None:
        ctx.infer({"x": xn})

    torch.cuda.set_stream(torch_stream)  # callers' current stream = the execution stream (no cross-stream sync)
    results = {
        "raw_loop_us": timed(raw_call),
        "context_infer_caller_outputs_us": timed(ctx_call_out),
        "context_infer_pool_outputs_us": timed(ctx_call),
        "facade_engine_call_torch_us": timed(facade_call),
        "context_infer_numpy_small_us": timed(numpy_call),
    }
    raw_us = results["raw_loop_us"]
    results["overhead_context_caller_outputs_us"] = results["context_infer_caller_outputs_us"] - raw_us
    results["overhead_context_pool_outputs_us"] = results["context_infer_pool_outputs_us"] - raw_us
    results["overhead_facade_torch_us"] = results["facade_engine_call_torch_us"] - raw_us
    torch.cuda.synchronize()
    base = le.pool.stats()
    for _ in range(10_000):
        ctx_call()
    torch.cuda.synchronize()
    after = le.pool.stats()
    results["pool_before_10000_calls"] = base.to_dict()
    results["pool_after_10000_calls"] = after.to_dict()
    results["device"] = le.device_info.name
    text = json.dumps(results, indent=2)
    print(text)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
