"""Benchmarks measured the way trtexec does: warm-up, then a duration or an iteration count, CUDA events.

Per iteration: host-to-device copies (only with ``include_transfers``), the enqueue (host time spent in
``execute_async_v3`` or the CUDA graph launch), GPU compute (events around the enqueue), device-to-host
copies. Latency = H2D + GPU compute + D2H, as in trtexec. Iterations are pipelined on one stream; timings
are read back through a ring of events. CUDA graphs are on by default.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, cast

from trtkit._version import __version__
from trtkit.errors import InputError
from trtkit.profiles import format_shape
from trtkit.runtime.loading import LoadedEngine
from trtkit.runtime.memory import streams
from trtkit.runtime.tensors import select_profile

__all__ = ["BenchResult", "Stats", "bench_report", "benchmark", "summarize"]

_RING: Final = 32


class _TimingEvent(Protocol):
    """A ``cuda.core.Event`` created with timing: subtracting two gives the milliseconds between them."""

    def sync(self) -> None: ...
    def __sub__(self, other: _TimingEvent) -> float: ...


class _EventDevice(Protocol):
    """The ``cuda.core.Device`` method that makes timing events."""

    def create_event(self, options: object = ...) -> _TimingEvent: ...


@dataclass(frozen=True)
class Stats:
    """Summary of one timing series, in milliseconds."""

    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    stdev: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in self.__dict__.items()}


def _pct(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


def summarize(values: Sequence[float]) -> Stats:
    """min, mean, median, p90, p95, p99, max and standard deviation of ``values``."""
    v = sorted(values) or [0.0]
    return Stats(v[0], statistics.fmean(v), statistics.median(v), _pct(v, 90), _pct(v, 95), _pct(v, 99), v[-1],
                 statistics.pstdev(v))


@dataclass
class BenchResult:
    """One benchmark run at fixed input shapes."""

    shapes: dict[str, tuple[int, ...]]
    iterations: int
    total_seconds: float
    throughput_qps: float
    latency: Stats
    enqueue: Stats
    h2d: Stats
    gpu_compute: Stats
    d2h: Stats
    cuda_graph: bool
    include_transfers: bool
    warnings: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "iterations": self.iterations,
            "total_seconds": round(self.total_seconds, 6),
            "throughput_qps": round(self.throughput_qps, 3),
            "latency_ms": self.latency.to_dict(),
            "enqueue_ms": self.enqueue.to_dict(),
            "h2d_ms": self.h2d.to_dict(),
            "gpu_compute_ms": self.gpu_compute.to_dict(),
            "d2h_ms": self.d2h.to_dict(),
            "cuda_graph": self.cuda_graph,
            "include_transfers": self.include_transfers,
            "warnings": list(self.warnings),
            "environment": self.environment,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format(self) -> str:
        """A trtexec-like text report."""
        shapes = ", ".join(f"{k}: {format_shape(v)}" for k, v in self.shapes.items())
        lines = [f"=== Performance summary ({shapes}) ===",
                 f"Throughput: {self.throughput_qps:.2f} qps ({self.iterations} iterations in "
                 f"{self.total_seconds:.3f} s; CUDA graph: {'on' if self.cuda_graph else 'off'}; "
                 f"H2D/D2H: {'included' if self.include_transfers else 'excluded'})"]
        for label, st in (("Latency", self.latency), ("Enqueue Time", self.enqueue), ("H2D Latency", self.h2d),
                          ("GPU Compute Time", self.gpu_compute), ("D2H Latency", self.d2h)):
            lines.append(f"{label}: min = {st.min:.5f} ms, max = {st.max:.5f} ms, mean = {st.mean:.5f} ms, "
                         f"median = {st.median:.5f} ms, percentile(90%) = {st.p90:.5f} ms, percentile(95%) = "
                         f"{st.p95:.5f} ms, percentile(99%) = {st.p99:.5f} ms")
        lines += [f"* {w}" for w in self.warnings]
        return "\n".join(lines)


def bench_report(results: BenchResult | Sequence[BenchResult], *, engine: str | None = None) -> dict[str, object]:
    """The one JSON object ``trtkit bench --json`` prints, shaped like the other commands' ``--json`` (one
    object, not a list): ``{"kind": "bench", "engine": path, "results": [one per shape set]}``."""
    items = [results] if isinstance(results, BenchResult) else list(results)
    return {"kind": "bench", "engine": engine, "results": [r.to_dict() for r in items]}


def _default_shapes(engine: LoadedEngine) -> dict[str, tuple[int, ...]]:
    return {s.name: tuple(s.profiles[0].opt) if s.profiles else tuple(max(1, d) for d in s.shape)
            for s in engine.inputs}


def _warnings(enqueue: Stats, compute: Stats, cuda_graph: bool) -> list[str]:
    out = []
    if enqueue.median >= compute.median:
        out.append("Throughput may be bound by Enqueue Time rather than GPU Compute and the GPU may be "
                   "under-utilized." + ("" if cuda_graph else " CUDA graphs (--useCudaGraph) may increase the "
                                        "throughput."))
    if compute.mean > 0:
        cov = compute.stdev / compute.mean * 100
        if cov > 1.0:
            out.append(f"GPU compute time is unstable, with coefficient of variance = {cov:.2f}%. Locking the "
                       "GPU clock frequency or a longer run may improve the stability.")
    return out


def _environment(engine: LoadedEngine) -> dict[str, str]:
    return {"trtkit": __version__, "backend": engine.backend.label, "gpu": engine.device_info.name,
            "compute_capability": engine.device_info.cc_string, "source": engine.source}


def _run_one(engine: LoadedEngine, shapes: Mapping[str, tuple[int, ...]], *, warmup: float, duration: float,
             iterations: int | None, cuda_graph: bool, include_transfers: bool) -> BenchResult:
    ctx = engine.create_context(cuda_graph=cuda_graph)
    try:
        io = ctx.prepare_static(shapes)
        stream = ctx.stream
        handle = streams.stream_handle(stream)
        dev = cast(_EventDevice, engine._dev)
        opts = streams.core().EventOptions(timing_enabled=True)
        ring = [[dev.create_event(options=opts) for _ in range(4)] for _ in range(_RING)]
        enq_ms: list[float] = []
        h2d: list[float] = []
        gpu: list[float] = []
        d2h: list[float] = []

        def copies(pairs: Sequence[tuple[int, int, int]]) -> None:
            for dst, src, n in pairs:
                streams.copy_async(dst, src, n, handle)

        up = [(io.inputs[k].ptr, io.host_inputs[k].ctypes.data, io.inputs[k].nbytes) for k in io.inputs]
        down = [(io.host_outputs[k].ctypes.data, io.outputs[k].ptr, io.outputs[k].nbytes) for k in io.outputs]

        def one(ev: list[_TimingEvent]) -> float:
            stream.record(ev[0])
            if include_transfers:
                copies(up)
            stream.record(ev[1])
            t0 = time.perf_counter()
            ctx.enqueue()
            t1 = time.perf_counter()
            stream.record(ev[2])
            if include_transfers:
                copies(down)
            stream.record(ev[3])
            return (t1 - t0) * 1e3

        end = time.perf_counter() + warmup
        while True:  # warm-up (also captures the CUDA graph)
            one(ring[0])
            stream.sync()
            if time.perf_counter() >= end:
                break
        count = 0
        pending: list[tuple[list[_TimingEvent], float]] = []
        start = time.perf_counter()
        stop = start + duration
        while (count < iterations) if iterations else (time.perf_counter() < stop or count < 10):
            ev = ring[count % _RING]
            if len(pending) == _RING:
                old, e = pending.pop(0)
                old[3].sync()
                h2d.append(old[1] - old[0])
                gpu.append(old[2] - old[1])
                d2h.append(old[3] - old[2])
                enq_ms.append(e)
            pending.append((ev, one(ev)))
            count += 1
        stream.sync()
        total = time.perf_counter() - start
        for old, e in pending:
            h2d.append(old[1] - old[0])
            gpu.append(old[2] - old[1])
            d2h.append(old[3] - old[2])
            enq_ms.append(e)
        lat = [a + b + c for a, b, c in zip(h2d, gpu, d2h, strict=True)]
        enq, comp = summarize(enq_ms), summarize(gpu)
        graph_on = cuda_graph and ctx.graph_stats["captured"] > 0
        return BenchResult(
            shapes=dict(shapes), iterations=count, total_seconds=total, throughput_qps=count / total,
            latency=summarize(lat), enqueue=enq, h2d=summarize(h2d), gpu_compute=comp, d2h=summarize(d2h),
            cuda_graph=graph_on, include_transfers=include_transfers, warnings=_warnings(enq, comp, graph_on),
            environment=_environment(engine),
        )
    finally:
        ctx.close()


def benchmark(
    engine: LoadedEngine,
    *,
    shapes: Mapping[str, Sequence[int]] | Sequence[Mapping[str, Sequence[int]]] | None = None,
    warmup: float = 0.2,
    duration: float = 3.0,
    iterations: int | None = None,
    cuda_graph: bool = True,
    include_transfers: bool = False,
) -> BenchResult | list[BenchResult]:
    """Benchmark ``engine`` at ``shapes`` (default: each input's opt shape in profile 0).

    A list of shape dicts sweeps them (one result each). ``warmup`` and ``duration`` are seconds;
    ``iterations`` overrides ``duration``. Shapes outside every profile raise InputError before any run.
    """
    sweep = isinstance(shapes, Sequence) and not isinstance(shapes, Mapping)
    wanted: list[Mapping[str, Sequence[int]]] = (
        [shapes or _default_shapes(engine)] if isinstance(shapes, Mapping) or shapes is None else list(shapes))
    results = []
    for s in wanted:
        fixed = {str(k): tuple(int(d) for d in v) for k, v in s.items()}
        missing = [i.name for i in engine.inputs if i.name not in fixed]
        if missing:
            raise InputError(f"benchmark shapes miss input(s) {missing}; give every input's shape")
        select_profile(engine.inputs, fixed)
        results.append(_run_one(engine, fixed, warmup=warmup, duration=duration, iterations=iterations,
                                cuda_graph=cuda_graph, include_transfers=include_transfers))
    return results if sweep else results[0]
