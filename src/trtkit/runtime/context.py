"""One execution context with its own stream: it binds the tensors of a call and enqueues it.

``infer`` takes the inputs described and validated by :mod:`trtkit.runtime.io`, makes the context ready for
their shapes (:mod:`trtkit.runtime.shapes`), binds outputs and inputs, copies host inputs through pinned
memory and runs ``execute_async_v3`` (or replays a CUDA graph, :mod:`trtkit.runtime.graphs`).
"""

from __future__ import annotations

import difflib
import math
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

from trtkit.backend import ExecutionContext, RtxCudaEngine
from trtkit.errors import ClosedError, ExecutionError, InputError, UnsupportedFeatureError
from trtkit.log import get_logger
from trtkit.runtime import device_path
from trtkit.runtime.bindings import Bindings, EngineParts
from trtkit.runtime.graphs import GraphCache
from trtkit.runtime.host_path import HOST_PLAN_MAX_BYTES, HostPlan, make_plan
from trtkit.runtime.io import ArrayAdapter, CallInputs, OutputMaker, check_output, prepare_inputs, wrap_results
from trtkit.runtime.memory.arrays import Buffer, DeviceArray, find_owner, raw_owner
from trtkit.runtime.memory.streams import (
    PARALLEL_COPY_MIN,
    CudaEvent,
    CudaStream,
    StreamLike,
    StreamOrder,
    copy_async,
    core,
    host_copy,
    new_stream,
    stream_handle,
    to_stream,
    upload,
)
from trtkit.runtime.results import InferHandle, OutputFactory, Outputs, StaticIO
from trtkit.runtime.shapes import ShapeState, ShapeTracker
from trtkit.runtime.tensors import TensorSpec, np_dtype, shape_tensor_values

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["Context", "EngineParts"]

_log = get_logger("runtime")
_EVENT_RING = 4

class Context(Bindings):
    """One execution context with its own stream. Calls on one context are serialized by a lock; use
    several contexts (or :meth:`LoadedEngine.infer`) for concurrent calls."""

    def __init__(self, engine: EngineParts, *, stream: StreamLike | None = None, cuda_graph: bool = False) -> None:
        self.engine = engine
        be = engine.backend
        self._be = be
        self._own_stream = stream is None
        self.stream: CudaStream = new_stream(engine._dev) if stream is None else to_stream(stream)
        self._handle = stream_handle(self.stream)
        self.user_memory = be.features.user_managed_context_memory
        strategy = be.enum("ExecutionContextAllocationStrategy", "USER_MANAGED" if self.user_memory else "STATIC")
        with be.capture() as cap:
            if be.features.runtime_config:
                # TensorRT-RTX specializes dynamic-shape kernels lazily, in the background, by default: a graph
                # captured meanwhile would hold the generic fallback kernels. EAGER specializes during the plain
                # run that precedes capture ("Optimizing TensorRT-RTX Performance": warm up or use kEAGER).
                rc = cast(RtxCudaEngine, engine._engine).create_runtime_config()
                rc.set_execution_context_allocation_strategy(strategy)
                if cuda_graph:
                    rc.dynamic_shapes_kernel_specialization_strategy = be.enum(
                        "DynamicShapesKernelSpecializationStrategy", "EAGER")
                ctx = engine._engine.create_execution_context(rc)
            else:
                ctx = engine._engine.create_execution_context(strategy)
        if ctx is None:
            raise ExecutionError(f"{be.label} could not create an execution context", tensorrt_log=cap.lines)
        self._ctx: ExecutionContext = ctx
        self.inputs = engine.inputs
        self.outputs = engine.outputs
        self._in_names = tuple(s.name for s in self.inputs)
        self._out_names = frozenset(s.name for s in self.outputs)
        self._in_specs = {s.name: s for s in self.inputs}
        self._out_np = tuple(np_dtype(s) for s in self.outputs)
        self._in_np = {s.name: np_dtype(s) for s in self.inputs}
        # Shape tensors live on the host: TensorRT reads their values on the CPU from the address bound (set
        # before infer_shapes, which counts them unspecified until then). One host buffer each, bound once.
        self._host_in = tuple(s.name for s in self.inputs if s.location == "host")
        self._dev_inputs = tuple(s for s in self.inputs if s.location != "host")
        self._shapes = ShapeTracker(be, ctx, self.inputs, self.outputs, [d.itemsize for d in self._out_np],
                                    {s.name: self._host_buffer(s) for s in self.inputs if s.location == "host"},
                                    engine.pool,
                                    lambda h: self.stream, user_memory=self.user_memory)
        self._addr: dict[str, int] = {}
        self._dev_bufs: dict[str, Buffer] = {}
        self._pin_bufs: dict[str, tuple[Buffer, NDArray[np.uint8]]] = {}
        self._lock = threading.Lock()
        self._keep: list[object] = []
        self._keep_event: CudaEvent | None = None
        self._copy_out: list[tuple[NDArray[np.generic], NDArray[np.uint8]]] = []
        self._order = StreamOrder()
        self._producers: list[int] = []
        self._pending: CudaEvent | None = None
        self.cuda_graph = cuda_graph
        self._graphs = GraphCache(be)
        self._closed = False
        # Bumped whenever a binding, buffer, shape, profile or stream changes: a HostPlan made at another
        # generation is stale.
        self._generation = 0
        self._host_plan: HostPlan | None = None
        self._device_plan: device_path.DevicePlan | None = None
        self._out_list = tuple(s.name for s in self.outputs)
        self._events: list[CudaEvent] = []
        self._event_next = 0
        self._plan_ok = not self._host_in

    def _host_buffer(self, spec: TensorSpec) -> NDArray[np.generic]:
        import numpy as np

        size = max([len(r.max) for r in spec.profiles] + [math.prod(max(d, 1) for d in spec.shape)])
        buf: NDArray[np.generic] = np.zeros(max(size, 1), self._in_np[spec.name])
        return buf

    @property
    def trt_context(self) -> ExecutionContext:
        """The underlying ``IExecutionContext``."""
        return self._ctx

    @property
    def graph_stats(self) -> dict[str, int]:
        """CUDA graphs captured, replayed, and shapes that fell back to plain launches."""
        return self._graphs.stats

    # ---- execution --------------------------------------------------------------------------------------

    def _launch(self) -> None:
        if self.cuda_graph:
            mem = self._shapes.memory
            key = (self._shapes.key, self._shapes.profile, tuple(self._addr.values()),
                   int(mem.handle) if mem is not None else 0)
            if self._graphs.launch(key, self._ctx, self.stream, not self._shapes.dds):
                return
        mark = self._be.log_mark()
        if not self._ctx.execute_async_v3(self._handle):
            raise ExecutionError(f"{self._be.label}: execute_async_v3 failed", tensorrt_log=self._be.log_since(mark))

    def _prepare(self, inputs: object, outputs: Mapping[str, object] | None, stream: StreamLike | None,
                 ordered: bool, factory: OutputFactory | None,
                 family: ArrayAdapter | None) -> tuple[Outputs, bool, CallInputs]:
        if self._closed:
            raise ClosedError("this context was closed")
        if stream is not None and stream != self._handle and stream_handle(stream) != self._handle:
            self._switch_stream(stream)
        self._producers.clear()
        # positional: this runs on every call
        call = prepare_inputs(self.inputs, inputs, family, self._handle, stream is not None, ordered,
                              self.engine.device_index, self._in_specs, self._producers)
        infos, caller, ordered, maker, _ = call
        if caller is not None and caller != self._handle:
            self._switch_stream(caller)
        key = tuple([infos[n].shape for n in self._in_names])
        values = tuple([shape_tensor_values(infos[n].obj) for n in self._host_in]) if self._host_in else ()
        state = self._ensure_shapes(key, values)
        device_call = False
        for info in infos.values():
            if info.kind == "device":
                device_call = True
                break
        # Output buffers are checked (and bound) before any input is copied: a bad call launches nothing.
        out = self._bind_outputs(state, outputs, device_call, ordered, factory, maker)
        if self._pending is not None:  # an async call may still read the pinned staging buffers
            self._pending.sync()
            self._pending = None
        refs: list[object] = []
        unaligned: list[tuple[int, int, int]] | None = None
        for spec in self._dev_inputs:  # shape tensors are bound to their host buffers by _ensure_shapes
            info = infos[spec.name]
            if info.kind == "device":
                if info.ptr & 255:
                    # TensorRT wants 256-byte aligned tensor addresses (NvInferRuntime.h, setTensorAddress):
                    # a view into the middle of an allocation is copied to an aligned buffer first.
                    nbytes = math.prod(info.shape) * self._in_np[spec.name].itemsize
                    dptr = self._device_buffer(spec.name, nbytes)
                    unaligned = [*(unaligned or ()), (dptr, info.ptr, nbytes)]
                    self._bind(spec.name, dptr)
                else:
                    self._bind(spec.name, info.ptr)
                if not ordered:
                    refs.append(info.obj)
                continue
            arr = cast("NDArray[np.generic]", info.obj)
            nbytes = int(arr.nbytes)
            dptr = self._device_buffer(spec.name, nbytes)
            self._bind(spec.name, dptr)
            if info.pinned:
                upload(dptr, arr, None, self._handle)
                refs.append(arr)
            else:
                upload(dptr, arr, self._pinned_buffer(spec.name, nbytes), self._handle)
        self._apply_order()  # every check has passed: now wait for the producers
        if unaligned:
            for dst, src, nbytes in unaligned:
                copy_async(dst, src, nbytes, self._handle)
        if refs:
            self._hold(refs)
        return out, device_call, call

    def _bind_outputs(self, state: ShapeState, outputs: Mapping[str, object] | None, device_call: bool,
                      ordered: bool, factory: OutputFactory | None, maker: OutputMaker | None) -> Outputs:
        result: Outputs = {}
        provided = outputs or {}
        for name in provided:
            if name not in self._out_names:
                close = difflib.get_close_matches(name, [s.name for s in self.outputs], n=1)
                raise InputError(f"unknown output {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        for spec, shape, nbytes, npd in zip(self.outputs, state.out_shapes, state.out_nbytes, self._out_np,
                                            strict=True):
            if shape is None:
                continue  # data-dependent: the output allocator provides memory
            target = provided.get(spec.name)
            if target is None and maker is not None:  # made as asked: no need to inspect it
                empty, family_dtypes, options, pointer = maker  # one unpack, not four attribute lookups
                made = empty(shape, dtype=family_dtypes[spec.dtype.name], **options)
                self._bind(spec.name, pointer(made))
                result[spec.name] = made
                continue
            if target is None and factory is not None:
                made, ptr = factory(spec.name, shape, spec.dtype)
                self._bind(spec.name, ptr)
                result[spec.name] = made
                continue
            if target is not None:
                info = check_output(target, spec, shape, self._handle, ordered, self._producers,
                                    self.engine.device_index)
                self._bind(spec.name, info.ptr if info.kind == "device" else self._device_buffer(spec.name, nbytes))
                result[spec.name] = target
            elif device_call:
                buf = self.engine.pool.allocate(nbytes, self.stream)
                self._bind(spec.name, int(buf.handle))
                result[spec.name] = DeviceArray(buf, shape, npd, self.stream)
            else:
                self._bind(spec.name, self._device_buffer(spec.name, nbytes))
                result[spec.name] = None
        return result

    def _finish_host(self, state: ShapeState, result: Outputs, staged: bool = True) -> None:
        import numpy as np

        for spec, shape, nbytes, npd in zip(self.outputs, state.out_shapes, state.out_nbytes, self._out_np,
                                            strict=True):
            target = result.get(spec.name)
            if shape is None:
                continue
            if target is None and staged and nbytes < HOST_PLAN_MAX_BYTES:
                # Small: through this context's pinned staging buffer into a new array after the sync (a
                # pooled pinned array per call costs more than the copy).
                pin = self._pinned_buffer("out:" + spec.name, nbytes)
                copy_async(pin.ctypes.data, self._addr[spec.name], nbytes, self._handle)
                result[spec.name] = target = np.empty(shape, npd)
                self._copy_out.append((target, pin[:nbytes]))
                continue
            if target is None:
                target = self.engine.pinned.empty(shape, npd, self.stream)
                if self.engine.pinned.stream_ordered:
                    owner = raw_owner(target)._trtkit_owner  # type: ignore[attr-defined]
                    owner.set_deallocation_stream(core().LEGACY_DEFAULT_STREAM)
                result[spec.name] = target
            elif not isinstance(target, np.ndarray):
                continue
            elif staged and nbytes >= PARALLEL_COPY_MIN and find_owner(target) is None:
                # A large pageable array: land in pinned memory at full speed, then copy out in parallel
                # once the stream is done (see _drain_copy_out).
                pin = self._pinned_buffer("out:" + spec.name, nbytes)
                copy_async(pin.ctypes.data, self._addr[spec.name], nbytes, self._handle)
                self._copy_out.append((target, pin[:nbytes]))
                continue
            copy_async(cast("NDArray[np.generic]", target).ctypes.data, self._addr[spec.name], nbytes, self._handle)

    def infer(self, inputs: object, *, outputs: Mapping[str, object] | None = None,
              stream: StreamLike | None = None, sync_inputs: bool = True,
              output_factory: OutputFactory | None = None, family: ArrayAdapter | None = None) -> Outputs:
        """Run the engine once and return outputs by name.

        Args:
            inputs: a dict by name, a sequence in input order, or one array for a one-input engine. NumPy arrays
                are staged through pinned memory; CUDA arrays (DLPack / CAI) are used in place.
            outputs: buffers to write into (NumPy or CUDA arrays of the exact output shape), by name.
            stream: run on this stream instead of the context's own (stream-like; borrowed).
            sync_inputs: True orders the producers' pending work before the stream through DLPack / CAI and
                keeps CUDA inputs alive until the stream has used them. False says the caller produced them on
                this stream and keeps them alive (or its allocator is stream-ordered there, as PyTorch's and
                CuPy's are on their current stream): faster.
            output_factory: ``f(name, shape, dtype) -> (array, device_pointer)`` makes output arrays (e.g. with
                ``torch.empty``) instead of trtkit's pool: contiguous, of that shape and dtype, on the engine's
                device (trusted, not inspected). They are written in place and returned.
            family: answer in this array family (:func:`trtkit.runtime.io.adapter_of` of the first input), as
                :class:`trtkit.Engine` does: PyTorch / CuPy inputs run on the caller's current stream (unless
                ``stream`` is given) with outputs made by that library; otherwise results are wrapped into it.

        Returns:
            NumPy outputs (pinned memory, ready) when every input is NumPy; otherwise
            :class:`~trtkit.runtime.memory.DeviceArray` outputs (or the family's arrays), ready in stream order on
            the stream used (no sync).

        Raises:
            InputError: the inputs or output buffers do not fit the engine; raised before anything is launched.
            ExecutionError: TensorRT rejected a call; carries TensorRT's log.
        """
        with self._lock:
            return self._infer_locked(inputs, outputs, stream, not sync_inputs, output_factory, family)

    def _infer_locked(self, inputs: object, outputs: Mapping[str, object] | None, stream: StreamLike | None,
                      ordered: bool, factory: OutputFactory | None, family: ArrayAdapter | None) -> Outputs:
        plan = self._host_plan
        if plan is not None and plan.generation == self._generation and outputs is None and stream is None \
                and factory is None and self._pending is None and (family is None or not family.wraps):
            fast = self._run_host_plan(plan, inputs)
            if fast is not None:
                return fast
        dplan = self._device_plan
        if dplan is not None and dplan.generation == self._generation and stream is None and factory is None:
            hit = device_path.check_plan(dplan, inputs, outputs, ordered, family, self._handle)
            if hit is not None:
                return self._run_device_plan(hit, dplan.ordered, outputs)
        result, device_call, call = self._prepare(inputs, outputs, stream, ordered, factory, family)
        state = self._shapes.state
        assert state is not None
        self._launch()
        if self._shapes.dds:
            self._shapes.collect(result, device_call, self.stream, self._handle, factory, call[3])
        if not device_call:
            self._finish_host(state, result)
            self.stream.sync()
            self._drain_copy_out()
            if self._plan_ok and outputs is None and stream is None and factory is None and call[4] is None \
                    and not self._shapes.dds:
                self._host_plan = make_plan(self._generation, self._in_names, call[0], self._in_np, self.outputs,
                                            self._out_np, state.out_shapes, state.out_nbytes, self._pin_bufs,
                                            self._addr)
        elif self._plan_ok and outputs and stream is None and factory is None and not self._shapes.dds:
            self._device_plan = device_path.make_plan(self._generation, call[0], outputs, self._out_list, call[2],
                                                      call[1] is not None, self.engine.device_index)
        wrap = call[4]
        return result if wrap is None else wrap_results(wrap, result, outputs)

    def _run_host_plan(self, plan: HostPlan, given: object) -> Outputs | None:
        """Run ``plan`` (:mod:`trtkit.runtime.host_path`) for ``given``; None, with nothing done, unless
        ``given`` fits it exactly."""
        import numpy as np

        if type(given) is dict:
            named: dict[str, object] = given
        elif plan.single is not None and type(given) is np.ndarray:
            named = {plan.single: given}
        else:
            return None
        if len(named) != len(plan.inputs):
            return None
        arrays = []
        for t in plan.inputs:  # every check before any copy
            a = named.get(t.name)
            if type(a) is not np.ndarray or a.dtype is not t.dtype or a.shape != t.shape or not a.flags.c_contiguous:
                return None
            if a.base is not None and find_owner(a) is not None:
                return None  # pinned by trtkit: the full path uploads it without staging
            arrays.append(a)
        for t, a in zip(plan.inputs, arrays, strict=True):
            np.copyto(t.staging, a)
            copy_async(t.device_ptr, t.staging_ptr, t.nbytes, self._handle)
        self._launch()
        for t in plan.outputs:
            copy_async(t.staging_ptr, t.device_ptr, t.nbytes, self._handle)
        self.stream.sync()
        return {t.name: t.staging.copy() for t in plan.outputs}

    def _run_device_plan(self, hit: tuple[list[object], int | None], ordered: bool,
                         outputs: Mapping[str, object] | None, record: bool = True) -> Outputs:
        refs, producer = hit
        if producer is not None:
            self._order.after(self._handle, producer)
        if not ordered:
            self._hold(refs, record, same_memory=True)
        self._launch()
        assert outputs is not None
        return {name: outputs[name] for name in self._out_list}

    def _drain_copy_out(self) -> None:
        while self._copy_out:
            target, staged = self._copy_out.pop()
            host_copy(target, staged)

    def infer_async(self, inputs: object, *, outputs: Mapping[str, object] | None = None,
                    stream: StreamLike | None = None, sync_inputs: bool = True) -> InferHandle:
        """Launch and return at once; ``handle.wait()`` gives the outputs (``sync_inputs`` as in :meth:`infer`).
        Engines with data-dependent output shapes synchronize inside (their output size is only known after
        the run)."""
        with self._lock:
            dplan = self._device_plan
            if dplan is not None and stream is None and dplan.generation == self._generation:
                hit = device_path.check_plan(dplan, inputs, outputs, not sync_inputs, None, self._handle)
                if hit is not None:  # the lean path: see _run_device_plan
                    assert outputs is not None
                    refs, producer = hit
                    if producer is not None:
                        self._order.after(self._handle, producer)
                    if not dplan.ordered:
                        self._hold(refs, False, True)
                    self._launch()
                    event = self._next_event()
                    if not dplan.ordered:
                        self._keep_event = event  # marks the end of this call's work: holds its inputs
                    return InferHandle(event, {name: outputs[name] for name in self._out_list})
            result, device_call, call = self._prepare(inputs, outputs, stream, not sync_inputs, None, None)
            state = self._shapes.state
            assert state is not None
            self._launch()
            if self._shapes.dds:
                self._shapes.collect(result, device_call, self.stream, self._handle)
            elif not device_call:
                self._finish_host(state, result, staged=False)  # the staging buffer is reused by the next call
            elif self._plan_ok and outputs and stream is None:
                self._device_plan = device_path.make_plan(self._generation, call[0], outputs, self._out_list,
                                                          call[2], False, self.engine.device_index)
            event = self._next_event()
            if not device_call:
                self._pending = event
            return InferHandle(event, result)

    def _next_event(self) -> CudaEvent:
        """Record the next event of a small ring: creating one per call costs more than the rest of the call.
        Waiting on an event re-recorded by a later call waits for that call too: later, never too early."""
        events, i = self._events, self._event_next
        self._event_next = (i + 1) % _EVENT_RING
        if len(events) == _EVENT_RING:
            return self.stream.record(events[i])
        event = self.stream.record()
        events.append(event)
        return event

    # ---- fixed buffers (benchmarks, raw loops) -----------------------------------------------------------

    def prepare_static(self, shapes: Mapping[str, Sequence[int]], *, seed: int = 0) -> StaticIO:
        """Allocate and bind device buffers for ``shapes`` (inputs filled with random data) plus pinned host
        mirrors; then :meth:`enqueue` runs without any per-call work but the launch."""
        if self._host_in:
            raise UnsupportedFeatureError(
                f"static buffers need every input on the device; {', '.join(self._host_in)} are shape tensors "
                "(host values): run the engine with infer() instead")
        with self._lock:
            key = tuple(tuple(int(d) for d in shapes[n]) for n in self._in_names)
            state = self._ensure_shapes(key)
            if self._shapes.dds:
                raise UnsupportedFeatureError("static buffers need outputs whose shape is known before the run")
            io = StaticIO.bind(self.inputs, key, self._in_np, self.outputs, state.out_shapes, state.out_nbytes,
                               self._out_np, self.engine.pool, self.engine.pinned, self.stream, self._bind, seed)
            self.stream.sync()
            return io

    def enqueue(self) -> None:
        """Launch once with the current bindings (graph replay when enabled); no sync, no allocation."""
        self._launch()

    # ---- lifetime ----------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._host_plan = self._device_plan = None  # a closed context takes the full path, which refuses
        try:
            self.stream.sync()
        except Exception as exc:  # pragma: no cover - best effort at teardown
            _log.warning("stream sync at context close failed: %s", exc)
        self._graphs.drop()
        for buf in self._dev_bufs.values():
            buf.close(self.stream)
        self._shapes.close(self.stream)
        self._dev_bufs.clear()
        self._pin_bufs.clear()
        self._keep.clear()
        self._order.close()
        self._ctx = None  # type: ignore[assignment]

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
