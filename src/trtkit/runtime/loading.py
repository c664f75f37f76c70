"""The runtime: load an engine, check it fits this GPU and backend, and run it.

Layers, each usable alone:

* pure checks, tested in CI without CUDA, in :mod:`trtkit.tensors` (specs, input validation, profile selection)
  and :mod:`trtkit.compat` (does this engine fit this backend and GPU); re-exported here;
* :func:`load_engine` -> :class:`LoadedEngine` (one GPU, a device pool and a pinned pool, a pool of contexts);
* :class:`Context`: one ``IExecutionContext`` with its own stream. ``infer`` picks the tightest profile, sets
  shapes, infers output shapes, binds addresses, runs ``execute_async_v3`` (or replays a CUDA graph captured for
  the same shapes and addresses) and checks every TensorRT return value.

Arrays: NumPy inputs are staged through pinned memory (trtkit's own pinned arrays, from
:meth:`LoadedEngine.empty_pinned`, are copied directly); NumPy callers get NumPy outputs in pinned memory.
CUDA arrays (PyTorch, CuPy, cuda.core; DLPack or ``__cuda_array_interface__``) are used in place; their
callers get :class:`~trtkit.memory.DeviceArray` outputs from the device pool.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from trtkit.backend import (
    Backend,
    CudaEngine,
    ExecutionContext,
    RtxCudaEngine,
    RtxExecutionContext,
    RtxRuntime,
    Runtime,
    get_backend,
)
from trtkit.dtypes import DType
from trtkit.errors import (
    ClosedError,
    EngineFileError,
    EngineIncompatibleError,
    ExecutionError,
    InputError,
    UnsupportedFeatureError,
)
from trtkit.log import get_logger
from trtkit.manifest import Manifest, read_engine_file
from trtkit.profiles import Shape, format_shape
from trtkit.runtime.compat import check_compatibility, validity_reasons
from trtkit.runtime.tensors import (
    ArrayInfo,
    TensorSpec,
    _is_trtkit_pinned,
    _kind_of,
    _numpy,
    _trt_mode,
    describe_array,
    describe_tensors,
    normalize_inputs,
    select_profile,
    shape_tensor_values,
    torch_current_stream,
    validate_inputs,
)

if TYPE_CHECKING:
    from trtkit.gpu import DeviceInfo
    from trtkit.manifest import BuiltEngine
    from trtkit.runtime.memory.pools import DevicePool, PinnedPool

__all__ = [
    "ArrayInfo",
    "Context",
    "InferHandle",
    "LoadedEngine",
    "TensorSpec",
    "check_compatibility",
    "describe_array",
    "describe_tensors",
    "load_engine",
    "normalize_inputs",
    "select_profile",
    "validate_inputs",
]

_log = get_logger("runtime")

OutputFactory = Callable[[str, tuple[int, ...], DType], tuple[Any, int]]
"""``f(name, shape, dtype) -> (array, device_pointer)``: makes a contiguous output array of that shape and dtype
on the engine's device, for :meth:`Context.infer`."""
_MAX_GRAPHS: Final = 16


# ======================================================================================================
# Loading
# ======================================================================================================


def _read_source(source: Any) -> tuple[bytes, Manifest | None, str]:
    from trtkit.manifest import BuiltEngine

    if isinstance(source, BuiltEngine):
        return source.plan, source.manifest, "built engine"
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise EngineFileError("the engine plan is empty")
        return data, None, "plan bytes"
    if isinstance(source, str | os.PathLike):
        plan, manifest = read_engine_file(source)
        return plan, manifest, str(Path(source))
    raise TypeError(f"cannot load an engine from {type(source).__name__}; pass a path, plan bytes or BuiltEngine")


def _deserialize(backend: Backend, runtime: Runtime, plan: bytes, source: str) -> CudaEngine:
    if backend.features.engine_validity:
        rtx = cast(RtxRuntime, runtime)
        size = int(rtx.engine_header_size or len(plan))
        with backend.capture() as cap:
            validity, diagnostics = rtx.get_engine_validity(plan[:size])
        if _trt_mode(validity) == "INVALID":
            reasons = validity_reasons(backend, diagnostics)
            if "MALFORMED_ENGINE" in reasons:
                raise EngineFileError(
                    f"{backend.label} says {source} is not a valid plan (MALFORMED_ENGINE): it is corrupt, truncated "
                    "or not a TensorRT-RTX plan. Rebuild the engine.", tensorrt_log=cap.lines)
            raise EngineIncompatibleError(
                f"{backend.label} says {source} cannot run here: {', '.join(reasons) or 'no diagnostics'}. Rebuild "
                "the engine for this GPU and version.", tensorrt_log=cap.lines)
    with backend.capture() as cap:
        engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        text = " ".join(cap.errors or cap.lines).lower()  # classify by the errors, not by passing warnings
        if "host code" in text or "lean runtime" in text:
            raise EngineIncompatibleError(
                f"{backend.label} refused {source}: it is a version-compatible plan that carries TensorRT's lean "
                "runtime (host code that runs when the plan is loaded). Load it only if you trust the file: "
                "load_engine(..., allow_host_code=True) or `--allow-host-code`; a plan built with "
                "exclude_lean_runtime needs the lean runtime library instead (lean_runtime=PATH / --lean-runtime).",
                tensorrt_log=cap.lines)
        if "plugin" in text:
            raise EngineIncompatibleError(
                f"{backend.label} refused {source}: it uses a plugin that is not registered. Load the plugin "
                "library that implements it: load_engine(..., plugins=[PATH]) or `--plugins PATH`.",
                tensorrt_log=cap.lines)
        if any(k in text for k in ("version", "compute capability", "compatib", "not supported")):
            raise EngineIncompatibleError(
                f"{backend.label} refused {source}: it was built for another TensorRT version or GPU. Rebuild it "
                "on this machine.", tensorrt_log=cap.lines)
        raise EngineFileError(
            f"{backend.label} could not deserialize {source} ({len(plan)} bytes): the file is corrupt, truncated or "
            "not a TensorRT plan. Rebuild the engine.", tensorrt_log=cap.lines)
    return engine


def load_engine(source: str | os.PathLike[str] | bytes | BuiltEngine, *, device: int = 0,
                backend: str | Backend | None = None, max_contexts: int = 4,
                plugins: Sequence[str | os.PathLike[str]] | None = None, allow_host_code: bool = False,
                lean_runtime: str | os.PathLike[str] | None = None) -> LoadedEngine:
    """Load an engine onto CUDA device ``device``.

    Steps, in order: read the plan (and manifest, checking it matches); pick the backend (the manifest's,
    unless given); check backend, version and compute capability, and whether the plan needs host code or a
    lean runtime; create the runtime, register TensorRT's bundled plugins and load the plugin libraries
    (``plugins``, else those the manifest records); on TensorRT-RTX ask ``get_engine_validity``; create the
    device pool and route TensorRT's own allocations to it; deserialize; refuse vectorized I/O formats.

    Args:
        plugins: plugin shared libraries the engine's layers need (default: the manifest's build plugins).
        allow_host_code: allow a version-compatible plan to run the lean runtime it carries
            (``runtime.engine_host_code_allowed``). Host code is code: only for files you trust.
        lean_runtime: the lean runtime library (``libnvinfer_lean.so.<major>``) for a plan built with
            ``exclude_lean_runtime`` (``runtime.load_runtime``).

    Raises:
        EngineFileError: missing, empty, corrupt or truncated file, or a plugin library that cannot be loaded.
        EngineIncompatibleError: built for another backend, version or GPU, or needs host code that was not
        allowed. CudaError: no GPU here. ExecutionError: TensorRT could not create a runtime.
    """
    plan, manifest, where = _read_source(source)
    if isinstance(backend, Backend):
        be = backend
    else:
        be = get_backend(backend if backend is not None else (manifest.backend if manifest else None))
    check_compatibility(manifest, be, None, source=where)
    from trtkit.gpu import device_info

    _check_host_code(manifest, where, allow_host_code, lean_runtime)
    info = device_info(device)
    check_compatibility(manifest, be, info, source=where)
    libs = [str(p) for p in plugins] if plugins is not None else \
        [str(p) for p in (manifest.config.get("plugins") or ())] if manifest else []
    return LoadedEngine(be, plan, manifest, info, where, max_contexts=max_contexts, plugins=libs,
                        allow_host_code=allow_host_code, lean_runtime=lean_runtime)


def _check_host_code(manifest: Manifest | None, source: str, allowed: bool,
                     lean_runtime: str | os.PathLike[str] | None) -> None:
    """Refuse, before any CUDA work, a plan whose manifest says it needs host code or a lean runtime."""
    if manifest is None or not (manifest.compatibility.get("version_compatible")
                                or manifest.config.get("version_compatible")):
        return
    if manifest.config.get("exclude_lean_runtime"):
        if lean_runtime is None:
            raise EngineIncompatibleError(
                f"{source} was built version-compatible without its lean runtime (exclude_lean_runtime): give "
                "the lean runtime library of the TensorRT that built it, load_engine(..., lean_runtime=PATH) or "
                "`--lean-runtime PATH` (libnvinfer_lean.so.<major>)")
        return
    if not allowed:
        raise EngineIncompatibleError(
            f"{source} is a version-compatible plan that carries TensorRT's lean runtime: loading it runs host "
            "code from the file. If you trust the file, allow it: load_engine(..., allow_host_code=True), "
            "Engine.load(..., allow_host_code=True) or `--allow-host-code`")


class LoadedEngine:
    """A deserialized engine on one GPU with its pools. Create :class:`Context` objects to run it, or call
    :meth:`infer` which borrows one from an internal pool (safe from many threads)."""

    def __init__(self, backend: Backend, plan: bytes, manifest: Manifest | None, device: DeviceInfo,
                 source: str, *, max_contexts: int = 4, plugins: Sequence[str] = (),
                 allow_host_code: bool = False, lean_runtime: str | os.PathLike[str] | None = None) -> None:
        from trtkit.runtime.memory import pools as memory

        self.backend = backend
        self.plan = plan
        self.manifest = manifest
        self.device_info = device
        self.device_index = device.index
        self.source = source
        self._dev = memory.device(device.index)
        self.pool: DevicePool = memory.DevicePool(device.index)
        self.pinned: PinnedPool = memory.PinnedPool(device.index)
        self._stream = memory.new_stream(self._dev)
        trt = backend.trt
        self._base_runtime = backend.create_runtime()
        self._runtime = self._base_runtime
        if lean_runtime is not None:
            with backend.capture() as cap:
                lean = self._base_runtime.load_runtime(str(lean_runtime))
            if lean is None:
                raise EngineFileError(f"{backend.label} could not load the lean runtime {str(lean_runtime)!r}: it "
                                      "must be the libnvinfer_lean library of the TensorRT that built the plan",
                                      tensorrt_log=cap.lines)
            self._runtime = lean
        if allow_host_code:
            self._runtime.engine_host_code_allowed = True
        backend.init_plugins()
        backend.load_plugin_libraries(self._runtime.get_plugin_registry(), plugins, missing=EngineFileError,
                                      refused=EngineFileError)
        self._allocator = None
        if backend.features.gpu_async_allocator:
            self._allocator = memory.make_gpu_allocator(
                trt, self.pool, self._stream, stream_index=backend.features.gpu_allocator_stream_index)
            self._runtime.gpu_allocator = self._allocator
        self._engine = _deserialize(backend, self._runtime, plan, source)
        self.tensors = describe_tensors(self._engine)
        for spec in self.tensors:
            if spec.format != "LINEAR":
                raise UnsupportedFeatureError(
                    f"{source}: tensor {spec.name!r} uses TensorRT's vectorized format {spec.format}; trtkit binds "
                    "only linear (row-major) I/O tensors. Rebuild the engine without restricting I/O formats "
                    "(no --inputIOFormats/--outputIOFormats such as chw4 or hwc8).")
            if not spec.is_input and spec.location == "host":
                raise UnsupportedFeatureError(
                    f"{source}: output {spec.name!r} is a shape tensor in host memory; trtkit runs engines whose "
                    "outputs live on the device. Mark it as a regular output when building.")
        self.inputs = tuple(t for t in self.tensors if t.is_input)
        self.outputs = tuple(t for t in self.tensors if not t.is_input)
        self.specs = {t.name: t for t in self.tensors}
        self._local = threading.local()
        self._local.current = True
        self._idle: queue.SimpleQueue[Context] = queue.SimpleQueue()
        self._contexts: list[Context] = []
        self._max_contexts = max(1, max_contexts)
        self._ctx_lock = threading.Lock()
        self._primary: Context | None = None
        self._closed = False

    def __repr__(self) -> str:
        ins = ", ".join(repr(t) for t in self.inputs)
        outs = ", ".join(repr(t) for t in self.outputs)
        return (f"<LoadedEngine {self.source} on cuda:{self.device_index} ({self.backend.label}) "
                f"in=[{ins}] out=[{outs}]>")

    @property
    def trt_engine(self) -> CudaEngine:
        """The underlying ``ICudaEngine``."""
        self._check_open()
        return self._engine

    @property
    def num_profiles(self) -> int:
        return int(self._engine.num_optimization_profiles)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"engine {self.source} was closed")

    def ensure_current(self) -> None:
        """Make the engine's device current on the calling thread (once per thread)."""
        if not getattr(self._local, "current", False):
            self._dev.set_current()
            self._local.current = True

    def create_context(self, *, stream: Any = None, cuda_graph: bool = False) -> Context:
        """A new execution context with its own stream (or ``stream``, borrowed)."""
        self._check_open()
        self.ensure_current()
        return Context(self, stream=stream, cuda_graph=cuda_graph)

    @contextlib.contextmanager
    def borrow_context(self) -> Iterator[Context]:
        """A context from the engine's pool, for one call; blocks when ``max_contexts`` are all busy."""
        self._check_open()
        try:
            ctx = self._idle.get_nowait()
        except queue.Empty:
            with self._ctx_lock:
                create = len(self._contexts) < self._max_contexts
                if create:
                    ctx = self.create_context()
                    self._contexts.append(ctx)
                    if self._primary is None:
                        self._primary = ctx
            if not create:
                ctx = self._idle.get()
        try:
            yield ctx
        finally:
            self._idle.put(ctx)

    def infer(self, inputs: Any, *, outputs: Mapping[str, Any] | None = None, stream: Any = None,
              sync_inputs: bool = True, output_factory: OutputFactory | None = None) -> dict[str, Any]:
        """Run once on a pooled context; see :meth:`Context.infer`. Safe to call from many threads."""
        self.ensure_current()
        ctx = self._primary
        if ctx is not None and ctx._lock.acquire(blocking=False):  # the common, uncontended case
            try:
                return ctx._infer_locked(inputs, outputs, stream, not sync_inputs, output_factory)
            finally:
                ctx._lock.release()
        with self.borrow_context() as ctx:
            result: dict[str, Any] = ctx.infer(inputs, outputs=outputs, stream=stream, sync_inputs=sync_inputs,
                                               output_factory=output_factory)
            return result

    def empty_pinned(self, name_or_shape: str | Sequence[int], dtype: Any = None,
                     shape: Sequence[int] | None = None) -> Any:
        """A NumPy array in pinned host memory (no staging copy when passed as input or output).

        ``empty_pinned("x", shape=(8, 4))`` uses tensor ``x``'s dtype; ``empty_pinned((8, 4), "float32")`` any.
        """
        self.ensure_current()
        if isinstance(name_or_shape, str):
            spec = self.specs.get(name_or_shape)
            if spec is None:
                raise InputError(f"no tensor {name_or_shape!r}; the engine has {', '.join(self.specs)}")
            dims = tuple(shape if shape is not None else spec.shape)
            if any(d < 0 for d in dims):
                raise InputError(f"tensor {spec.describe()} is dynamic: give shape=")
            np_dtype = spec.dtype.to_numpy() if dtype is None else dtype
        else:
            dims, np_dtype = tuple(name_or_shape), dtype or "float32"
        return self.pinned.empty(tuple(int(d) for d in dims), np_dtype, self._stream)

    def memory_stats(self) -> dict[str, Any]:
        """Device pool statistics (bytes in use, reserved, high-water, allocation count) and pinned ones."""
        pinned = self.pinned.stats()
        return {"device": self.pool.stats().to_dict(), "pinned": pinned.to_dict() if pinned else None,
                "pinned_resource": self.pinned.kind}

    def release_memory(self) -> None:
        """Return cached, unused pool memory to the driver."""
        self.pool.release()

    def close(self) -> None:
        """Free contexts, pools and the engine. Further calls raise ClosedError."""
        if self._closed:
            return
        self._closed = True
        for ctx in self._contexts:
            ctx.close()
        self._contexts.clear()
        self._stream.sync()
        self._engine = None  # type: ignore[assignment]

    def __enter__(self) -> LoadedEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ======================================================================================================
# Contexts
# ======================================================================================================


@dataclass
class _ShapeState:
    profile: int
    out_shapes: tuple[Shape | None, ...]
    out_nbytes: tuple[int, ...]


def _describe_shapes(shapes: Mapping[str, Shape], values: Mapping[str, Shape]) -> str:
    return ", ".join([f"{n} {format_shape(s)}" for n, s in shapes.items()]
                     + [f"{n} values {list(v)}" for n, v in values.items()])


@dataclass
class StaticIO:
    """Device buffers bound once for fixed shapes (benchmarks, raw loops), with pinned host mirrors."""

    inputs: dict[str, Any]
    outputs: dict[str, Any]
    host_inputs: dict[str, Any]
    host_outputs: dict[str, Any]


class InferHandle:
    """The result of :meth:`Context.infer_async`: ``wait()`` returns the outputs."""

    def __init__(self, event: Any, outputs: dict[str, Any], keep: Any = None) -> None:
        self._event = event
        self._outputs = outputs
        self._keep = keep

    def done(self) -> bool:
        return bool(self._event.is_done)

    def wait(self) -> dict[str, Any]:
        self._event.sync()
        self._keep = None
        return self._outputs


class Context:
    """One execution context with its own stream. Calls on one context are serialized by a lock; use
    several contexts (or :meth:`LoadedEngine.infer`) for concurrent calls."""

    def __init__(self, engine: LoadedEngine, *, stream: Any = None, cuda_graph: bool = False) -> None:
        from trtkit.runtime.memory import pools as memory

        self._m = memory
        self.engine = engine
        be = engine.backend
        self._be = be
        self._own_stream = stream is None
        self.stream = memory.new_stream(engine._dev) if stream is None else memory.to_stream(stream)
        self._handle = memory.stream_handle(self.stream)
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
        self._out_np = tuple(self._np_dtype(s) for s in self.outputs)
        self._in_np = {s.name: self._np_dtype(s) for s in self.inputs}
        # Shape tensors live on the host: TensorRT reads their values on the CPU from the address bound (set
        # before infer_shapes, which counts them unspecified until then). One host buffer each, bound once.
        self._host_in = tuple(s.name for s in self.inputs if s.location == "host")
        self._dev_inputs = tuple(s for s in self.inputs if s.location != "host")
        self._host_bufs = {s.name: self._host_buffer(s) for s in self.inputs if s.location == "host"}
        self._profile = -1
        self._set_shapes: dict[str, Shape] = {}
        self._addr: dict[str, int] = {}
        self._states: dict[tuple[Shape, ...], _ShapeState] = {}
        self._shape_key: tuple[Shape, ...] | None = None
        self._dev_bufs: dict[str, Any] = {}
        self._pin_bufs: dict[str, Any] = {}
        self._ctx_mem: Any = None
        self._ctx_mem_size = 0
        self._lock = threading.Lock()
        self._keep: list[Any] = []
        self._keep_event: Any = None
        self._copy_out: list[tuple[Any, Any]] = []
        self._order = memory.StreamOrder()
        self._producers: list[int] = []
        self._pending: Any = None
        self.cuda_graph = cuda_graph
        self._graphs: collections.OrderedDict[tuple[Any, ...], Any] = collections.OrderedDict()
        self._no_graph: set[tuple[Any, ...]] = set()
        self._last_key: tuple[Any, ...] | None = None
        self.graph_stats = {"captured": 0, "replayed": 0, "fallbacks": 0}
        self._dds: tuple[str, ...] = ()
        self._out_alloc: Any = None
        self._closed = False

    def _host_buffer(self, spec: TensorSpec) -> Any:
        import numpy as np

        size = max([len(r.max) for r in spec.profiles] + [math.prod(max(d, 1) for d in spec.shape)])
        return np.zeros(max(size, 1), self._in_np[spec.name])

    @staticmethod
    def _np_dtype(spec: TensorSpec) -> Any:
        import numpy as np

        return np.dtype(spec.dtype.numpy_name) if spec.dtype.numpy_name else np.dtype(f"V{spec.dtype.itemsize}")

    @property
    def trt_context(self) -> ExecutionContext:
        """The underlying ``IExecutionContext``."""
        return self._ctx

    # ---- shapes ------------------------------------------------------------------------------------------

    def _fail(self, what: str, cap: Any = None) -> ExecutionError:
        return ExecutionError(f"{self._be.label}: {what}", tensorrt_log=cap.lines if cap is not None else ())

    def _ensure_shapes(self, key: tuple[Shape, ...], values: tuple[Shape, ...] = ()) -> _ShapeState:
        """Make the context ready for input shapes ``key`` (in input order) and shape-tensor ``values`` (in
        host-input order). A no-op when both are those of the last call.

        Order, as TensorRT requires: the profile (a switch drops the CUDA graphs: it takes effect at the next
        enqueue), the input shapes, the shape-tensor host addresses (``infer_shapes`` counts a shape tensor
        unspecified until its address is set), ``infer_shapes``; then, for USER_MANAGED context memory,
        ``update_device_memory_size_for_shapes`` and ``set_device_memory`` after every shape change (the header:
        the memory partition is invalidated otherwise).
        """
        full = key + values if values else key
        if full == self._shape_key:
            return self._states[full]
        shapes = dict(zip(self._in_names, key, strict=True))
        given = dict(zip(self._host_in, values, strict=True))
        state = self._states.get(full)
        profile = state.profile if state else select_profile(self.inputs, shapes, prefer=self._profile,
                                                            values=given)
        ctx = self._ctx
        with self._be.capture() as cap:
            if profile != self._profile:
                if not ctx.set_optimization_profile_async(profile, self._handle):
                    raise self._fail(f"set_optimization_profile_async({profile}) failed", cap)
                self._profile = profile
                self._set_shapes.clear()
                self._drop_graphs()
            for name, shape in shapes.items():
                if self._set_shapes.get(name) != shape:
                    if not ctx.set_input_shape(name, shape):
                        self._set_shapes.pop(name, None)
                        raise self._fail(f"set_input_shape({name!r}, {format_shape(shape)}) was rejected "
                                         f"(profile {profile})", cap)
                    self._set_shapes[name] = shape
            for name, vals in given.items():
                buf = self._host_bufs[name]
                buf[:len(vals)] = vals
                self._bind(name, int(buf.ctypes.data))
            try:
                missing = ctx.infer_shapes()
            except RuntimeError as exc:
                raise self._fail(f"infer_shapes() failed for shapes {_describe_shapes(shapes, given)}: {exc}",
                                 cap) from exc
            if missing:
                raise self._fail(f"infer_shapes() left input shapes unspecified: {list(missing)}", cap)
            if state is None:
                outs: list[Shape | None] = []
                nbytes: list[int] = []
                for spec, npd in zip(self.outputs, self._out_np, strict=True):
                    s = tuple(int(d) for d in ctx.get_tensor_shape(spec.name))
                    dd = any(d < 0 for d in s)
                    outs.append(None if dd else s)
                    nbytes.append(0 if dd else math.prod(s) * npd.itemsize)
                state = _ShapeState(profile, tuple(outs), tuple(nbytes))
                self._states[full] = state
            if self.user_memory:
                self._update_device_memory(cap)
        self._dds = tuple(s.name for s, o in zip(self.outputs, state.out_shapes, strict=True) if o is None)
        if self._dds:
            self._ensure_output_allocator()
        self._shape_key = full
        return state

    def _update_device_memory(self, cap: Any) -> None:
        ctx = self._ctx
        size = int(ctx.update_device_memory_size_for_shapes())
        if size == 0 and cap.errors:
            raise self._fail("update_device_memory_size_for_shapes() failed", cap)
        if self._ctx_mem is None or self._ctx_mem_size < size:
            if self._ctx_mem is not None:
                self._ctx_mem.close(self.stream)
            self._ctx_mem_size = max(size, 256)
            self._ctx_mem = self.engine.pool.allocate(self._ctx_mem_size, self.stream)
        ctx.set_device_memory(int(self._ctx_mem.handle), self._ctx_mem_size)

    def _drop_graphs(self) -> None:
        self._graphs.clear()
        self._last_key = None

    def _ensure_output_allocator(self) -> None:
        if self._out_alloc is not None:
            return
        self._be.require(self._be.features.output_allocator, "data-dependent output shapes",
                         "this backend has no IOutputAllocator")
        self._out_alloc = self._m.make_output_allocator(self._be.trt, self.engine.pool,
                                                        lambda h: self.stream)
        for name in self._dds:
            if not self._ctx.set_output_allocator(name, self._out_alloc):
                raise self._fail(f"set_output_allocator({name!r}) failed")

    def _bind(self, name: str, addr: int) -> None:
        if self._addr.get(name) != addr:
            mark = self._be.log_mark()
            if not self._ctx.set_tensor_address(name, addr):
                raise ExecutionError(f"{self._be.label}: set_tensor_address({name!r}, {addr:#x}) was rejected",
                                     tensorrt_log=self._be.log_since(mark))
            self._addr[name] = addr

    def _device_buffer(self, name: str, nbytes: int) -> int:
        buf = self._dev_bufs.get(name)
        if buf is None or int(buf.size) < nbytes:
            if buf is not None:
                buf.close(self.stream)
            buf = self.engine.pool.allocate(nbytes, self.stream)
            self._dev_bufs[name] = buf
        return int(buf.handle)

    def _pinned_buffer(self, name: str, nbytes: int) -> Any:
        buf = self._pin_bufs.get(name)
        if buf is None or int(buf.size) < nbytes:
            buf = self.engine.pinned.allocate(nbytes, self.stream)
            self._pin_bufs[name] = buf
        return buf

    # ---- execution --------------------------------------------------------------------------------------

    def _launch(self) -> None:
        if self.cuda_graph:
            # A graph holds the shapes, profile and addresses it was captured with ([DG] "CUDA Graphs").
            key = (self._shape_key, self._profile, tuple(self._addr.values()),
                   int(self._ctx_mem.handle) if self._ctx_mem else 0)
            graph = self._graphs.get(key)
            if graph is not None:
                graph.launch(self.stream)
                self.graph_stats["replayed"] += 1
                return
            # Capture on the second call with the same shapes and addresses: the first ran plainly, which also
            # flushes TensorRT's deferred shape updates before capture.
            if key == self._last_key and key not in self._no_graph:
                graph = self._capture()
                if graph is not None:
                    self._graphs[key] = graph
                    while len(self._graphs) > _MAX_GRAPHS:
                        self._graphs.popitem(last=False)
                    graph.launch(self.stream)
                    self.graph_stats["captured"] += 1
                    return
                self._no_graph.add(key)
                self.graph_stats["fallbacks"] += 1
            self._last_key = key
        mark = self._be.log_mark()
        if not self._ctx.execute_async_v3(self._handle):
            raise ExecutionError(f"{self._be.label}: execute_async_v3 failed", tensorrt_log=self._be.log_since(mark))

    def _capture(self) -> Any:
        if self._dds:
            return None
        builder = self.stream.create_graph_builder()
        # TensorRT-RTX says whether enqueue can be captured on a stream (not with runtime allocations or
        # data-dependent shapes): IExecutionContext::isStreamCapturable.
        if self._be.name == "tensorrt_rtx" and not cast(RtxExecutionContext, self._ctx).is_stream_capturable(
                self._m.stream_handle(builder.stream)):
            _log.info("%s says this context cannot be stream-captured; running without graphs", self._be.label)
            return None
        ok = False
        with self._be.capture() as cap:
            try:
                builder.begin_building("thread_local")
                ok = bool(self._ctx.execute_async_v3(self._m.stream_handle(builder.stream)))
            except Exception as exc:
                _log.debug("graph capture failed: %s", exc)
            finally:
                try:
                    builder.end_building()
                except Exception as exc:
                    _log.debug("ending graph capture failed: %s", exc)
                    ok = False
        if not ok:
            _log.info("CUDA graph capture not possible; running without graphs (%s)", "; ".join(cap.lines))
            return None
        try:
            return builder.complete()
        except Exception as exc:
            _log.info("CUDA graph could not be instantiated (%s); running without graphs", exc)
            return None

    def _hold(self, refs: list[Any]) -> None:
        """Keep device inputs alive until the stream has used them (one reused event)."""
        if self._keep_event is not None and self._keep and self._keep_event.is_done:
            self._keep.clear()
        if refs:
            self._keep.extend(refs)
            self._keep_event = self.stream.record(self._keep_event)

    def _prepare(self, inputs: Any, outputs: Mapping[str, Any] | None, stream: Any, ordered: bool,
                 factory: OutputFactory | None) -> tuple[dict[str, Any], bool]:
        if self._closed:
            raise ClosedError("this context was closed")
        if stream is not None and stream != self._handle and self._m.stream_handle(stream) != self._handle:
            self._switch_stream(stream)
        given = normalize_inputs(self.inputs, inputs)
        self._producers.clear()
        if ordered:
            infos = {name: describe_array(obj, self._handle, ordered=True) for name, obj in given.items()}
        else:
            infos = {name: self._describe_ordering(obj) for name, obj in given.items()}
        validate_inputs(self.inputs, infos, device=self.engine.device_index, by_name=self._in_specs)
        key = tuple([infos[n].shape for n in self._in_names])
        values = tuple([shape_tensor_values(infos[n].obj) for n in self._host_in]) if self._host_in else ()
        state = self._ensure_shapes(key, values)
        device_call = False
        for info in infos.values():
            if info.kind == "device":
                device_call = True
                break
        # Output buffers are checked (and bound) before any input is copied: a bad call launches nothing.
        out = self._bind_outputs(state, outputs, device_call, ordered, factory)
        if self._pending is not None:  # an async call may still read the pinned staging buffers
            self._pending.sync()
            self._pending = None
        refs: list[Any] = []
        unaligned: list[tuple[int, int, int]] | None = None
        np = _numpy()
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
            arr = info.obj
            nbytes = int(arr.nbytes)
            dptr = self._device_buffer(spec.name, nbytes)
            self._bind(spec.name, dptr)
            if info.pinned:
                self._m.copy_async(dptr, arr.ctypes.data, nbytes, self._handle)
                refs.append(arr)
                continue
            pin = self._pinned_buffer(spec.name, nbytes)
            self._m.host_copy(self._m.host_array(pin, (nbytes,), np.uint8), arr)
            self._m.copy_async(dptr, int(pin.handle), nbytes, self._handle)
        self._apply_order()  # every check has passed: now wait for the producers
        if unaligned:
            for dst, src, nbytes in unaligned:
                self._m.copy_async(dst, src, nbytes, self._handle)
        if refs:
            self._hold(refs)
        return out, device_call

    def _switch_stream(self, stream: Any) -> None:
        """Run on ``stream`` from now on. The buffers this context reuses were last used on the previous
        stream: the new one first waits for the work queued there (one event)."""
        new = self._m.to_stream(stream)
        handle = self._m.stream_handle(new)
        self._order.after(handle, self._handle)
        self.stream, self._handle = new, handle
        self._own_stream = False
        self._last_key = None

    def _describe_ordering(self, obj: Any) -> ArrayInfo:
        """Describe an array whose producer's pending work must come before the context's stream.

        PyTorch tensors are read through their attributes; PyTorch's current stream is noted and waited for by
        :meth:`_apply_order` once the call has passed validation (what their ``__dlpack__(stream=...)`` would do,
        for a fraction of its cost). Everything else goes through DLPack / ``__cuda_array_interface__`` with the
        stream handshake those protocols define.
        """
        if _kind_of(type(obj)) == "torch":
            info = describe_array(obj, self._handle, ordered=True)
            if info.kind == "device":
                producer = torch_current_stream(info.device)
                if producer != self._handle:
                    self._producers.append(producer)
                return info
        return describe_array(obj, self._handle)

    def _apply_order(self) -> None:
        for producer in dict.fromkeys(self._producers):
            self._order.after(self._handle, producer)
        self._producers.clear()

    def _bind_outputs(self, state: _ShapeState, outputs: Mapping[str, Any] | None, device_call: bool,
                      ordered: bool = False, factory: OutputFactory | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {}
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
            if target is None and factory is not None:
                made, ptr = factory(spec.name, shape, spec.dtype)  # made as asked: no need to inspect it
                self._bind(spec.name, ptr)
                result[spec.name] = made
                continue
            if target is not None:
                info = describe_array(target, self._handle, ordered=True) if ordered else \
                    self._describe_ordering(target)
                if info.shape != shape or info.dtype != spec.dtype.name or not info.contiguous:
                    raise InputError(
                        f"output buffer {spec.name!r} is {info.dtype}[{format_shape(info.shape)}]; this call "
                        f"needs a contiguous {spec.dtype.name}[{format_shape(shape)}]")
                if info.kind == "device":
                    if info.device != self.engine.device_index:
                        raise InputError(f"output buffer {spec.name!r} is on device {info.device}, not "
                                         f"{self.engine.device_index}")
                    if info.ptr & 255:
                        raise InputError(
                            f"output buffer {spec.name!r} starts at {info.ptr:#x}, which is not 256-byte aligned "
                            "as TensorRT requires (NvInferRuntime.h, setTensorAddress); pass a buffer that starts "
                            "an allocation (torch.empty / cupy.empty), not a view into the middle of one")
                    self._bind(spec.name, info.ptr)
                else:
                    self._bind(spec.name, self._device_buffer(spec.name, nbytes))
                result[spec.name] = target
            elif device_call:
                buf = self.engine.pool.allocate(nbytes, self.stream)
                self._bind(spec.name, int(buf.handle))
                result[spec.name] = self._m.DeviceArray(buf, shape, npd, self.stream)
            else:
                self._bind(spec.name, self._device_buffer(spec.name, nbytes))
                result[spec.name] = None
        return result

    def _finish_host(self, state: _ShapeState, result: dict[str, Any], staged: bool = True) -> None:
        import numpy as np

        core = self._m._core()
        for spec, shape, nbytes, npd in zip(self.outputs, state.out_shapes, state.out_nbytes, self._out_np,
                                            strict=True):
            target = result.get(spec.name)
            if shape is None:
                continue
            if target is None:
                target = self.engine.pinned.empty(shape, npd, self.stream)
                if self.engine.pinned.stream_ordered:
                    self._m.raw_owner(target)._trtkit_owner.set_deallocation_stream(core.LEGACY_DEFAULT_STREAM)
                result[spec.name] = target
            elif not isinstance(target, np.ndarray):
                continue
            elif staged and nbytes >= self._m.PARALLEL_COPY_MIN and not _is_trtkit_pinned(target):
                # A large pageable array: land in pinned memory at full speed, then copy out in parallel
                # once the stream is done (see _copy_out).
                pin = self._pinned_buffer("out:" + spec.name, nbytes)
                self._m.copy_async(int(pin.handle), self._addr[spec.name], nbytes, self._handle)
                self._copy_out.append((target, self._m.host_array(pin, (nbytes,), np.uint8)))
                continue
            self._m.copy_async(target.ctypes.data, self._addr[spec.name], nbytes, self._handle)

    def _finish_dds(self, result: dict[str, Any], device_call: bool, factory: OutputFactory | None = None) -> None:
        """Outputs with data-dependent shapes: read the shape the allocator was told, then copy/wrap."""
        self.stream.sync()
        alloc = self._out_alloc
        for spec, npd in zip(self.outputs, self._out_np, strict=True):
            if spec.name not in alloc.buffers or result.get(spec.name) is not None:
                continue
            dds_shape: Shape | None = alloc.shapes.get(spec.name)
            if dds_shape is None:
                raise self._fail(f"TensorRT did not report the shape of data-dependent output {spec.name!r}")
            nbytes = math.prod(dds_shape) * npd.itemsize
            src = alloc.buffers[spec.name]
            if device_call and factory is not None:
                target, dst = factory(spec.name, dds_shape, spec.dtype)
                self._m.copy_async(dst, int(src.handle), nbytes, self._handle)
                result[spec.name] = target
            elif device_call:
                buf = self.engine.pool.allocate(nbytes, self.stream)
                self._m.copy_async(int(buf.handle), int(src.handle), nbytes, self._handle)
                result[spec.name] = self._m.DeviceArray(buf, dds_shape, npd, self.stream)
            else:
                import numpy as np

                arr = np.empty(dds_shape, npd)
                self._m.copy_async(arr.ctypes.data, int(src.handle), nbytes, self._handle)
                result[spec.name] = arr
        self.stream.sync()

    def infer(self, inputs: Any, *, outputs: Mapping[str, Any] | None = None, stream: Any = None,
              sync_inputs: bool = True, output_factory: OutputFactory | None = None) -> dict[str, Any]:
        """Run the engine once and return outputs by name.

        Args:
            inputs: a dict by name, a sequence in input order, or one array for a one-input engine. NumPy arrays
                are staged through pinned memory; CUDA arrays (DLPack / CAI) are used in place.
            outputs: buffers to write into (NumPy or CUDA arrays of the exact output shape), by name.
            stream: run on this stream instead of the context's own (stream-like; borrowed).
            sync_inputs: True orders the producers' pending work before the stream through DLPack / CAI and
                keeps CUDA inputs alive until the stream has used them. False says the caller produced them on
                this stream and keeps them alive (or its allocator is stream-ordered there, as PyTorch's and
                CuPy's are on their current stream): faster, and what :class:`trtkit.Engine` does.
            output_factory: ``f(name, shape, dtype) -> (array, device_pointer)`` makes output arrays (e.g. with
                ``torch.empty``) instead of trtkit's pool: contiguous, of that shape and dtype, on the engine's
                device (trusted, not inspected). They are written in place and returned.

        Returns:
            NumPy outputs (pinned memory, ready) when every input is NumPy; otherwise
            :class:`~trtkit.memory.DeviceArray` outputs, ready in stream order on the stream used (no sync).

        Raises:
            InputError: the inputs or output buffers do not fit the engine; raised before anything is launched.
            ExecutionError: TensorRT rejected a call; carries TensorRT's log.
        """
        with self._lock:
            return self._infer_locked(inputs, outputs, stream, not sync_inputs, output_factory)

    def _infer_locked(self, inputs: Any, outputs: Mapping[str, Any] | None, stream: Any, ordered: bool,
                      factory: OutputFactory | None) -> dict[str, Any]:
        result, device_call = self._prepare(inputs, outputs, stream, ordered, factory)
        state = self._states[self._shape_key or ()]
        self._launch()
        if self._dds:
            self._finish_dds(result, device_call, factory)
        if device_call:
            return result
        self._finish_host(state, result)
        self.stream.sync()
        self._drain_copy_out()
        return result

    def _drain_copy_out(self) -> None:
        while self._copy_out:
            target, staged = self._copy_out.pop()
            self._m.host_copy(target, staged)

    def infer_async(self, inputs: Any, *, outputs: Mapping[str, Any] | None = None,
                    stream: Any = None) -> InferHandle:
        """Launch and return at once; ``handle.wait()`` gives the outputs. Engines with data-dependent output
        shapes synchronize inside (their output size is only known after the run)."""
        with self._lock:
            result, device_call = self._prepare(inputs, outputs, stream, False, None)
            state = self._states[self._shape_key or ()]
            self._launch()
            if self._dds:
                self._finish_dds(result, device_call)
            elif not device_call:
                self._finish_host(state, result, staged=False)  # the staging buffer is reused by the next call
            event = self.stream.record()
            if not device_call:
                self._pending = event
            return InferHandle(event, result, list(self._keep))

    # ---- fixed buffers (benchmarks, raw loops) -----------------------------------------------------------

    def prepare_static(self, shapes: Mapping[str, Sequence[int]], *, seed: int = 0) -> StaticIO:
        """Allocate and bind device buffers for ``shapes`` (inputs filled with random data) plus pinned host
        mirrors; then :meth:`enqueue` runs without any per-call work but the launch."""
        import numpy as np

        if self._host_in:
            raise UnsupportedFeatureError(
                f"static buffers need every input on the device; {', '.join(self._host_in)} are shape tensors "
                "(host values): run the engine with infer() instead")
        with self._lock:
            key = tuple(tuple(int(d) for d in shapes[n]) for n in self._in_names)
            state = self._ensure_shapes(key)
            if self._dds:
                raise UnsupportedFeatureError("static buffers need outputs whose shape is known before the run")
            rng = np.random.default_rng(seed)
            io = StaticIO({}, {}, {}, {})
            for spec, shape in zip(self.inputs, key, strict=True):
                npd = self._in_np[spec.name]
                host = self.engine.pinned.empty(shape, npd, self.stream)
                host[...] = rng.integers(0, 4, size=shape).astype(npd) if npd.kind in "iub" else \
                    rng.standard_normal(size=shape).astype(npd)
                buf = self.engine.pool.allocate(int(host.nbytes), self.stream)
                arr = self._m.DeviceArray(buf, shape, npd, self.stream)
                self._m.copy_async(arr.ptr, host.ctypes.data, int(host.nbytes), self._handle)
                self._bind(spec.name, arr.ptr)
                io.inputs[spec.name], io.host_inputs[spec.name] = arr, host
            for spec, oshape, nbytes, npd in zip(self.outputs, state.out_shapes, state.out_nbytes, self._out_np,
                                                 strict=True):
                assert oshape is not None
                buf = self.engine.pool.allocate(nbytes, self.stream)
                arr = self._m.DeviceArray(buf, oshape, npd, self.stream)
                self._bind(spec.name, arr.ptr)
                io.outputs[spec.name] = arr
                io.host_outputs[spec.name] = self.engine.pinned.empty(oshape, npd, self.stream)
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
        try:
            self.stream.sync()
        except Exception as exc:  # pragma: no cover - best effort at teardown
            _log.warning("stream sync at context close failed: %s", exc)
        self._graphs.clear()
        for buf in (*self._dev_bufs.values(), *([self._ctx_mem] if self._ctx_mem is not None else [])):
            buf.close(self.stream)
        self._dev_bufs.clear()
        self._pin_bufs.clear()
        self._keep.clear()
        self._order.close()
        self._ctx = None  # type: ignore[assignment]

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
