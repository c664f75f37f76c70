"""Engines on every GPU of a host: :class:`EnginePool` sends each call to the least-loaded execution context.

Each device loads its own engine (the same plan where the GPUs share a compute capability; the engine cache
keeps one build per compute capability otherwise) and holds ``contexts_per_device`` contexts, each with its own
stream. A call takes a free context, preferring the device with the fewest calls running; a call whose inputs
already live on a GPU runs on that GPU. Calls return ready results in the caller's array family. See
``docs/concepts/pool.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from trtkit.engine import Engine
from trtkit.errors import ClosedError, ConfigError
from trtkit.gpu import check, cudart
from trtkit.runtime.io import ADAPTERS, adapter_of, describe_array, normalize_inputs

if TYPE_CHECKING:
    from trtkit.backend import Backend
    from trtkit.builder.model import ModelSource, OnnxModel
    from trtkit.runtime.context import Context
    from trtkit.runtime.results import Outputs

__all__ = ["DeviceStats", "EnginePool", "resolve_devices"]

Devices = Literal["all"] | Sequence[int] | int


def resolve_devices(devices: Devices) -> list[int]:
    """``"all"`` (every visible CUDA device), one index or a list of distinct indices, checked to exist.

    Raises:
        ConfigError: an empty list, a repeated or negative index, or an index with no such device.
        CudaError: no GPU or driver.
    """
    count = int(check(cudart().cudaGetDeviceCount(), "cudaGetDeviceCount"))
    if devices == "all":
        return list(range(count))
    wanted = [devices] if isinstance(devices, int) else list(devices)
    if not wanted or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in wanted) \
            or len(set(wanted)) != len(wanted):
        raise ConfigError(f"devices must be 'all' or distinct CUDA device indices (ints >= 0), got {devices!r}")
    missing = [d for d in wanted if d >= count]
    if missing:
        raise ConfigError(f"no CUDA device {', '.join(map(str, missing))}: this host has {count} "
                          f"(indices 0 to {count - 1}); see nvidia-smi")
    return wanted


@dataclass
class DeviceStats:
    """Calls per device so far, and those running now."""

    device: int
    contexts: int
    calls: int = 0
    running: int = 0


class _Slot:
    __slots__ = ("context", "device", "engine")

    def __init__(self, engine: Engine, context: Context) -> None:
        self.engine = engine
        self.context = context
        self.device = engine.device


class EnginePool:
    """One engine per GPU with ``contexts_per_device`` contexts each; safe to call from many threads.

    ``pool(inputs)`` and :meth:`infer` block until the results are ready; :meth:`submit` returns a
    :class:`concurrent.futures.Future` and :meth:`ainfer` is awaitable. Make one with :meth:`from_onnx` or
    :meth:`load`, or from engines already loaded on distinct devices.
    """

    def __init__(self, engines: Sequence[Engine], *, contexts_per_device: int = 2) -> None:
        if isinstance(contexts_per_device, bool) or not isinstance(contexts_per_device, int) \
                or contexts_per_device < 1:
            raise ConfigError(f"contexts_per_device must be an int >= 1, got {contexts_per_device!r}")
        if not engines:
            raise ConfigError("an EnginePool needs at least one engine")
        devices = [e.device for e in engines]
        if len(set(devices)) != len(devices):
            raise ConfigError(f"one engine per device: got engines on devices {devices}")
        self._engines = list(engines)
        self._slots: list[_Slot] = []
        self._free: dict[int, list[_Slot]] = {}
        self.stats = {d: DeviceStats(d, contexts_per_device) for d in devices}
        for engine in engines:
            engine.runtime.ensure_current()
            slots = [_Slot(engine, engine.create_context()) for _ in range(contexts_per_device)]
            self._slots += slots
            self._free[engine.device] = list(slots)
        self._cond = threading.Condition()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    @classmethod
    def from_onnx(cls, model: ModelSource | OnnxModel, *, devices: Devices = "all", contexts_per_device: int = 2,
                  **kwargs: object) -> EnginePool:
        """:meth:`Engine.from_onnx` on each device (same arguments): one cached build per compute capability."""
        if "device" in kwargs:
            raise ConfigError("EnginePool.from_onnx takes devices=, not device=")
        engines = [Engine.from_onnx(model, device=d, **kwargs) for d in resolve_devices(devices)]  # type: ignore[arg-type]
        return cls(engines, contexts_per_device=contexts_per_device)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | bytes, *, devices: Devices = "all", contexts_per_device: int = 2,
             backend: str | Backend | None = None) -> EnginePool:
        """:meth:`Engine.load` of one engine file on each device (their GPUs must all be able to run it)."""
        engines = [Engine.load(path, device=d, backend=backend) for d in resolve_devices(devices)]
        return cls(engines, contexts_per_device=contexts_per_device)

    @property
    def devices(self) -> list[int]:
        return [e.device for e in self._engines]

    @property
    def engines(self) -> list[Engine]:
        return list(self._engines)

    # ---- scheduling --------------------------------------------------------------------------------------

    def _acquire(self, device: int | None) -> _Slot:
        with self._cond:
            while True:
                if self._closed:
                    raise ClosedError("this EnginePool was closed")
                if device is not None:
                    free = self._free.get(device)
                    if free is None:
                        raise ConfigError(f"the inputs live on CUDA device {device}, which this pool does not use "
                                          f"(devices {self.devices}); move them or add the device")
                    if free:
                        slot = free.pop()
                        break
                else:
                    best = min((d for d, f in self._free.items() if f),
                               key=lambda d: (self.stats[d].running, self.stats[d].calls), default=None)
                    if best is not None:
                        slot = self._free[best].pop()
                        break
                self._cond.wait()
            st = self.stats[slot.device]
            st.running += 1
            st.calls += 1
            return slot

    def _release(self, slot: _Slot) -> None:
        with self._cond:
            self.stats[slot.device].running -= 1
            self._free[slot.device].append(slot)
            self._cond.notify()

    @staticmethod
    def _home(inputs: object) -> int | None:
        """The CUDA device the inputs live on, or None for host inputs."""
        first = inputs
        if isinstance(inputs, Mapping):
            first = next(iter(inputs.values()), None)
        elif isinstance(inputs, list | tuple):
            first = inputs[0] if inputs else None
        if first is None or (ADAPTERS.get(type(first)) or adapter_of(first)).family == "numpy":
            return None
        info = describe_array(first, None, ordered=True)
        return info.device if info.kind == "device" else None

    # ---- calls ---------------------------------------------------------------------------------------------

    def __call__(self, inputs: object = None, /, **named: object) -> Outputs:
        """Run once on the least-loaded context; ready results in the inputs' array family."""
        if named:
            if inputs is not None:
                raise ConfigError("pass inputs positionally or by name, not both")
            inputs = named
        return self.infer(inputs)

    def infer(self, inputs: object, *, outputs: Mapping[str, object] | None = None) -> Outputs:
        """Like ``pool(inputs)``, with optional output buffers (on the inputs' device)."""
        slot = self._acquire(self._home(inputs))
        try:
            slot.engine.runtime.ensure_current()
            ctx = slot.context
            named = normalize_inputs(ctx.inputs, inputs)
            first = next(iter(named.values()), None)
            family = ADAPTERS.get(type(first)) or adapter_of(first)
            if not family.wraps:  # NumPy (and other host) inputs: the context syncs, outputs are NumPy
                return ctx.infer(named, outputs=outputs, family=family)
            # CUDA arrays: on the context's own stream (ordered after the inputs' producers), then synced so the
            # caller may read the results on any stream
            result = ctx.infer(named, outputs=outputs, stream=ctx.stream, family=family)
            ctx.stream.sync()
            return result
        finally:
            self._release(slot)

    def submit(self, inputs: object, *,
               outputs: Mapping[str, object] | None = None) -> concurrent.futures.Future[Outputs]:
        """Run :meth:`infer` on a worker thread (one per context); the future gives the results."""
        with self._cond:
            if self._closed:
                raise ClosedError("this EnginePool was closed")
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(len(self._slots),
                                                                       thread_name_prefix="trtkit-pool")
            return self._executor.submit(self.infer, inputs, outputs=outputs)

    async def ainfer(self, inputs: object, *, outputs: Mapping[str, object] | None = None) -> Outputs:
        """``await pool.ainfer(inputs)``: :meth:`submit` for asyncio code."""
        return await asyncio.wrap_future(self.submit(inputs, outputs=outputs))

    # ---- lifetime ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Wait for running calls, then free every context and engine."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        with self._cond:
            while any(st.running for st in self.stats.values()):
                self._cond.wait()
        for slot in self._slots:
            slot.engine.runtime.ensure_current()
            slot.context.close()
        for engine in self._engines:
            engine.close()

    def __enter__(self) -> EnginePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        per = len(self._slots) // max(1, len(self._engines))
        return f"EnginePool(devices={self.devices}, contexts_per_device={per})"
