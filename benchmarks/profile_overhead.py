"""Where the host time of one trtkit call goes, on the engine double (a diagnostic, not a target check).

    PYTHONPATH=src:tests python benchmarks/profile_overhead.py [OUT_DIR]

Prints micro-timings of the building blocks (DLPack views, events, pool allocations, log capture) and a
cProfile of `Context.infer` and of the facade call, sorted by own time.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import torch
from support import trt_double

from trtkit.backend import Backend
from trtkit.engine import Engine
from trtkit.runtime import load_engine, memory
from trtkit.runtime.memory.streams import upload

N = 3000


def per_call_us(fn: Any, n: int = N) -> float:
    for _ in range(200):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    from cuda.core.utils import StridedMemoryView

    mod = trt_double.make_module()
    be = Backend.from_module("tensorrt", mod)
    plan = trt_double.make_plan(profiles=[{"x": ((1, 4), (64, 4), (1024, 4))}])
    le = load_engine(plan, backend=be)
    ts = torch.cuda.Stream()
    torch.cuda.set_stream(ts)
    h = ts.cuda_stream
    s = memory.to_stream(h)
    x = torch.randn(64, 4, device="cuda")
    y = torch.empty(64, 4, device="cuda")
    ev = s.record()
    lines = []

    def blk(name: str, fn: Any) -> None:
        lines.append(f"{name:<50} {per_call_us(fn):8.2f} us")

    blk("StridedMemoryView.from_any_interface(x, h)", lambda: StridedMemoryView.from_any_interface(x, stream_ptr=h))
    blk("StridedMemoryView.from_dlpack(x, h)", lambda: StridedMemoryView.from_dlpack(x, stream_ptr=h))
    blk("StridedMemoryView.from_dlpack(x, -1)", lambda: StridedMemoryView.from_dlpack(x, stream_ptr=-1))
    blk("torch attrs (data_ptr, shape, dtype, contig, dev)",
        lambda: (x.data_ptr(), x.shape, x.dtype, x.is_contiguous(), x.device.index))
    blk("torch.cuda.current_stream(dev).cuda_stream", lambda: torch.cuda.current_stream(x.device).cuda_stream)
    blk("stream.record(event)", lambda: s.record(ev))
    blk("pool.allocate(1KiB)+close", lambda: le.pool.allocate(1024, s).close(s))

    def dev_array() -> Any:
        return memory.DeviceArray(le.pool.allocate(1024, s), (64, 4), x.numpy(force=False).dtype
                                  if False else __import__("numpy").dtype("float32"), s)

    blk("DeviceArray(pool.allocate) (freed by gc)", dev_array)
    da = dev_array()
    blk("torch.from_dlpack(DeviceArray)", lambda: torch.from_dlpack(da))

    def cap() -> None:
        with be.capture():
            pass

    blk("backend.capture() enter/exit", cap)
    raw = le.trt_engine.create_execution_context(mod.ExecutionContextAllocationStrategy.STATIC)
    raw.set_optimization_profile_async(0, h)
    raw.set_input_shape("x", (64, 4))
    raw.infer_shapes()

    def raw_call() -> None:
        raw.set_tensor_address("x", x.data_ptr())
        raw.set_tensor_address("y", y.data_ptr())
        raw.execute_async_v3(h)
        s.sync()

    ctx = le.create_context(stream=h)

    def ctx_out() -> None:
        ctx.infer({"x": x}, outputs={"y": y})
        s.sync()

    def ctx_pool() -> None:
        ctx.infer({"x": x})
        s.sync()

    eng = Engine(le)

    def facade() -> None:
        eng(x)
        s.sync()

    import numpy as np

    xn = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    ctx_np = le.create_context()
    blk("pinned.empty((64, 4) f32) (freed by gc)", lambda: le.pinned.empty((64, 4), np.float32, ctx_np.stream))
    blk("stream.sync() (idle stream)", lambda: ctx_np.stream.sync())
    blk("upload(dptr, x, staging)",
        lambda: upload(ctx_np._device_buffer("x", xn.nbytes), xn,
                              ctx_np._pinned_buffer("x", xn.nbytes), ctx_np._handle))

    def ctx_numpy() -> None:
        ctx_np.infer(xn)

    def facade_numpy() -> None:
        eng(xn)

    calls = (("raw", raw_call), ("ctx_out", ctx_out), ("ctx_pool", ctx_pool), ("facade", facade),
             ("ctx_numpy", ctx_numpy), ("facade_numpy", facade_numpy))
    for name, fn in calls:
        lines.append(f"{'call ' + name:<50} {per_call_us(fn):8.2f} us")
    text = "\n".join(lines)
    print(text)
    reports = [text]
    for name, fn in (("ctx_out", ctx_out), ("facade", facade), ("ctx_numpy", ctx_numpy),
                     ("facade_numpy", facade_numpy)):
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(N):
            fn()
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(35)
        reports.append(f"==== cProfile {name} ({N} calls) ====\n{buf.getvalue()}")
    if out_dir is not None:
        (out_dir / "profile.txt").write_text("\n".join(reports))


if __name__ == "__main__":
    main()
