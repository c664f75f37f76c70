"""Device and pinned host memory on cuda.core: stream-ordered pools, streams, copies and array views.

This module and :mod:`trtkit.gpu` are the only ones that import cuda-python (lazily).

* :class:`DevicePool`: a stream-ordered device pool (``cuda.core.DeviceMemoryResource`` owning its own pool);
  allocations are freed in stream order and the pool keeps freed memory cached (release threshold = max),
  so steady-state calls reuse memory without asking the driver. :meth:`DevicePool.stats` reports bytes in
  use, reserved and the high-water mark; :meth:`DevicePool.release` trims cached memory.
* :class:`PinnedPool`: page-locked host memory for staging copies and for arrays users fill directly
  (``cuda.core.PinnedMemoryResource``, falling back to ``LegacyPinnedMemoryResource`` where the device has no
  host memory pools).
* :func:`make_gpu_allocator`: a ``trt.IGpuAsyncAllocator`` that serves TensorRT's scratch allocations from a
  :class:`DevicePool`.
* :func:`view_device_array`: a zero-copy view of any CUDA array (DLPack or ``__cuda_array_interface__``).

Ownership: every :class:`cuda.core.Buffer` returned here owns its memory and frees it, in stream order, on
``close(stream)`` or when garbage collected.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from trtkit.errors import CudaError, DependencyError

__all__ = [
    "DeviceArray",
    "DevicePool",
    "PinnedPool",
    "PoolStats",
    "StreamLike",
    "copy_async",
    "device",
    "make_gpu_allocator",
    "new_stream",
    "stream_handle",
    "to_stream",
    "view_device_array",
]

StreamLike = Any
"""A cuda.core ``Stream``, an object with ``__cuda_stream__`` (cuda.core, CuPy >= 13), a PyTorch stream
(``.cuda_stream``), a CuPy stream (``.ptr``) or a raw ``cudaStream_t`` as int."""

_INSTALL: Final = "pip install cuda-python"
_MAX_U64: Final = (1 << 64) - 1


@functools.cache
def _core() -> Any:
    try:
        import cuda.core as core
    except ImportError as exc:  # pragma: no cover - cuda-core is a dependency
        raise DependencyError(f"cuda-core is required to run engines: {_INSTALL} ({exc})") from exc
    return core


@functools.cache
def _rt() -> Any:
    from trtkit.gpu import cudart

    return cudart()


def _check(result: Any, what: str) -> Any:
    from trtkit.gpu import check

    return check(result, what)


def device(index: int) -> Any:
    """``cuda.core.Device(index)``, made current on this thread.

    Raises:
        CudaError: no driver, no GPU or no such device.
    """
    core = _core()
    try:
        dev = core.Device(index)
        dev.set_current()
    except Exception as exc:
        if isinstance(exc, CudaError):
            raise
        raise CudaError(
            f"cannot use CUDA device {index} ({type(exc).__name__}: {exc}). Engines run only on a machine with "
            "an NVIDIA GPU and driver; check nvidia-smi and the device index."
        ) from exc
    return dev


def new_stream(dev: Any) -> Any:
    """A new non-blocking stream on ``dev`` (never the legacy default stream)."""
    return dev.create_stream()


def stream_handle(stream: StreamLike) -> int:
    """The ``cudaStream_t`` of any stream-like object, as int."""
    if isinstance(stream, int):
        return stream
    proto = getattr(stream, "__cuda_stream__", None)
    if proto is not None:
        return int(proto()[1])
    for attr in ("cuda_stream", "ptr", "handle"):
        value = getattr(stream, attr, None)
        if value is not None:
            return int(value)
    raise TypeError(
        f"cannot use {type(stream).__name__} as a CUDA stream; pass a cuda.core Stream, a PyTorch or CuPy "
        "stream, or a cudaStream_t as int"
    )


def to_stream(stream: StreamLike) -> Any:
    """A cuda.core ``Stream`` for any stream-like object (foreign streams are borrowed, not owned)."""
    core = _core()
    if isinstance(stream, core.Stream):
        return stream
    return core.Stream.from_handle(stream_handle(stream))


# ---- pools -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolStats:
    """Bytes a pool holds. ``allocations`` counts every allocation trtkit asked the pool for."""

    in_use: int
    reserved: int
    high_water: int
    reserved_high_water: int
    allocations: int

    def to_dict(self) -> dict[str, int]:
        return {
            "in_use": self.in_use,
            "reserved": self.reserved,
            "high_water": self.high_water,
            "reserved_high_water": self.reserved_high_water,
            "allocations": self.allocations,
        }


class DevicePool:
    """A stream-ordered device memory pool owned by trtkit, on one device.

    ``allocate(n, stream)`` returns a ``cuda.core.Buffer``; ``buffer.close(stream)`` frees it in stream order.
    Freed memory stays reserved for reuse until :meth:`release`.
    """

    def __init__(self, device_index: int = 0, *, max_size: int = 0) -> None:
        core = _core()
        self.device_index = device_index
        self.device = device(device_index)
        self._mr = core.DeviceMemoryResource(
            self.device, core.DeviceMemoryResourceOptions(max_size=max_size)
        )
        try:
            self._mr.attributes.release_threshold = _MAX_U64
        except Exception:  # pragma: no cover - attribute read-only on some versions
            self._set_release_threshold(_MAX_U64)
        self._count = 0
        self._lock = threading.Lock()

    def _set_release_threshold(self, value: int) -> None:
        from cuda.bindings import driver

        attr = driver.CUmemPool_attribute.CU_MEMPOOL_ATTR_RELEASE_THRESHOLD
        _check(driver.cuMemPoolSetAttribute(self._mr.handle, attr, driver.cuuint64_t(value)),
               "cuMemPoolSetAttribute")

    @property
    def resource(self) -> Any:
        """The underlying ``cuda.core.DeviceMemoryResource``."""
        return self._mr

    def allocate(self, nbytes: int, stream: Any) -> Any:
        """A buffer of ``nbytes`` (at least 1) allocated in stream order on ``stream`` (a cuda.core Stream)."""
        self._count += 1
        try:
            return self._mr.allocate(max(1, nbytes), stream=stream)
        except Exception as exc:
            raise CudaError(
                f"could not allocate {nbytes} bytes on CUDA device {self.device_index} ({exc}); "
                f"pool holds {self.stats().reserved} bytes. Free memory or use smaller shapes."
            ) from exc

    def stats(self) -> PoolStats:
        """Current statistics (bytes in use, reserved, high-water marks, allocation count)."""
        a = self._mr.attributes
        return PoolStats(
            in_use=int(a.used_mem_current),
            reserved=int(a.reserved_mem_current),
            high_water=int(a.used_mem_high),
            reserved_high_water=int(a.reserved_mem_high),
            allocations=self._count,
        )

    def release(self, keep_bytes: int = 0) -> None:
        """Return cached (freed but reserved) memory to the driver, keeping at most ``keep_bytes``.

        Synchronizes the device first so pending stream-ordered frees have completed.
        """
        from cuda.bindings import driver

        self.device.sync()
        _check(driver.cuMemPoolTrimTo(self._mr.handle, keep_bytes), "cuMemPoolTrimTo")

    def close(self) -> None:
        self._mr.close()


class PinnedPool:
    """Page-locked host memory: a stream-ordered pinned pool, or legacy ``cudaMallocHost`` as fallback."""

    def __init__(self, device_index: int = 0, *, stream_ordered: bool | None = None) -> None:
        import os

        core = _core()
        self.device = device(device_index)
        self.stream_ordered = False
        mr: Any = None
        if stream_ordered is None:
            # Measured on an H200: copies from cuda.core's stream-ordered pinned pool ran at pageable speed
            # (7.5 GB/s H2D) while cudaMallocHost memory reached 55 GB/s, so the legacy allocator (with a
            # free list below) is the default; TRTKIT_PINNED_POOL=1 selects the pool.
            stream_ordered = os.environ.get("TRTKIT_PINNED_POOL", "0") == "1"
        try:
            if stream_ordered and bool(self.device.properties.host_memory_pools_supported):
                mr = core.PinnedMemoryResource(core.PinnedMemoryResourceOptions())
                self.stream_ordered = True
        except Exception:  # pragma: no cover - depends on driver support
            mr = None
        if mr is None:
            mr = core.LegacyPinnedMemoryResource()
        self._mr = mr
        if self.stream_ordered:
            with contextlib.suppress(Exception):
                self._mr.attributes.release_threshold = _MAX_U64
        self._count = 0
        self._free: dict[int, list[Any]] = {}
        self._free_lock = threading.Lock()
        self.cached_bytes = 0

    @property
    def kind(self) -> str:
        return "PinnedMemoryResource" if self.stream_ordered else "LegacyPinnedMemoryResource"

    @staticmethod
    def _bucket(nbytes: int) -> int:
        n = max(nbytes, 256)
        return 1 << (n - 1).bit_length() if n <= (4 << 20) else -(-n // (2 << 20)) * (2 << 20)

    def _release(self, size: int, buf: Any) -> None:
        with self._free_lock:
            self._free.setdefault(size, []).append(buf)
            self.cached_bytes += size

    def trim(self) -> None:
        """Free every cached pinned buffer."""
        with self._free_lock:
            self._free.clear()
            self.cached_bytes = 0

    def allocate(self, nbytes: int, stream: Any) -> Any:
        """A pinned host buffer of ``nbytes`` (stream-ordered when the pool supports it)."""
        self._count += 1
        if not self.stream_ordered:
            size = self._bucket(nbytes)
            with self._free_lock:
                cached = self._free.get(size)
                if cached:
                    self.cached_bytes -= size
                    return cached.pop()
            try:
                return self._mr.allocate(size)
            except Exception as exc:
                raise CudaError(f"could not allocate {nbytes} bytes of pinned host memory ({exc})") from exc
        try:
            return self._mr.allocate(max(1, nbytes), stream=stream)
        except TypeError:  # legacy resource on versions without a stream keyword
            return self._mr.allocate(max(1, nbytes))
        except Exception as exc:
            raise CudaError(f"could not allocate {nbytes} bytes of pinned host memory ({exc})") from exc

    def stats(self) -> PoolStats | None:
        """Statistics for stream-ordered pinned pools; None for the legacy allocator."""
        if not self.stream_ordered:
            return None
        a = self._mr.attributes
        return PoolStats(int(a.used_mem_current), int(a.reserved_mem_current), int(a.used_mem_high),
                         int(a.reserved_mem_high), self._count)

    def empty(self, shape: tuple[int, ...], dtype: Any, stream: Any) -> Any:
        """A NumPy array in pinned memory. The array keeps its buffer alive; the memory returns to the pool
        when the array is garbage collected."""
        import numpy as np

        dt = np.dtype(dtype)
        count = 1
        for d in shape:
            count *= int(d)
        buf = self.allocate(count * dt.itemsize, stream)
        arr = host_array(buf, shape, dt)
        if not self.stream_ordered:  # back to the free list when the array dies
            import weakref

            raw = raw_owner(arr)
            raw._trtkit_owner = True  # the finalizer below holds the buffer now
            weakref.finalize(raw, self._release, int(buf.size), buf)
        return arr


def find_owner(arr: Any) -> Any:
    """The ctypes object under an array made by :func:`host_array` (it carries ``_trtkit_owner``), or None."""
    base = arr
    for _ in range(4):
        base = getattr(base, "base", None)
        if base is None:
            return None
        if hasattr(base, "_trtkit_owner"):
            return base
    return None


def raw_owner(arr: Any) -> Any:
    """Like :func:`find_owner`, but raises ValueError for an array trtkit did not allocate."""
    owner = find_owner(arr)
    if owner is None:
        raise ValueError("not an array allocated by trtkit")
    return owner


def host_array(buf: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """A NumPy array viewing host-accessible ``buf`` (kept alive by the array)."""
    import numpy as np

    dt = np.dtype(dtype)
    count = 1
    for d in shape:
        count *= int(d)
    nbytes = count * dt.itemsize
    raw = (ctypes.c_byte * max(1, int(buf.size))).from_address(int(buf.handle))
    raw._trtkit_owner = buf  # type: ignore[attr-defined]  # keeps the pinned buffer alive with the array
    return np.frombuffer(raw, dtype=dt, count=count if nbytes else 0).reshape(shape)  # type: ignore[call-overload]


# ---- copies ----------------------------------------------------------------------------------------------


PARALLEL_COPY_MIN: Final = 16 << 20
"""Host copies at least this large are split over several threads (one thread reaches about a third of the
memory bandwidth; the driver's own staging of pageable memory is slower still)."""
_copy_pool: Any = None
_copy_workers = 1
_copy_pool_lock = threading.Lock()


def host_copy(dst: Any, src: Any) -> None:
    """Copy between two C-contiguous NumPy arrays of equal size in bytes, in parallel when large."""
    import numpy as np

    d = dst.reshape(-1).view(np.uint8)
    s = src.reshape(-1).view(np.uint8)
    n = int(d.nbytes)
    if n < PARALLEL_COPY_MIN:
        np.copyto(d, s)
        return
    global _copy_pool, _copy_workers
    with _copy_pool_lock:
        if _copy_pool is None:
            import concurrent.futures
            import os

            _copy_workers = max(2, min(8, (os.cpu_count() or 2) // 2))
            _copy_pool = concurrent.futures.ThreadPoolExecutor(_copy_workers, thread_name_prefix="trtkit-copy")
        pool, parts = _copy_pool, _copy_workers
    step = -(-n // parts)
    step += (-step) % 4096
    futures = [pool.submit(np.copyto, d[i:i + step], s[i:i + step]) for i in range(0, n, step)]
    for f in futures:
        f.result()


def copy_async(dst: int, src: int, nbytes: int, stream: int) -> None:
    """``cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, stream)`` with addresses as ints."""
    if nbytes <= 0:
        return
    rt = _rt()
    (err,) = rt.cudaMemcpyAsync(dst, src, nbytes, rt.cudaMemcpyKind.cudaMemcpyDefault, stream)
    if int(err) != 0:
        _check((err,), f"cudaMemcpyAsync({nbytes} bytes)")


def stream_wait_event(stream: int, event: int) -> None:
    rt = _rt()
    _check(rt.cudaStreamWaitEvent(stream, event, 0), "cudaStreamWaitEvent")


class StreamOrder:
    """Orders a consumer stream after the work queued so far on a producer stream, with one reusable event.

    What DLPack's ``__dlpack__(stream=...)`` asks the producer to do, done here without the producer's help
    (PyTorch's own export costs about 15 us per tensor). Re-recording the event is safe: ``cudaStreamWaitEvent``
    waits for the event's state at the time of the call.
    """

    def __init__(self) -> None:
        self._event: Any = None

    def after(self, consumer: int, producer: int) -> None:
        rt = _rt()
        if self._event is None:
            self._event = _check(rt.cudaEventCreateWithFlags(rt.cudaEventDisableTiming), "cudaEventCreateWithFlags")
        _check(rt.cudaEventRecord(self._event, producer), "cudaEventRecord")
        _check(rt.cudaStreamWaitEvent(consumer, self._event, 0), "cudaStreamWaitEvent")

    def close(self) -> None:
        if self._event is not None:
            _rt().cudaEventDestroy(self._event)
            self._event = None


def is_capturing(stream: int) -> bool:
    rt = _rt()
    status = _check(rt.cudaStreamIsCapturing(stream), "cudaStreamIsCapturing")
    return int(status) != int(rt.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone)


# ---- device array views ----------------------------------------------------------------------------------


@dataclass
class ArrayView:
    """Where a CUDA array lives and how it is laid out."""

    ptr: int
    shape: tuple[int, ...]
    dtype: Any
    """NumPy dtype, or None when NumPy has no name for it."""
    strides: tuple[int, ...] | None
    """In elements; None means C-contiguous."""
    device_id: int
    is_device: bool
    owner: Any


def view_device_array(obj: Any, stream: int | None) -> ArrayView:
    """A zero-copy view of a CUDA array (DLPack first, then ``__cuda_array_interface__``).

    With ``stream`` given, the producer's pending work is ordered before ``stream`` (DLPack: the producer
    does it in ``__dlpack__(stream=...)``; CAI: an event wait on the producer's stream).
    """
    from cuda.core.utils import StridedMemoryView

    sp = -1 if stream is None else stream
    try:
        v = StridedMemoryView.from_any_interface(obj, stream_ptr=sp)
    except Exception as exc:
        raise TypeError(f"cannot view {type(obj).__name__} as a CUDA array: {exc}") from exc
    strides = v.strides
    return ArrayView(
        ptr=int(v.ptr),
        shape=tuple(int(d) for d in v.shape),
        dtype=v.dtype,
        strides=None if strides is None else tuple(int(s) for s in strides),
        device_id=int(v.device_id),
        is_device=bool(v.is_device_accessible) and int(v.device_id) >= 0,
        owner=v,
    )


class DeviceArray:
    """A device tensor trtkit returns: pool memory exportable by DLPack and ``__cuda_array_interface__``.

    The data is ready once the producing stream (``.stream``) reaches this point; DLPack and CAI consumers
    are ordered after it. Memory returns to the pool, in stream order, when the array is garbage collected.
    """

    __slots__ = ("_buffer", "_view", "dtype", "shape", "stream")

    def __init__(self, buffer: Any, shape: tuple[int, ...], dtype: Any, stream: Any) -> None:
        self._buffer = buffer
        self.shape = shape
        self.dtype = dtype
        self.stream = stream
        self._view: Any = None  # made on first export: most results are consumed without one

    @property
    def ptr(self) -> int:
        return int(self._buffer.handle)

    @property
    def nbytes(self) -> int:
        n = int(self.dtype.itemsize)
        for d in self.shape:
            n *= d
        return n

    @property
    def buffer(self) -> Any:
        return self._buffer

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, device={self._buffer.device_id})"

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, int(self._buffer.device_id))

    def __dlpack__(self, *, stream: Any = None, **kwargs: Any) -> Any:
        own = stream_handle(self.stream)
        if stream is not None and stream != -1 and int(stream) != own:
            consumer = 0 if stream in (1, 2) else int(stream)
            ev = self.stream.record()
            stream_wait_event(consumer, int(ev.handle))
        if self._view is None:
            from cuda.core.utils import StridedMemoryView

            self._view = StridedMemoryView.from_buffer(self._buffer, self.shape, dtype=self.dtype)
        return self._view.__dlpack__(stream=-1, **kwargs) if kwargs else self._view.__dlpack__(stream=-1)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self.ptr, False),
            "strides": None,
            "version": 3,
            "stream": stream_handle(self.stream) or None,
        }

    def numpy(self) -> Any:
        """Copy to a new NumPy array (waits for the producing stream)."""
        import numpy as np

        out = np.empty(self.shape, self.dtype)
        handle = stream_handle(self.stream)
        copy_async(out.ctypes.data, self.ptr, self.nbytes, handle)
        self.stream.sync()
        return out


# ---- TensorRT's allocators -------------------------------------------------------------------------------


def _address(memory: Any) -> int:
    if isinstance(memory, int):
        return memory
    if memory is None:
        return 0
    try:
        return int(memory)
    except TypeError:
        get = ctypes.pythonapi.PyCapsule_GetPointer
        get.restype = ctypes.c_void_p
        get.argtypes = [ctypes.py_object, ctypes.c_char_p]
        return int(get(memory, None) or 0)


class _StreamCache:
    def __init__(self, fallback: Any) -> None:
        self._fallback = fallback
        self._streams: dict[int, Any] = {}

    def get(self, handle: int) -> Any:
        if handle == 0:
            return self._fallback
        s = self._streams.get(handle)
        if s is None:
            s = to_stream(handle)
            self._streams[handle] = s
        return s


def make_gpu_allocator(trt: Any, pool: DevicePool, fallback_stream: Any, *, stream_index: int) -> Any:
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
    base = trt.IGpuAsyncAllocator
    live: dict[int, Any] = {}
    lock = threading.Lock()
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
            with lock:
                live[addr] = buf
            return addr

        def deallocate_async(self, memory: Any, stream: int) -> bool:
            addr = _address(memory)
            with lock:
                buf = live.pop(addr, None)
            if buf is None:
                return addr == 0
            buf.close(streams.get(int(stream)))
            return True

    return _PoolAllocator()


def make_output_allocator(trt: Any, pool: DevicePool, streams: Callable[[int], Any]) -> Any:
    """A ``trt.IOutputAllocator`` for outputs whose shape depends on the data (NonZero and the like).

    TensorRT calls ``reallocate_output_async`` with the size it needs (grow-only buffer per tensor, from
    ``pool``) and ``notify_shape`` with the final shape once known.
    """
    base = trt.IOutputAllocator

    class _PoolOutputAllocator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.buffers: dict[str, Any] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output_async(self, name: str, memory: Any, size: int, alignment: int,
                                    stream: Any) -> int:
            buf = self.buffers.get(name)
            if buf is None or int(buf.size) < int(size):
                s = streams(int(stream))
                if buf is not None:
                    buf.close(s)
                buf = pool.allocate(max(int(size), 1), s)
                self.buffers[name] = buf
            return int(buf.handle)

        def notify_shape(self, name: str, shape: Any) -> None:
            self.shapes[name] = tuple(int(d) for d in shape)

    return _PoolOutputAllocator()
