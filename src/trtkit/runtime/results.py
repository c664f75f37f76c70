"""What a call returns: :class:`InferHandle` (an asynchronous call), :class:`StaticIO` (fixed buffers), and the
output factory type."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trtkit import dtypes
from trtkit.dtypes import DType
from trtkit.runtime.memory.arrays import DeviceArray
from trtkit.runtime.memory.streams import CudaEvent, CudaStream, copy_async, stream_handle

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from trtkit.profiles import Shape
    from trtkit.runtime.memory.pools import DevicePool, PinnedPool
    from trtkit.runtime.tensors import TensorSpec

__all__ = ["InferHandle", "OutputFactory", "Outputs", "StaticIO"]

OutputFactory = Callable[[str, tuple[int, ...], DType], tuple[object, int]]
"""``f(name, shape, dtype) -> (array, device_pointer)``: makes a contiguous output array of that shape and dtype
on the engine's device, for :meth:`Context.infer`."""
Outputs = dict[str, object]


@dataclass
class StaticIO:
    """Device buffers bound once for fixed shapes (benchmarks, raw loops), with pinned host mirrors."""

    inputs: dict[str, DeviceArray]
    outputs: dict[str, DeviceArray]
    host_inputs: dict[str, NDArray[np.generic]]
    host_outputs: dict[str, NDArray[np.generic]]

    @classmethod
    def bind(cls, inputs: Sequence[TensorSpec], shapes: Sequence[Shape], in_dtypes: Mapping[str, np.dtype[np.generic]],
             outputs: Sequence[TensorSpec], out_shapes: Sequence[Shape | None], out_nbytes: Sequence[int],
             out_dtypes: Sequence[np.dtype[np.generic]], pool: DevicePool, pinned: PinnedPool, stream: CudaStream,
             bind: Callable[[str, int], None], seed: int) -> StaticIO:
        """Allocate device buffers for ``shapes`` (inputs filled with seeded random data, uploaded on
        ``stream``) and pinned host mirrors, binding each through ``bind(name, address)``."""
        import numpy as np

        rng = np.random.default_rng(seed)
        io = cls({}, {}, {}, {})
        handle = stream_handle(stream)
        for spec, shape in zip(inputs, shapes, strict=True):
            npd = in_dtypes[spec.name]
            host = pinned.empty(shape, npd, stream)
            host[...] = dtypes.random_array(npd, shape, rng)
            arr = DeviceArray(pool.allocate(int(host.nbytes), stream), shape, npd, stream)
            copy_async(arr.ptr, host.ctypes.data, int(host.nbytes), handle)
            bind(spec.name, arr.ptr)
            io.inputs[spec.name], io.host_inputs[spec.name] = arr, host
        for spec, oshape, nbytes, npd in zip(outputs, out_shapes, out_nbytes, out_dtypes, strict=True):
            assert oshape is not None
            arr = DeviceArray(pool.allocate(nbytes, stream), oshape, npd, stream)
            bind(spec.name, arr.ptr)
            io.outputs[spec.name] = arr
            io.host_outputs[spec.name] = pinned.empty(oshape, npd, stream)
        return io


class InferHandle:
    """The result of :meth:`Context.infer_async`: ``wait()`` returns the outputs."""

    def __init__(self, event: CudaEvent, outputs: Outputs, keep: object = None) -> None:
        self._event = event
        self._outputs = outputs
        self._keep = keep

    def done(self) -> bool:
        return bool(self._event.is_done)

    def wait(self) -> Outputs:
        self._event.sync()
        self._keep = None
        return self._outputs
