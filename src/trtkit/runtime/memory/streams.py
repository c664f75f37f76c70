"""Devices, streams and copies on cuda.core / cuda-bindings (imported lazily: they are heavy).

This package and :mod:`trtkit.gpu` are the only places that import cuda-python.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import threading
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Final, Protocol, SupportsInt, TypeAlias, runtime_checkable

from trtkit import deps
from trtkit.errors import CudaError
from trtkit.gpu import check, cudart

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "PARALLEL_COPY_MIN",
    "CudaStream",
    "CupyStream",
    "HasCudaStream",
    "StreamLike",
    "StreamOrder",
    "copy_async",
    "device",
    "host_copy",
    "new_stream",
    "stream_handle",
    "stream_wait_event",
    "to_stream",
    "TorchStream",
    "upload",
]

_INSTALL: Final = "pip install cuda-python"


@runtime_checkable
class CudaStream(Protocol):
    """The part of ``cuda.core.Stream`` trtkit uses."""

    @property
    def handle(self) -> SupportsInt: ...

    def sync(self) -> None: ...

    def record(self, event: object = None) -> CudaEvent: ...


class CudaEvent(Protocol):
    """The part of ``cuda.core.Event`` trtkit uses."""

    @property
    def handle(self) -> SupportsInt: ...

    @property
    def is_done(self) -> bool: ...

    def sync(self) -> None: ...


class CudaDevice(Protocol):
    """The part of ``cuda.core.Device`` trtkit uses."""

    def set_current(self) -> None: ...

    def create_stream(self) -> CudaStream: ...

    def sync(self) -> None: ...


class HasCudaStream(Protocol):
    """The CUDA stream protocol (cuda.core, CuPy >= 13): ``__cuda_stream__() -> (version, handle)``."""

    def __cuda_stream__(self) -> tuple[int, int]: ...


class TorchStream(Protocol):
    """A PyTorch ``torch.cuda.Stream``: its handle is ``.cuda_stream``."""

    @property
    def cuda_stream(self) -> int: ...


class CupyStream(Protocol):
    """A CuPy ``cupy.cuda.Stream`` (before CuPy 13): its handle is ``.ptr``."""

    @property
    def ptr(self) -> int: ...


StreamLike: TypeAlias = "CudaStream | HasCudaStream | TorchStream | CupyStream | int"
"""A cuda.core ``Stream``, an object with ``__cuda_stream__`` (cuda.core, CuPy >= 13), a PyTorch stream
(``.cuda_stream``), a CuPy stream (``.ptr``) or a raw ``cudaStream_t`` as int."""


@functools.cache
def core() -> ModuleType:
    """``cuda.core``, or DependencyError naming the package to install."""
    return deps.require("cuda.core", purpose="running engines", install=_INSTALL)


def device(index: int) -> CudaDevice:
    """``cuda.core.Device(index)``, made current on this thread.

    Raises:
        CudaError: no driver, no GPU or no such device.
    """
    cc = core()
    try:
        dev: CudaDevice = cc.Device(index)
        dev.set_current()
    except Exception as exc:
        if isinstance(exc, CudaError):
            raise
        raise CudaError(
            f"cannot use CUDA device {index} ({type(exc).__name__}: {exc}). Engines run only on a machine with "
            "an NVIDIA GPU and driver; check nvidia-smi and the device index."
        ) from exc
    return dev


def new_stream(dev: CudaDevice) -> CudaStream:
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


def to_stream(stream: StreamLike) -> CudaStream:
    """A cuda.core ``Stream`` for any stream-like object (foreign streams are borrowed, not owned)."""
    cc = core()
    if isinstance(stream, cc.Stream):
        return stream  # type: ignore[no-any-return]
    made: CudaStream = cc.Stream.from_handle(stream_handle(stream))
    return made


_memcpy: tuple[Callable[..., tuple[object]], object, object] | None = None


def copy_async(dst: int, src: int, nbytes: int, stream: int) -> None:
    """``cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, stream)`` with addresses as ints."""
    if nbytes <= 0:
        return
    global _memcpy
    if _memcpy is None:
        rt = cudart()
        _memcpy = (rt.cudaMemcpyAsync, rt.cudaMemcpyKind.cudaMemcpyDefault, rt.cudaError_t.cudaSuccess)
    memcpy, kind, success = _memcpy  # looked up once: each attribute access on the enum makes a new object
    (err,) = memcpy(dst, src, nbytes, kind, stream)
    if err != success:
        check((err,), f"cudaMemcpyAsync({nbytes} bytes)")


def stream_wait_event(stream: int, event: int) -> None:
    """``cudaStreamWaitEvent(stream, event, 0)``."""
    rt = cudart()
    check(rt.cudaStreamWaitEvent(stream, event, 0), "cudaStreamWaitEvent")


class StreamOrder:
    """Orders a consumer stream after the work queued so far on a producer stream, with one reusable event.

    What DLPack's ``__dlpack__(stream=...)`` asks the producer to do, done here without the producer's help
    (PyTorch's own export costs about 15 us per tensor). Re-recording the event is safe: ``cudaStreamWaitEvent``
    waits for the event's state at the time of the call.
    """

    def __init__(self) -> None:
        self._event: object = None
        self._calls: tuple[Callable[..., tuple[object]], Callable[..., tuple[object]], object] | None = None

    def after(self, consumer: int, producer: int) -> None:
        rt = cudart()
        if self._event is None:
            self._event = check(rt.cudaEventCreateWithFlags(rt.cudaEventDisableTiming), "cudaEventCreateWithFlags")
            self._calls = (rt.cudaEventRecord, rt.cudaStreamWaitEvent, rt.cudaError_t.cudaSuccess)
        assert self._calls is not None
        record, wait, success = self._calls
        result = record(self._event, producer)
        if result[0] != success:
            check(result, "cudaEventRecord")
        result = wait(consumer, self._event, 0)
        if result[0] != success:
            check(result, "cudaStreamWaitEvent")

    def close(self) -> None:
        if self._event is not None:
            cudart().cudaEventDestroy(self._event)
            self._event = None


# ---- host copies -----------------------------------------------------------------------------------------


PARALLEL_COPY_MIN: Final = 16 << 20
"""Host copies at least this large are split over several threads (one thread reaches about a third of the
memory bandwidth; the driver's own staging of pageable memory is slower still)."""
_copy_pool: concurrent.futures.ThreadPoolExecutor | None = None
_copy_workers = 1
_copy_pool_lock = threading.Lock()  # two threads may make their first large copy at once


def host_copy(dst: NDArray[np.generic], src: NDArray[np.generic]) -> None:
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
            _copy_workers = max(2, min(8, (os.cpu_count() or 2) // 2))
            _copy_pool = concurrent.futures.ThreadPoolExecutor(_copy_workers, thread_name_prefix="trtkit-copy")
        pool, parts = _copy_pool, _copy_workers
    step = -(-n // parts)
    step += (-step) % 4096
    futures = [pool.submit(np.copyto, d[i:i + step], s[i:i + step]) for i in range(0, n, step)]
    for f in futures:
        f.result()


def upload(dst: int, src: NDArray[np.generic], staging: NDArray[np.uint8] | None, stream: int) -> None:
    """Copy host array ``src`` to device address ``dst`` on ``stream``: directly when ``staging`` is None
    (``src`` is pinned), else through the pinned ``staging`` bytes (which must hold ``src``)."""
    nbytes = int(src.nbytes)
    if staging is None:
        copy_async(dst, src.ctypes.data, nbytes, stream)
        return
    host_copy(staging[:nbytes], src)
    copy_async(dst, staging.ctypes.data, nbytes, stream)
