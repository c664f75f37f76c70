"""Shape state of one execution context: the optimization profile, input shapes, shape-tensor values, output
shapes and, for USER_MANAGED context memory, the memory partition sized for the shapes."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trtkit.backend import Backend, ExecutionContext, LogCapture
from trtkit.errors import ExecutionError
from trtkit.profiles import Shape, format_shape
from trtkit.runtime.io import OutputMaker
from trtkit.runtime.memory.allocators import OutputAllocator, make_output_allocator
from trtkit.runtime.memory.arrays import Buffer, DeviceArray
from trtkit.runtime.memory.pools import DevicePool
from trtkit.runtime.memory.streams import CudaStream, copy_async
from trtkit.runtime.results import OutputFactory
from trtkit.runtime.tensors import TensorSpec, np_dtype, select_profile

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["ShapeState", "ShapeTracker"]


@dataclass
class ShapeState:
    """What a set of input shapes fixes: the profile, each output's shape (None: data-dependent) and bytes."""

    profile: int
    out_shapes: tuple[Shape | None, ...]
    out_nbytes: tuple[int, ...]


def _describe_shapes(shapes: Mapping[str, Shape], values: Mapping[str, Shape]) -> str:
    return ", ".join([f"{n} {format_shape(s)}" for n, s in shapes.items()]
                     + [f"{n} values {list(v)}" for n, v in values.items()])


class ShapeTracker:
    """Makes an execution context ready for the shapes of a call; remembers what was set last."""

    def __init__(self, backend: Backend, ctx: ExecutionContext, inputs: Sequence[TensorSpec],
                 outputs: Sequence[TensorSpec], out_itemsize: Sequence[int],
                 host_bufs: Mapping[str, NDArray[np.generic]], pool: DevicePool,
                 streams: Callable[[int], CudaStream], *, user_memory: bool) -> None:
        self._be = backend
        self._ctx = ctx
        self._inputs = tuple(inputs)
        self._outputs = tuple(outputs)
        self._in_names = tuple(s.name for s in self._inputs)
        self._out_itemsize = tuple(out_itemsize)
        self._host_in = tuple(host_bufs)
        self._host_bufs = host_bufs
        self._pool = pool
        self._streams = streams
        self.user_memory = user_memory
        self.profile = -1
        self.key: tuple[Shape, ...] | None = None
        """Input shapes then shape-tensor values of the last call."""
        self.state: ShapeState | None = None
        self.dds: tuple[str, ...] = ()
        """Outputs with data-dependent shapes at the current shapes."""
        self.out_alloc: OutputAllocator | None = None
        self.memory: Buffer | None = None
        """USER_MANAGED context memory."""
        self._memory_size = 0
        self._set_shapes: dict[str, Shape] = {}
        self._states: dict[tuple[Shape, ...], ShapeState] = {}

    def fail(self, what: str, cap: LogCapture | None = None) -> ExecutionError:
        return ExecutionError(f"{self._be.label}: {what}", tensorrt_log=cap.lines if cap is not None else ())

    def update(self, full: tuple[Shape, ...], key: tuple[Shape, ...], values: tuple[Shape, ...],
               stream: CudaStream, handle: int, bind: Callable[[str, int], None]) -> tuple[ShapeState, bool]:
        """Set input shapes ``key`` (in input order) and shape-tensor ``values`` (in host-input order);
        ``full`` is both; ``handle`` is ``stream``'s. Returns the state and whether the profile changed.

        Order, as TensorRT requires: the profile, the input shapes, the shape-tensor host addresses
        (``infer_shapes`` counts a shape tensor unspecified until its address is set), ``infer_shapes``; then,
        for USER_MANAGED context memory, ``update_device_memory_size_for_shapes`` and ``set_device_memory`` after
        every shape change (the header: the memory partition is invalidated otherwise).
        """
        # Forget the last call's shapes first: if this update fails halfway, the context (and the shape-tensor
        # host buffers) no longer hold them, and the next call must set them again rather than skip.
        self.key = self.state = None
        shapes = dict(zip(self._in_names, key, strict=True))
        given = dict(zip(self._host_in, values, strict=True))
        state = self._states.get(full)
        profile = state.profile if state else select_profile(self._inputs, shapes, prefer=self.profile,
                                                            values=given)
        ctx = self._ctx
        switched = False
        with self._be.capture() as cap:
            if profile != self.profile:
                if not ctx.set_optimization_profile_async(profile, handle):
                    raise self.fail(f"set_optimization_profile_async({profile}) failed", cap)
                self.profile = profile
                self._set_shapes.clear()
                switched = True
            for name, shape in shapes.items():
                if self._set_shapes.get(name) != shape:
                    if not ctx.set_input_shape(name, shape):
                        self._set_shapes.pop(name, None)
                        raise self.fail(f"set_input_shape({name!r}, {format_shape(shape)}) was rejected "
                                        f"(profile {profile})", cap)
                    self._set_shapes[name] = shape
            for name, vals in given.items():
                buf = self._host_bufs[name]
                buf[:len(vals)] = vals
                bind(name, int(buf.ctypes.data))
            try:
                missing = ctx.infer_shapes()
            except RuntimeError as exc:
                raise self.fail(f"infer_shapes() failed for shapes {_describe_shapes(shapes, given)}: {exc}",
                                cap) from exc
            if missing:
                raise self.fail(f"infer_shapes() left input shapes unspecified: {list(missing)}", cap)
            if state is None:
                outs: list[Shape | None] = []
                nbytes: list[int] = []
                for spec, itemsize in zip(self._outputs, self._out_itemsize, strict=True):
                    s = tuple(int(d) for d in ctx.get_tensor_shape(spec.name))
                    dd = any(d < 0 for d in s)
                    outs.append(None if dd else s)
                    nbytes.append(0 if dd else math.prod(s) * itemsize)
                state = ShapeState(profile, tuple(outs), tuple(nbytes))
                self._states[full] = state
            if self.user_memory:
                self._update_device_memory(cap, stream)
        self.dds = tuple(s.name for s, o in zip(self._outputs, state.out_shapes, strict=True) if o is None)
        if self.dds:
            self._ensure_output_allocator()
        self.key = full
        self.state = state
        return state, switched

    def _update_device_memory(self, cap: LogCapture, stream: CudaStream) -> None:
        ctx = self._ctx
        size = int(ctx.update_device_memory_size_for_shapes())
        if size == 0 and cap.errors:
            raise self.fail("update_device_memory_size_for_shapes() failed", cap)
        if self.memory is None or self._memory_size < size:
            if self.memory is not None:
                self.memory.close(stream)
            self._memory_size = max(size, 256)
            self.memory = self._pool.allocate(self._memory_size, stream)
        ctx.set_device_memory(int(self.memory.handle), self._memory_size)

    def _ensure_output_allocator(self) -> None:
        if self.out_alloc is not None:
            return
        self._be.require(self._be.features.output_allocator, "data-dependent output shapes",
                         "this backend has no IOutputAllocator")
        self.out_alloc = make_output_allocator(self._be.trt, self._pool, self._streams)
        for name in self.dds:
            if not self._ctx.set_output_allocator(name, self.out_alloc):
                raise self.fail(f"set_output_allocator({name!r}) failed")

    def collect(self, result: dict[str, object], device_call: bool, stream: CudaStream, handle: int,
                factory: OutputFactory | None = None, maker: OutputMaker | None = None) -> None:
        """After the run, fill ``result`` with the outputs whose shape depends on the data: read the shape the
        allocator was told, then copy out (into the caller's family, trtkit's pool, or NumPy)."""
        stream.sync()
        alloc = self.out_alloc
        assert alloc is not None
        for spec, itemsize in zip(self._outputs, self._out_itemsize, strict=True):
            if spec.name not in alloc.buffers or result.get(spec.name) is not None:
                continue
            dds_shape: Shape | None = alloc.shapes.get(spec.name)
            if dds_shape is None:
                raise self.fail(f"TensorRT did not report the shape of data-dependent output {spec.name!r}")
            nbytes = math.prod(dds_shape) * itemsize
            src = int(alloc.buffers[spec.name].handle)
            npd = np_dtype(spec)
            if device_call and maker is not None:
                made = maker.empty(dds_shape, dtype=maker.dtypes[spec.dtype.name], **maker.options)
                copy_async(maker.pointer(made), src, nbytes, handle)
                result[spec.name] = made
            elif device_call and factory is not None:
                result[spec.name], dst = factory(spec.name, dds_shape, spec.dtype)
                copy_async(dst, src, nbytes, handle)
            elif device_call:
                buf = self._pool.allocate(nbytes, stream)
                copy_async(int(buf.handle), src, nbytes, handle)
                result[spec.name] = DeviceArray(buf, dds_shape, npd, stream)
            else:
                import numpy as np

                arr = np.empty(dds_shape, npd)
                copy_async(arr.ctypes.data, src, nbytes, handle)
                result[spec.name] = arr
        stream.sync()

    def close(self, stream: CudaStream) -> None:
        if self.memory is not None:
            self.memory.close(stream)
            self.memory = None
