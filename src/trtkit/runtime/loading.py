"""Loading an engine: read the source (path, plan bytes or :class:`~trtkit.manifest.BuiltEngine`), check it fits
this backend and GPU (:mod:`trtkit.runtime.compat`), refuse host code and lean runtimes not asked for, load
plugins, deserialize; then :class:`LoadedEngine` (one GPU, a device pool and a pinned pool, a pool of contexts).

Arrays: NumPy inputs are staged through pinned memory (trtkit's own pinned arrays, from
:meth:`LoadedEngine.empty_pinned`, are copied directly); NumPy callers get NumPy outputs in pinned memory.
CUDA arrays (PyTorch, CuPy, cuda.core; DLPack or ``__cuda_array_interface__``) are used in place; their
callers get :class:`~trtkit.runtime.memory.DeviceArray` outputs from the device pool.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from trtkit.backend import Backend, CudaEngine, RtxRuntime, Runtime, get_backend
from trtkit.errors import (
    ClosedError,
    ConfigError,
    EngineFileError,
    EngineIncompatibleError,
    InputError,
    UnsupportedFeatureError,
)
from trtkit.gpu import DeviceInfo, check_device_index, device_info
from trtkit.log import get_logger
from trtkit.manifest import BuiltEngine, Manifest, read_engine_file
from trtkit.runtime.compat import check_compatibility, validity_reasons
from trtkit.runtime.context import Context
from trtkit.runtime.io import ArrayAdapter
from trtkit.runtime.memory.allocators import make_gpu_allocator
from trtkit.runtime.memory.pools import DevicePool, PinnedPool
from trtkit.runtime.memory.streams import StreamLike, new_stream
from trtkit.runtime.memory.streams import device as cuda_device
from trtkit.runtime.plans import check_plan, not_a_plan
from trtkit.runtime.results import OutputFactory, Outputs
from trtkit.runtime.tensors import describe_tensors, trt_mode

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import DTypeLike, NDArray

_current = threading.local()
"""The CUDA device trtkit last made current on each thread."""

__all__ = ["LoadedEngine", "load_engine"]

_log = get_logger("runtime")


def _read_source(source: object) -> tuple[bytes, Manifest | None, str]:
    if isinstance(source, BuiltEngine):
        return source.plan, source.manifest, "built engine"
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise EngineFileError("the engine plan is empty")
        check_plan(data, "the data given as a plan")
        return data, None, "plan bytes"
    if isinstance(source, str | os.PathLike):
        plan, manifest = read_engine_file(source)
        if manifest is None:  # a manifest's checksum already vouches for its plan
            check_plan(plan, repr(str(source)))
        return plan, manifest, str(Path(source))
    raise ConfigError(f"cannot load an engine from {type(source).__name__}; pass a path (str or Path), plan bytes "
                      "or a BuiltEngine")


def _deserialize(backend: Backend, runtime: Runtime, plan: bytes, source: str) -> CudaEngine:
    if backend.features.engine_validity:
        rtx = cast(RtxRuntime, runtime)
        size = int(rtx.engine_header_size or len(plan))
        with backend.capture() as cap:
            validity, diagnostics = rtx.get_engine_validity(plan[:size])
        if trt_mode(validity) == "INVALID":
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
        what = not_a_plan(plan)
        if what is not None:
            raise EngineFileError(f"{source} is not a TensorRT engine plan: it is {what}", tensorrt_log=cap.lines)
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
    check_device_index(device)
    plan, manifest, where = _read_source(source)
    be = get_backend(backend if backend is not None else (manifest.backend if manifest else None))
    check_compatibility(manifest, be, None, source=where)
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
        self.backend = backend
        self.plan = plan
        self.manifest = manifest
        self.device_info = device
        self.device_index = device.index
        self.source = source
        self._dev = cuda_device(device.index)
        self.pool = DevicePool(device.index)
        self.pinned = PinnedPool(device.index)
        self._stream = new_stream(self._dev)
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
        self._allocator: object = None
        if backend.features.gpu_async_allocator:
            self._allocator = make_gpu_allocator(
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
        _current.device = self.device_index  # loading made it current on this thread
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
        """Make the engine's device current on the calling thread (a no-op when it already is, as far as trtkit
        set it: a thread that runs engines on several GPUs switches each time)."""
        if getattr(_current, "device", None) != self.device_index:
            self._dev.set_current()
            _current.device = self.device_index

    def create_context(self, *, stream: StreamLike | None = None, cuda_graph: bool = False) -> Context:
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

    def infer(self, inputs: object, *, outputs: Mapping[str, object] | None = None,
              stream: StreamLike | None = None, sync_inputs: bool = True,
              output_factory: OutputFactory | None = None, family: ArrayAdapter | None = None) -> Outputs:
        """Run once on a pooled context; see :meth:`Context.infer`. Safe to call from many threads."""
        self.ensure_current()
        ctx = self._primary
        if ctx is not None and ctx._lock.acquire(blocking=False):  # the common, uncontended case
            try:
                return ctx._infer_locked(inputs, outputs, stream, not sync_inputs, output_factory, family)
            finally:
                ctx._lock.release()
        with self.borrow_context() as ctx:
            return ctx.infer(inputs, outputs=outputs, stream=stream, sync_inputs=sync_inputs,
                             output_factory=output_factory, family=family)

    def empty_pinned(self, name_or_shape: str | Sequence[int], dtype: DTypeLike | None = None,
                     shape: Sequence[int] | None = None) -> NDArray[np.generic]:
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

    def memory_stats(self) -> dict[str, object]:
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
