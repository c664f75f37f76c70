"""The lean NumPy path: NumPy in and out, when nothing changed since the last call.

A :class:`~trtkit.runtime.context.Context` makes a :class:`HostPlan` after a NumPy call that passed every check:
the input shapes and dtypes it was validated for, the device buffers bound and the pinned staging buffers used.
The next call with arrays of the same names, dtypes and shapes (C-contiguous, in pageable memory) runs the plan:
no ``set_input_shape``, no ``set_tensor_address``, no ``infer_shapes`` and none of the Python work that decides
them, only the copies through pinned memory, ``execute_async_v3`` and one stream synchronization, as NVIDIA's
Python samples do. Anything else (another shape, a pinned array, an unknown name) goes through the full path,
which validates it and makes a new plan. The plan is tied to the context's binding generation: a rebind,
reallocation, shape or profile switch, or stream switch invalidates it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from trtkit.runtime.memory.streams import PARALLEL_COPY_MIN

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np
    from numpy.typing import NDArray

    from trtkit.profiles import Shape
    from trtkit.runtime.tensors import ArrayInfo, TensorSpec

__all__ = ["HOST_PLAN_MAX_BYTES", "HostPlan", "HostTensor", "make_plan"]

HOST_PLAN_MAX_BYTES: Final = PARALLEL_COPY_MIN
"""Tensors at least this large take the full path (its parallel host copies and pinned outputs pay off there)."""


@dataclass(frozen=True, slots=True)
class HostTensor:
    """One tensor of a plan: where it lives on the device and its pinned staging view (same shape and dtype)."""

    name: str
    dtype: np.dtype[np.generic]
    shape: Shape
    staging: NDArray[np.generic]
    staging_ptr: int
    device_ptr: int
    nbytes: int


@dataclass(frozen=True, slots=True)
class HostPlan:
    """What the last validated NumPy call bound, valid while the context's binding generation is ``generation``."""

    generation: int
    single: str | None
    """The input's name when the engine has one input (a bare array is accepted), else None."""
    inputs: tuple[HostTensor, ...]
    outputs: tuple[HostTensor, ...]


def make_plan(generation: int, in_names: Sequence[str], infos: Mapping[str, ArrayInfo],
              in_dtypes: Mapping[str, np.dtype[np.generic]], outputs: Sequence[TensorSpec],
              out_dtypes: Sequence[np.dtype[np.generic]], out_shapes: Sequence[Shape | None],
              out_nbytes: Sequence[int], staging: Mapping[str, tuple[object, NDArray[np.uint8]]],
              addresses: Mapping[str, int]) -> HostPlan | None:
    """The plan that repeats a NumPy call that just passed the full path, or None when one of its tensors is
    not a small pageable NumPy array staged through pinned memory (``staging``: the context's buffers by name,
    outputs as ``"out:NAME"``; ``addresses``: the device addresses bound)."""
    import numpy as np

    def tensor(name: str, key: str, dtype: np.dtype[np.generic], shape: Shape, nbytes: int) -> HostTensor | None:
        entry = staging.get(key)
        if entry is None or nbytes >= HOST_PLAN_MAX_BYTES or name not in addresses:
            return None
        pin = entry[1]
        return HostTensor(name, dtype, tuple(shape), pin[:nbytes].view(dtype).reshape(shape), int(pin.ctypes.data),
                          addresses[name], int(nbytes))

    ins: list[HostTensor] = []
    for name in in_names:
        info = infos[name]
        dtype = np.dtype(in_dtypes[name])
        if type(info.obj) is not np.ndarray or info.pinned or info.kind != "host":
            return None
        t = tensor(name, name, dtype, info.shape, math.prod(info.shape) * dtype.itemsize)
        if t is None:
            return None
        ins.append(t)
    outs: list[HostTensor] = []
    for spec, dtype, shape, nbytes in zip(outputs, out_dtypes, out_shapes, out_nbytes, strict=True):
        t = None if shape is None else tensor(spec.name, "out:" + spec.name, np.dtype(dtype), shape, nbytes)
        if t is None:
            return None
        outs.append(t)
    return HostPlan(generation, in_names[0] if len(in_names) == 1 else None, tuple(ins), tuple(outs))
