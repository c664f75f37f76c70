"""The binding state of a :class:`~trtkit.runtime.context.Context`: tensor addresses, the buffers it owns, the
shapes and profile set, the stream, and the generation counter that the lean paths
(:mod:`trtkit.runtime.host_path`, :mod:`trtkit.runtime.device_path`) check to know that nothing changed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

from trtkit.errors import ExecutionError
from trtkit.runtime.memory.arrays import Buffer, host_array
from trtkit.runtime.memory.streams import CudaEvent, CudaStream, StreamLike, StreamOrder, stream_handle, to_stream

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from trtkit.backend import Backend, CudaEngine, ExecutionContext
    from trtkit.profiles import Shape
    from trtkit.runtime.graphs import GraphCache
    from trtkit.runtime.memory.pools import DevicePool, PinnedPool
    from trtkit.runtime.memory.streams import CudaDevice
    from trtkit.runtime.shapes import ShapeState, ShapeTracker
    from trtkit.runtime.tensors import TensorSpec

__all__ = ["Bindings", "EngineParts"]

_KEEP_QUERY = 64
"""Held references beyond which each call asks whether the stream is done with them."""


class EngineParts(Protocol):
    """What a context uses of its :class:`~trtkit.runtime.loading.LoadedEngine`."""

    backend: Backend
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    device_index: int
    pool: DevicePool
    pinned: PinnedPool
    _dev: CudaDevice
    _engine: CudaEngine


class Bindings:
    """Addresses, owned buffers, shapes and stream of one execution context; every change bumps
    ``_generation``. Calls are serialized by the context's lock."""

    engine: EngineParts
    stream: CudaStream
    _be: Backend
    _ctx: ExecutionContext
    _handle: int
    _own_stream: bool
    _shapes: ShapeTracker
    _graphs: GraphCache
    _addr: dict[str, int]
    _dev_bufs: dict[str, Buffer]
    _pin_bufs: dict[str, tuple[Buffer, NDArray[np.uint8]]]
    _keep: list[object]
    _keep_event: CudaEvent | None
    _order: StreamOrder
    _producers: list[int]
    _generation: int

    def _ensure_shapes(self, key: tuple[Shape, ...], values: tuple[Shape, ...] = ()) -> ShapeState:
        """Ready for input shapes ``key`` and shape-tensor ``values``; a no-op when both are the last call's."""
        full = key + values if values else key
        tracker = self._shapes
        if full == tracker.key and tracker.state is not None:
            return tracker.state
        state, switched = tracker.update(full, key, values, self.stream, self._handle, self._bind)
        self._generation += 1
        if switched:
            self._graphs.drop()
        return state

    def _bind(self, name: str, addr: int) -> None:
        if self._addr.get(name) != addr:
            mark = self._be.log_mark()
            if not self._ctx.set_tensor_address(name, addr):
                raise ExecutionError(f"{self._be.label}: set_tensor_address({name!r}, {addr:#x}) was rejected",
                                     tensorrt_log=self._be.log_since(mark))
            self._addr[name] = addr
            self._generation += 1

    def _device_buffer(self, name: str, nbytes: int) -> int:
        buf = self._dev_bufs.get(name)
        if buf is None or int(buf.size) < nbytes:
            if buf is not None:
                buf.close(self.stream)
            buf = self.engine.pool.allocate(nbytes, self.stream)
            self._dev_bufs[name] = buf
            self._generation += 1
        return int(buf.handle)

    def _pinned_buffer(self, name: str, nbytes: int) -> NDArray[np.uint8]:
        """Pinned staging bytes for ``name`` (at least ``nbytes``), reused across calls."""
        entry = self._pin_bufs.get(name)
        if entry is None or int(entry[0].size) < nbytes:
            import numpy as np

            buf = self.engine.pinned.allocate(nbytes, self.stream)
            view = cast("NDArray[np.uint8]", host_array(buf, (int(buf.size),), np.uint8))
            self._pin_bufs[name] = (buf, view)
            self._generation += 1
            return view
        return entry[1]

    def _hold(self, refs: list[object], record: bool = True, same_memory: bool = False) -> None:
        """Keep device inputs alive until the stream has used them: one reused event, recorded after each
        call's work (``record=False``: the caller records it). ``same_memory``: the refs are at the addresses
        already held (a repeated call), so holding them a few calls longer costs no memory: the event is then
        queried only once many are held, not on every call."""
        if self._keep and self._keep_event is not None and (not same_memory or len(self._keep) > _KEEP_QUERY) \
                and self._keep_event.is_done:
            self._keep.clear()
        if refs:
            self._keep.extend(refs)
            if record:
                self._keep_event = self.stream.record(self._keep_event)

    def _switch_stream(self, stream: StreamLike) -> None:
        """Run on ``stream`` from now on. The buffers this context reuses were last used on the previous
        stream: the new one first waits for the work queued there (one event)."""
        new = to_stream(stream)
        handle = stream_handle(new)
        self._order.after(handle, self._handle)
        self.stream, self._handle = new, handle
        self._own_stream = False
        self._graphs.last_key = None
        self._generation += 1

    def _apply_order(self) -> None:
        for producer in dict.fromkeys(self._producers):
            self._order.after(self._handle, producer)
        self._producers.clear()

