"""07 - Benchmark an engine: latency percentiles and throughput for one input shape.

Needs a GPU the backend runs on. Elsewhere it prints why it cannot run and exits 0. The command line does the
same with ``trtkit bench MODEL.onnx|ENGINE``.

    python examples/07_benchmark.py
"""

from __future__ import annotations

import sys

from trtkit import DependencyError
from trtkit.backend import get_backend
from trtkit.runtime.compat import run_blocker
from trtkit.samples import TINY_CNN_SHAPES, tiny_cnn_path


def cannot_run() -> str | None:
    """Why engines cannot run on this machine, or None when they can."""
    try:
        return run_blocker(get_backend())
    except DependencyError as exc:
        return exc.message


def main() -> int:
    reason = cannot_run()
    if reason is not None:
        print(f"skipped: this example runs an engine, and engines cannot run here: {reason}")
        return 0
    from trtkit import Engine
    from trtkit.tools.bench import BenchResult

    with Engine.from_onnx(tiny_cnn_path(), shapes=TINY_CNN_SHAPES) as engine:
        # A sweep: one result per shape. Timed with CUDA events; a CUDA graph is replayed per shape.
        results = engine.benchmark(shapes=[{"image": (1, 3, 64, 64)}, {"image": (16, 3, 64, 64)}], duration=1.0)
        assert isinstance(results, list)
        for result in results:
            assert isinstance(result, BenchResult)
            lat = result.latency
            print(f"image {result.shapes['image']}: {result.throughput_qps:.0f} qps, latency median "
                  f"{lat.median:.3f} ms, p99 {lat.p99:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
