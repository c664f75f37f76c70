"""What a call returns: :class:`InferHandle` (an asynchronous call), :class:`StaticIO` (fixed buffers), and the
output factory type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trtkit.dtypes import DType
from trtkit.runtime.memory.arrays import DeviceArray
from trtkit.runtime.memory.streams import CudaEvent

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

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
