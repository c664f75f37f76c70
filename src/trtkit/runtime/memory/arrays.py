"""Arrays over trtkit's memory: pinned NumPy views, zero-copy views of foreign CUDA arrays, and
:class:`DeviceArray` (device pool memory exported through DLPack and ``__cuda_array_interface__``)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, SupportsInt, cast

from trtkit.runtime.memory.streams import CudaStream, copy_async, stream_handle, stream_wait_event

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import DTypeLike, NDArray

__all__ = ["ArrayView", "Buffer", "DeviceArray", "find_owner", "host_array", "raw_owner", "view_device_array"]


class Buffer(Protocol):
    """The part of ``cuda.core.Buffer`` trtkit uses."""

    @property
    def handle(self) -> SupportsInt: ...

    @property
    def size(self) -> int: ...

    @property
    def device_id(self) -> int: ...

    def close(self, stream: object = None) -> None: ...


def find_owner(arr: object) -> object | None:
    """The ctypes object under an array made by :func:`host_array` (it carries ``_trtkit_owner``), or None."""
    base: object = arr
    for _ in range(4):
        base = getattr(base, "base", None)
        if base is None:
            return None
        if hasattr(base, "_trtkit_owner"):
            return cast(object, base)
    return None


def raw_owner(arr: object) -> object:
    """Like :func:`find_owner`, but raises ValueError for an array trtkit did not allocate."""
    owner = find_owner(arr)
    if owner is None:
        raise ValueError("not an array allocated by trtkit")
    return owner


def host_array(buf: Buffer, shape: tuple[int, ...], dtype: DTypeLike) -> NDArray[np.generic]:
    """A NumPy array viewing host-accessible ``buf`` (kept alive by the array)."""
    import numpy as np

    dt = np.dtype(dtype)
    count = 1
    for d in shape:
        count *= int(d)
    nbytes = count * dt.itemsize
    raw = (ctypes.c_byte * max(1, int(buf.size))).from_address(int(buf.handle))
    raw._trtkit_owner = buf  # type: ignore[attr-defined]  # keeps the pinned buffer alive with the array
    arr: NDArray[np.generic] = np.frombuffer(raw, dtype=dt,  # type: ignore[call-overload]
                                             count=count if nbytes else 0).reshape(shape)
    return arr


@dataclass
class ArrayView:
    """Where a CUDA array lives and how it is laid out."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype[np.generic] | None
    """NumPy dtype, or None when NumPy has no name for it."""
    strides: tuple[int, ...] | None
    """In elements; None means C-contiguous."""
    device_id: int
    is_device: bool
    owner: object


def view_device_array(obj: object, stream: int | None) -> ArrayView:
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

    def __init__(self, buffer: Buffer, shape: tuple[int, ...], dtype: np.dtype[np.generic],
                 stream: CudaStream) -> None:
        self._buffer = buffer
        self.shape = shape
        self.dtype = dtype
        self.stream = stream
        self._view: object = None  # made on first export: most results are consumed without one

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
    def buffer(self) -> Buffer:
        return self._buffer

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, device={self._buffer.device_id})"

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, int(self._buffer.device_id))

    def __dlpack__(self, *, stream: int | None = None, **kwargs: object) -> object:
        own = stream_handle(self.stream)
        if stream is not None and stream != -1 and int(stream) != own:
            consumer = 0 if stream in (1, 2) else int(stream)
            ev = self.stream.record()
            stream_wait_event(consumer, int(ev.handle))
        if self._view is None:
            from cuda.core.utils import StridedMemoryView

            self._view = StridedMemoryView.from_buffer(self._buffer, self.shape, dtype=self.dtype)
        export = self._view.__dlpack__  # type: ignore[attr-defined]
        return export(stream=-1, **kwargs) if kwargs else export(stream=-1)

    @property
    def __cuda_array_interface__(self) -> dict[str, object]:
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self.ptr, False),
            "strides": None,
            "version": 3,
            "stream": stream_handle(self.stream) or None,
        }

    def numpy(self) -> NDArray[np.generic]:
        """Copy to a new NumPy array (waits for the producing stream)."""
        import numpy as np

        out: NDArray[np.generic] = np.empty(self.shape, self.dtype)
        handle = stream_handle(self.stream)
        copy_async(out.ctypes.data, self.ptr, self.nbytes, handle)
        self.stream.sync()
        return out
