"""Large NumPy inputs/outputs through trtkit vs raw pinned and pageable copies (engine double, y = 2x + 1).

    PYTHONPATH=src:tests python benchmarks/copy_bandwidth.py [OUT.json]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import numpy as np
from support import trt_double

from trtkit.backend import Backend
from trtkit.runtime import load_engine, memory

ROWS = 1 << 24  # x: ROWS x 4 float32 = 256 MiB
NBYTES = ROWS * 16
REPS = 8


def best(fn: Any) -> float:
    fn()
    times = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    mod = trt_double.make_module()
    be = Backend.from_module("tensorrt", mod)
    plan = trt_double.make_plan(profiles=[{"x": ((1, 4), (ROWS, 4), (ROWS, 4))}])
    le = load_engine(plan, backend=be)
    ctx = le.create_context()
    s = ctx.stream
    h = memory.stream_handle(s)
    dbuf = le.pool.allocate(NBYTES, s)
    dbuf2 = le.pool.allocate(NBYTES, s)
    pin_in = le.empty_pinned("x", shape=(ROWS, 4))
    pin_out = le.empty_pinned("y", shape=(ROWS, 4))
    pin_in[...] = 1.0
    page_in = np.ones((ROWS, 4), np.float32)
    page_out = np.ones((ROWS, 4), np.float32)

    def raw(dst: int, src: int) -> Any:
        def f() -> None:
            memory.copy_async(dst, src, NBYTES, h)
            s.sync()
        return f

    r: dict[str, Any] = {"bytes_each_way": NBYTES, "device": le.device_info.name,
                         "pinned_resource": le.pinned.kind}
    r["raw_pinned_h2d_GBps"] = NBYTES / best(raw(int(dbuf.handle), pin_in.ctypes.data)) / 1e9
    r["raw_pinned_d2h_GBps"] = NBYTES / best(raw(pin_out.ctypes.data, int(dbuf.handle))) / 1e9
    r["raw_pageable_h2d_GBps"] = NBYTES / best(raw(int(dbuf.handle), page_in.ctypes.data)) / 1e9
    r["raw_pageable_d2h_GBps"] = NBYTES / best(raw(page_out.ctypes.data, int(dbuf.handle))) / 1e9

    # GPU compute of the op alone (device-resident), to subtract from the round trips.
    import torch

    xt = torch.ones(ROWS, 4, device="cuda")
    yt = torch.empty(ROWS, 4, device="cuda")

    def compute() -> None:
        ctx.infer({"x": xt}, outputs={"y": yt})
        s.sync()
    t_compute = best(compute)
    r["compute_s"] = t_compute

    def pinned_call() -> None:
        ctx.infer({"x": pin_in}, outputs={"y": pin_out})

    def pageable_call() -> None:
        ctx.infer({"x": page_in}, outputs={"y": page_out})

    def numpy_default_call() -> None:
        ctx.infer({"x": page_in})

    for name, fn in (("pinned", pinned_call), ("pageable", pageable_call),
                     ("pageable_in_trtkit_pinned_out", numpy_default_call)):
        t = best(fn)
        r[f"{name}_round_trip_s"] = t
        r[f"{name}_effective_GBps_each_way"] = 2 * NBYTES / max(t - t_compute, 1e-9) / 1e9
    np.testing.assert_array_equal(pin_out[:2], 3.0)
    r["pinned_fraction_of_raw_pinned"] = r["pinned_effective_GBps_each_way"] / (
        (r["raw_pinned_h2d_GBps"] + r["raw_pinned_d2h_GBps"]) / 2)
    raw_pageable_rt = NBYTES / r["raw_pageable_h2d_GBps"] / 1e9 + NBYTES / r["raw_pageable_d2h_GBps"] / 1e9
    r["pageable_vs_raw_pageable_speedup"] = raw_pageable_rt / (r["pageable_round_trip_s"] - t_compute)
    dbuf.close(s)
    dbuf2.close(s)
    text = json.dumps(r, indent=2)
    print(text)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
