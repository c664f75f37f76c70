"""TensorRT's allocator interfaces served from a :class:`~trtkit.runtime.memory.pools.DevicePool`.

* :func:`make_gpu_allocator`: a ``trt.IGpuAsyncAllocator`` for TensorRT's own scratch allocations;
* :func:`make_output_allocator`: a ``trt.IOutputAllocator`` for outputs whose shape depends on the data.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Protocol

from trtkit.runtime.memory.arrays import Buffer
from trtkit.runtime.memory.streams import CudaStream, to_stream

__all__ = ["OutputAllocator", "make_gpu_allocator", "make_output_allocator"]


class _Pool(Protocol):
    def allocate(self, nbytes: int, stream: CudaStream) -> Buffer: ...


class OutputAllocator(Protocol):
    """What :func:`make_output_allocator` returns: the buffers and shapes TensorRT asked for, by tensor."""

    buffers: dict[str, Buffer]
    shapes: dict[str, tuple[int, ...]]


def _address(memory: object) -> int:
    if isinstance(memory, int):
        return memory
    if memory is None:
        return 0
    try:
        return int(memory)  # type: ignore[call-overload, no-any-return]
    except TypeError:
        get = ctypes.pythonapi.PyCapsule_GetPointer
        get.restype = ctypes.c_void_p
        get.argtypes = [ctypes.py_object, ctypes.c_char_p]
        return int(get(memory, None) or 0)


class _StreamCache:
    def __init__(self, fallback: CudaStream) -> None:
        self._fallback = fallback
        self._streams: dict[int, CudaStream] = {}

    def get(self, handle: int) -> CudaStream:
        if handle == 0:
            return self._fallback
        s = self._streams.get(handle)
        if s is None:
            s = to_stream(handle)
            self._streams[handle] = s
        return s


def make_gpu_allocator(trt: object, pool: _Pool, fallback_stream: CudaStream, *, stream_index: int) -> object:
    """A ``trt.IGpuAsyncAllocator`` serving TensorRT's own allocations from ``pool``.

    Assign it to ``runtime.gpu_allocator``. ``stream_index`` is where the stream arrives in
    ``allocate_async``'s arguments (:attr:`trtkit.backend.Features.gpu_allocator_stream_index`: the bindings
    pass ``(size, alignment, stream, flags)`` up to TensorRT 11.1 and ``(size, alignment, flags, stream)``
    from 11.2 and on TensorRT-RTX; ``flags`` is a plain int). Allocations are stream-ordered on that stream
    (``fallback_stream`` for the legacy stream 0); frees are ordered on the stream TensorRT frees on.
    Synchronous allocations arrive in ``allocate_async`` too, so nothing else is overridden.
    """
    if stream_index not in (2, 3):
        raise ValueError(f"stream_index must be 2 or 3, got {stream_index}")
    base = trt.IGpuAsyncAllocator  # type: ignore[attr-defined]
    # One dict operation at a time (each atomic), so no lock is needed around it.
    live: dict[int, Buffer] = {}
    streams = _StreamCache(fallback_stream)

    class _PoolAllocator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.live = live

        def allocate_async(self, size: int, alignment: int, a: int, b: int) -> int:
            if size <= 0:
                return 0
            stream = a if stream_index == 2 else b
            buf = pool.allocate(int(size), streams.get(int(stream)))
            addr = int(buf.handle)
            live[addr] = buf
            return addr

        def deallocate_async(self, memory: object, stream: int) -> bool:
            addr = _address(memory)
            buf = live.pop(addr, None)
            if buf is None:
                return addr == 0
            buf.close(streams.get(int(stream)))
            return True

    made: object = _PoolAllocator()
    return made


def make_output_allocator(trt: object, pool: _Pool, streams: Callable[[int], CudaStream]) -> OutputAllocator:
    """A ``trt.IOutputAllocator`` for outputs whose shape depends on the data (NonZero and the like).

    TensorRT calls ``reallocate_output_async`` with the size it needs (grow-only buffer per tensor, from
    ``pool``) and ``notify_shape`` with the final shape once known.
    """
    base = trt.IOutputAllocator  # type: ignore[attr-defined]

    class _PoolOutputAllocator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.buffers: dict[str, Buffer] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output_async(self, name: str, memory: object, size: int, alignment: int,
                                    stream: int) -> int:
            buf = self.buffers.get(name)
            if buf is None or int(buf.size) < int(size):
                s = streams(int(stream))
                if buf is not None:
                    buf.close(s)
                buf = pool.allocate(max(int(size), 1), s)
                self.buffers[name] = buf
            return int(buf.handle)

        def notify_shape(self, name: str, shape: object) -> None:
            self.shapes[name] = tuple(int(d) for d in shape)  # type: ignore[attr-defined]

    made: OutputAllocator = _PoolOutputAllocator()
    return made
