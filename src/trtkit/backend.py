"""The one place that imports TensorRT: backend selection, features, log bridging and Protocol types.

trtkit runs on two backends:

* ``"tensorrt"``: full NVIDIA TensorRT 10.x or 11.x (``import tensorrt``);
* ``"tensorrt_rtx"``: TensorRT for RTX (``import tensorrt_rtx``), which builds on machines without a GPU.

:func:`get_backend` picks one: the ``name`` argument, else the ``TRTKIT_BACKEND`` environment variable, else
full TensorRT when it is importable and TensorRT-RTX otherwise. Code above this module asks
:class:`Features` what the backend can do; it never imports TensorRT and never compares version strings.

TensorRT signals failure with ``None``, ``False`` or ``-1`` and writes the reason only to its logger.
:meth:`Backend.capture` collects what TensorRT logs during a call so the exception raised can carry it.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, cast

from trtkit.errors import BuildError, DependencyError, ExecutionError, TrtkitError, UnsupportedFeatureError
from trtkit.log import get_logger

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendName",
    "Features",
    "LogCapture",
    "available_backends",
    "get_backend",
    "install_hint",
]

BackendName = Literal["tensorrt", "tensorrt_rtx"]
BACKEND_NAMES: Final[tuple[BackendName, ...]] = ("tensorrt", "tensorrt_rtx")
ENV_VAR: Final = "TRTKIT_BACKEND"

_MODULES: Final[dict[BackendName, str]] = {"tensorrt": "tensorrt", "tensorrt_rtx": "tensorrt_rtx"}
_DISPLAY: Final[dict[BackendName, str]] = {"tensorrt": "TensorRT", "tensorrt_rtx": "TensorRT-RTX"}
_ALIASES: Final[dict[str, BackendName]] = {
    "tensorrt": "tensorrt",
    "trt": "tensorrt",
    "tensorrt_rtx": "tensorrt_rtx",
    "tensorrt-rtx": "tensorrt_rtx",
    "rtx": "tensorrt_rtx",
}
_INSTALL: Final[dict[BackendName, str]] = {
    "tensorrt": "pip install 'trtkit[tensorrt]'  (full TensorRT >= 10.1, from NVIDIA's package index)",
    "tensorrt_rtx": "pip install 'trtkit[rtx]'  (TensorRT-RTX; builds engines even without a GPU)",
}

_log = get_logger("backend")


def install_hint(name: BackendName) -> str:
    """The pip command that installs backend ``name``."""
    return _INSTALL[name]


MIN_TENSORRT: Final = (10, 1)
"""The oldest full TensorRT trtkit supports: 10.0 lacks ``IExecutionContext.set_device_memory``,
``ICudaEngine.device_memory_size_v2`` and ``get_device_memory_size_for_profile_v2`` (added in 10.1)."""

_trt_log = get_logger("tensorrt")


# --------------------------------------------------------------------------------------------------------
# Protocol types for the TensorRT surface trtkit calls. Enum namespaces are typed Any: their members differ
# between TensorRT 10, 11 and RTX, and trtkit looks them up by name through Backend.enum().
# --------------------------------------------------------------------------------------------------------


class HostMemory(Protocol):
    """``trt.IHostMemory``: a serialized blob; supports the buffer protocol."""

    @property
    def nbytes(self) -> int: ...


class Tensor(Protocol):
    """``trt.ITensor`` as seen on network inputs and outputs."""

    name: str
    shape: Any

    @property
    def dtype(self) -> Any: ...
    @property
    def is_shape_tensor(self) -> bool: ...


class Network(Protocol):
    """``trt.INetworkDefinition``."""

    @property
    def num_inputs(self) -> int: ...
    @property
    def num_outputs(self) -> int: ...
    @property
    def num_layers(self) -> int: ...
    def get_input(self, index: int) -> Tensor: ...
    def get_output(self, index: int) -> Tensor: ...


class ParserErrorRecord(Protocol):
    """``trt.ParserError``."""

    def code(self) -> Any: ...
    def desc(self) -> str: ...
    def node(self) -> int: ...
    def node_name(self) -> str: ...
    def node_operator(self) -> str: ...


class OnnxParser(Protocol):
    """``trt.OnnxParser``."""

    @property
    def num_errors(self) -> int: ...
    def parse(self, model: bytes, path: str | None = ...) -> bool: ...
    def parse_from_file(self, model: str) -> bool: ...
    def get_error(self, index: int) -> ParserErrorRecord: ...
    def clear_errors(self) -> None: ...


class OptimizationProfile(Protocol):
    """``trt.IOptimizationProfile``."""

    def set_shape(self, input: str, min: Sequence[int], opt: Sequence[int], max: Sequence[int]) -> None: ...
    def set_shape_input(
        self, input: str, min: Sequence[int], opt: Sequence[int], max: Sequence[int]
    ) -> None: ...


class TimingCache(Protocol):
    """``trt.ITimingCache``."""

    def serialize(self) -> HostMemory: ...
    def combine(self, input_cache: TimingCache, ignore_mismatch: bool) -> bool: ...


class BuilderConfig(Protocol):
    """``trt.IBuilderConfig``."""

    builder_optimization_level: int
    profiling_verbosity: Any
    hardware_compatibility_level: Any
    max_aux_streams: int
    progress_monitor: Any

    @property
    def num_optimization_profiles(self) -> int: ...
    @property
    def num_compute_capabilities(self) -> int: ...  # (TensorRT-RTX only)
    @num_compute_capabilities.setter
    def num_compute_capabilities(self, value: int) -> None: ...
    def set_flag(self, flag: Any) -> None: ...
    def clear_flag(self, flag: Any) -> None: ...
    def get_flag(self, flag: Any) -> bool: ...
    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None: ...
    def add_optimization_profile(self, profile: OptimizationProfile) -> int: ...
    def create_timing_cache(self, serialized_timing_cache: bytes) -> TimingCache | None: ...
    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool: ...
    def get_timing_cache(self) -> TimingCache | None: ...
    def set_tactic_sources(self, tactic_sources: int) -> bool: ...
    def set_compute_capability(self, compute_capability: Any, index: int) -> bool: ...  # (TensorRT-RTX only)
    def get_compute_capability(self, index: int) -> Any: ...  # (TensorRT-RTX only)


class PluginRegistry(Protocol):
    """``trt.IPluginRegistry``."""

    def load_library(self, plugin_path: str) -> Any: ...


class Builder(Protocol):
    """``trt.Builder``."""

    max_threads: int

    def create_network(self, flags: int = ...) -> Network: ...
    def create_builder_config(self) -> BuilderConfig: ...
    def create_optimization_profile(self) -> OptimizationProfile: ...
    def build_serialized_network(self, network: Network, config: BuilderConfig) -> HostMemory | None: ...
    def get_plugin_registry(self) -> PluginRegistry: ...


class EngineInspector(Protocol):
    """``trt.EngineInspector``."""

    execution_context: Any

    def get_engine_information(self, format: Any) -> str: ...


class ExecutionContext(Protocol):
    """``trt.IExecutionContext``."""

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool: ...
    def set_input_shape(self, name: str, shape: Sequence[int]) -> bool: ...
    def set_tensor_address(self, name: str, memory: int) -> bool: ...
    def get_tensor_shape(self, name: str) -> Any: ...
    def infer_shapes(self) -> list[str]: ...
    def execute_async_v3(self, stream_handle: int) -> bool: ...
    def update_device_memory_size_for_shapes(self) -> int: ...
    def set_device_memory(self, memory: int, size: int) -> None: ...
    def set_output_allocator(self, name: str, output_allocator: Any) -> bool: ...
    def set_input_consumed_event(self, event: int) -> bool: ...


class RtxExecutionContext(ExecutionContext, Protocol):
    """``trt.IExecutionContext`` (TensorRT-RTX only): what TensorRT-RTX adds."""

    def is_stream_capturable(self, stream: int) -> bool: ...


class RuntimeConfig(Protocol):
    """``trt.IRuntimeConfig`` (TensorRT-RTX only): per-context runtime options."""

    dynamic_shapes_kernel_specialization_strategy: Any

    def set_execution_context_allocation_strategy(self, strategy: Any) -> None: ...


class CudaEngine(Protocol):
    """``trt.ICudaEngine``."""

    @property
    def num_io_tensors(self) -> int: ...
    @property
    def num_optimization_profiles(self) -> int: ...
    @property
    def num_layers(self) -> int: ...
    @property
    def device_memory_size_v2(self) -> int: ...
    def get_tensor_name(self, index: int) -> str: ...
    def get_tensor_mode(self, name: str) -> Any: ...
    def get_tensor_dtype(self, name: str) -> Any: ...
    def get_tensor_shape(self, name: str) -> Any: ...
    def get_tensor_location(self, name: str) -> Any: ...
    def get_tensor_format(self, name: str) -> Any: ...
    def is_shape_inference_io(self, name: str) -> bool: ...
    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Any]: ...
    def get_tensor_profile_values(self, profile_index: int, name: str) -> list[Any]: ...
    def get_device_memory_size_for_profile_v2(self, profile_index: int) -> int: ...
    def create_execution_context(self, strategy: Any = ...) -> ExecutionContext | None: ...
    def create_engine_inspector(self) -> EngineInspector | None: ...
    def serialize(self) -> HostMemory: ...


class RtxCudaEngine(CudaEngine, Protocol):
    """``trt.ICudaEngine`` (TensorRT-RTX only): contexts made from a runtime config."""

    def create_runtime_config(self) -> RuntimeConfig: ...


class Runtime(Protocol):
    """``trt.Runtime``."""

    gpu_allocator: Any
    engine_host_code_allowed: bool

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> CudaEngine | None: ...
    def load_runtime(self, path: str) -> Runtime | None: ...
    def get_plugin_registry(self) -> PluginRegistry: ...


class RtxRuntime(Runtime, Protocol):
    """``trt.Runtime`` (TensorRT-RTX only): a cheap validity check of a plan before deserializing."""

    @property
    def engine_header_size(self) -> int: ...
    def get_engine_validity(self, buffer: bytes) -> tuple[Any, int]: ...


class TrtModule(Protocol):
    """The ``tensorrt`` / ``tensorrt_rtx`` module, as far as trtkit uses it."""

    __version__: str
    ILogger: Any
    IProgressMonitor: Any
    IGpuAsyncAllocator: Any
    IOutputAllocator: Any
    BuilderFlag: Any
    MemoryPoolType: Any
    NetworkDefinitionCreationFlag: Any
    ProfilingVerbosity: Any
    DataType: Any
    TensorIOMode: Any
    TensorLocation: Any
    ExecutionContextAllocationStrategy: Any
    LayerInformationFormat: Any
    TensorFormat: Any

    def Builder(self, logger: Any) -> Builder: ...
    def Runtime(self, logger: Any) -> Runtime: ...
    def OnnxParser(self, network: Network, logger: Any) -> OnnxParser: ...
    def get_plugin_registry(self) -> PluginRegistry: ...
    def init_libnvinfer_plugins(self, logger: Any, namespace: str) -> bool: ...


# --------------------------------------------------------------------------------------------------------
# Log bridge
# --------------------------------------------------------------------------------------------------------

_SEVERITY_TO_LEVEL: Final[dict[str, int]] = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "VERBOSE": logging.DEBUG,
}


class LogCapture:
    """Messages TensorRT logged while a :meth:`Backend.capture` block was active."""

    def __init__(self, min_level: int) -> None:
        self.min_level = min_level
        self.records: list[tuple[int, str]] = []

    @property
    def lines(self) -> list[str]:
        """The captured messages, prefixed with their level name."""
        return [f"[{logging.getLevelName(level)}] {msg}" for level, msg in self.records]

    @property
    def errors(self) -> list[str]:
        """Only the messages of level ERROR and above."""
        return [msg for level, msg in self.records if level >= logging.ERROR]


class _LogSink:
    """Receives TensorRT's messages, forwards them to ``trtkit.tensorrt`` and to active captures."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._captures: list[LogCapture] = []
        # Recent warnings and errors, numbered, for calls on the hot path that cannot afford a capture block:
        # take mark() before the call and read since(mark) only when it failed.
        self._seq = 0
        self._recent: collections.deque[tuple[int, int, str]] = collections.deque(maxlen=64)

    def emit(self, severity: Any, message: str) -> None:
        name = getattr(severity, "name", str(severity)).rsplit(".", 1)[-1]
        level = _SEVERITY_TO_LEVEL.get(name, logging.INFO)
        if _trt_log.isEnabledFor(level):
            _trt_log.log(level, "%s", message)
        if level >= logging.WARNING:
            with self._lock:
                self._seq += 1
                self._recent.append((self._seq, level, message))
        if self._captures:
            with self._lock:
                for cap in self._captures:
                    if level >= cap.min_level:
                        cap.records.append((level, message))

    def mark(self) -> int:
        return self._seq

    def since(self, mark: int) -> list[str]:
        with self._lock:
            return [f"[{logging.getLevelName(level)}] {msg}" for seq, level, msg in self._recent if seq > mark]

    @contextlib.contextmanager
    def capture(self, min_level: int) -> Iterator[LogCapture]:
        cap = LogCapture(min_level)
        with self._lock:
            self._captures.append(cap)
        try:
            yield cap
        finally:
            with self._lock:
                self._captures.remove(cap)


def _make_trt_logger(module: Any, sink: _LogSink) -> Any:
    base = module.ILogger

    class _Bridge(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            sink.emit(severity, msg)

    return _Bridge()


# --------------------------------------------------------------------------------------------------------
# Backend and features
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Features:
    """What the active backend can do. Derived from the module's own API, never from version strings."""

    precision_flags: bool
    """Builder flags FP16/BF16/INT8/FP8 exist (TensorRT 10.x). False on TensorRT 11 and RTX."""
    always_strongly_typed: bool
    """Every network is strongly typed (TensorRT 11, RTX): precision comes from the model's types."""
    timing_cache: bool
    """A timing cache can be loaded, merged and saved (full TensorRT; a no-op on RTX)."""
    tactic_sources: bool
    """``config.set_tactic_sources`` is meaningful (full TensorRT)."""
    compute_capability_targets: bool
    """Engines can target a list of compute capabilities (TensorRT-RTX)."""
    refit: bool
    strip_plan: bool
    weight_streaming: bool
    version_compatible: bool
    hardware_compatibility: bool
    engine_validity: bool
    """``runtime.get_engine_validity`` checks a plan header before deserializing (TensorRT-RTX)."""
    runtime_cache: bool
    output_allocator: bool
    gpu_async_allocator: bool
    user_managed_context_memory: bool
    supported_compute_capabilities: tuple[tuple[int, int], ...] | None
    """Compute capabilities the runtime accepts, or None when any supported by the CUDA driver."""
    gpu_allocator_stream_index: int
    """Where the stream arrives in ``IGpuAsyncAllocator.allocate_async``'s Python override: 2 for
    ``(size, alignment, stream, flags)`` (TensorRT 10.x to 11.1), 3 for ``(size, alignment, flags, stream)``
    (TensorRT 11.2 and later, TensorRT-RTX); seen through each version's binding trampolines."""
    runtime_config: bool
    """Contexts are created from an ``IRuntimeConfig`` with TensorRT-RTX's kernel specialization strategy."""


# TensorRT-RTX 1.x runs only on these (facts: deserializing on 9.0 fails with "does not support this
# compute capability").
_RTX_RUNTIME_CCS: Final = ((7, 5), (8, 0), (8, 6), (8, 9), (12, 0), (12, 1))


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.13.3.9"`` -> ``(10, 13, 3, 9)``; non-digits in a part are dropped (``"7.post1"`` -> 7)."""
    out = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


class Backend:
    """One importable TensorRT flavour: its module, version, features and log bridge.

    Use :func:`get_backend`; tests may build one around a test double with :meth:`from_module`.
    """

    def __init__(self, name: BackendName, module: Any) -> None:
        self.name: BackendName = name
        self.trt: TrtModule = cast(TrtModule, module)
        self.version: str = str(getattr(module, "__version__", "unknown"))
        self.display_name = _DISPLAY[name]
        if name == "tensorrt" and version_tuple(self.version)[:2] < MIN_TENSORRT:
            raise DependencyError(
                f"TensorRT {self.version} is too old: trtkit needs TensorRT >= 10.1 (10.0 lacks "
                "set_device_memory and device_memory_size_v2). Upgrade it: pip install -U 'tensorrt>=10.1'")
        self._sink = _LogSink()
        self._logger: Any = None
        self._plugins_ready = False
        self._plugin_libs: set[str] = set()
        self._lock = threading.Lock()
        self.features = self._detect_features(module)

    @classmethod
    def from_module(cls, name: BackendName, module: Any) -> Backend:
        """Wrap an already imported TensorRT-like module (used by tests with a TensorRT test double)."""
        return cls(name, module)

    def __repr__(self) -> str:
        return f"<Backend {self.display_name} {self.version}>"

    @property
    def label(self) -> str:
        """``"TensorRT 10.13.0"`` or ``"TensorRT-RTX 1.7.1.116"``."""
        return f"{self.display_name} {self.version}"

    def _detect_features(self, m: Any) -> Features:
        flags = getattr(m, "BuilderFlag", None)

        def flag(name: str) -> bool:
            return flags is not None and hasattr(flags, name)

        rtx = self.name == "tensorrt_rtx"
        runtime_cls = getattr(m, "Runtime", None)
        strategies = getattr(m, "ExecutionContextAllocationStrategy", None)
        return Features(
            precision_flags=flag("FP16"),
            always_strongly_typed=not flag("FP16"),
            timing_cache=not rtx,
            tactic_sources=not rtx and hasattr(m, "TacticSource"),
            compute_capability_targets=hasattr(m, "ComputeCapability"),
            refit=flag("REFIT"),
            strip_plan=flag("STRIP_PLAN"),
            weight_streaming=flag("WEIGHT_STREAMING"),
            version_compatible=flag("VERSION_COMPATIBLE"),
            hardware_compatibility=hasattr(m, "HardwareCompatibilityLevel"),
            engine_validity=runtime_cls is not None and hasattr(runtime_cls, "get_engine_validity"),
            runtime_cache=hasattr(m, "IRuntimeCache"),
            output_allocator=hasattr(m, "IOutputAllocator"),
            gpu_async_allocator=hasattr(m, "IGpuAsyncAllocator"),
            user_managed_context_memory=strategies is not None and hasattr(strategies, "USER_MANAGED"),
            supported_compute_capabilities=_RTX_RUNTIME_CCS if rtx else None,
            gpu_allocator_stream_index=3 if rtx or version_tuple(self.version)[:2] >= (11, 2) else 2,
            runtime_config=rtx and hasattr(getattr(m, "ICudaEngine", None), "create_runtime_config"),
        )

    # ---- logging -----------------------------------------------------------------------------------------

    @property
    def logger(self) -> Any:
        """The ``trt.ILogger`` shared by every builder and runtime trtkit creates for this backend."""
        with self._lock:
            if self._logger is None:
                self._logger = _make_trt_logger(self.trt, self._sink)
            return self._logger

    def init_plugins(self) -> None:
        """Register TensorRT's bundled plugins once (``trt.init_libnvinfer_plugins``), as trtexec does."""
        with self._lock:
            if self._plugins_ready:
                return
        init = getattr(self.trt, "init_libnvinfer_plugins", None)
        if init is not None:
            with self.capture() as cap:
                ok = init(self.logger, "")
            if not ok:
                _log.warning("%s could not register its bundled plugins: %s", self.label, cap.lines)
        with self._lock:
            self._plugins_ready = True

    def create_runtime(self) -> Runtime:
        """A new ``trt.Runtime`` with trtkit's logger.

        Raises:
            ExecutionError: TensorRT could not create it (it raises ``TypeError: factory function returned
                nullptr``, with the reason only in its log); the message carries that log.
        """
        return cast(Runtime, self._create(self.trt.Runtime, "Runtime", ExecutionError))

    def create_builder(self) -> Builder:
        """A new ``trt.Builder`` with trtkit's logger.

        Raises:
            BuildError: TensorRT could not create it; the message carries TensorRT's log.
        """
        return cast(Builder, self._create(self.trt.Builder, "Builder", BuildError))

    def _create(self, factory: Any, what: str, error: type[ExecutionError] | type[BuildError]) -> Any:
        why = "it returned None"
        with self.capture() as cap:
            try:
                obj = factory(self.logger)
            except TypeError as exc:  # pybind11: "factory function returned nullptr"
                obj, why = None, f"TypeError: {exc}"
        if obj is None:
            raise error(
                f"{self.label} could not create a {what} ({why}). TensorRT creates one only when CUDA "
                "initialises: check that `nvidia-smi` sees a GPU, that the driver is new enough for this "
                f"{self.display_name}, and that the GPU is one it supports", tensorrt_log=cap.lines)
        return obj

    def load_plugin_libraries(self, registry: PluginRegistry, paths: Sequence[str], *,
                              missing: type[TrtkitError], refused: type[TrtkitError]) -> None:
        """Load plugin shared libraries into ``registry``, each path once per process (TensorRT refuses a
        library whose plugins are already registered).

        Raises:
            missing: a path is not a file. refused: TensorRT could not load it (with TensorRT's log).
        """
        from pathlib import Path

        for path in paths:
            p = Path(path).resolve()
            with self._lock:
                if str(p) in self._plugin_libs:
                    continue
            if not p.is_file():
                raise missing(f"plugin library {path!r} does not exist; give the path of the shared library that "
                              "implements the plugins (plugins=[...] / --plugins)")
            with self.capture() as cap:
                handle = registry.load_library(str(p))
            if handle is None:
                raise refused(
                    f"TensorRT could not load plugin library {path!r} (is it built for {self.label}, and are its "
                    "plugins not already registered?)", tensorrt_log=cap.lines)
            with self._lock:
                self._plugin_libs.add(str(p))
            _log.info("loaded plugin library %s", p)

    def log_mark(self) -> int:
        """A cheap marker for :meth:`log_since`; for hot-path calls where :meth:`capture` costs too much."""
        return self._sink.mark()

    def log_since(self, mark: int) -> list[str]:
        """Warnings and errors TensorRT logged after ``mark`` (the last 64 kept), for an exception message."""
        return self._sink.since(mark)

    def capture(self, min_level: int = logging.WARNING) -> contextlib.AbstractContextManager[LogCapture]:
        """Collect TensorRT's messages of ``min_level`` and above logged while the block runs."""
        return self._sink.capture(min_level)

    # ---- enums -------------------------------------------------------------------------------------------

    def enum(self, enum_name: str, member: str, *, option: str | None = None) -> Any:
        """Return ``trt.<enum_name>.<member>``, or raise UnsupportedFeatureError naming what exists."""
        namespace = getattr(self.trt, enum_name, None)
        value = getattr(namespace, member, None) if namespace is not None else None
        if value is None:
            have = sorted(getattr(namespace, "__members__", {})) if namespace is not None else []
            what = f"option {option}: " if option else ""
            raise UnsupportedFeatureError(
                f"{what}{enum_name}.{member} is not available on {self.label}"
                + (f"; it has {', '.join(have)}" if have else "")
                + "."
            )
        return value

    def require(self, available: bool, option: str, why: str) -> None:
        """Raise UnsupportedFeatureError for ``option`` unless ``available``."""
        if not available:
            raise UnsupportedFeatureError(f"{option} is not available on {self.label}: {why}")


_backends: dict[BackendName, Backend] = {}
_backends_lock = threading.Lock()


def _normalize(name: str) -> BackendName:
    key = name.strip().lower()
    if key not in _ALIASES:
        raise UnsupportedFeatureError(
            f"unknown backend {name!r}; expected one of 'tensorrt', 'tensorrt_rtx' or 'auto' "
            f"(argument backend= or environment variable {ENV_VAR})"
        )
    return _ALIASES[key]


def _import(name: BackendName) -> Backend:
    with _backends_lock:
        if name in _backends:
            return _backends[name]
        try:
            module = importlib.import_module(_MODULES[name])
        except (ImportError, OSError) as exc:
            raise DependencyError(
                f"{_DISPLAY[name]} is not installed or failed to load ({type(exc).__name__}: {exc}). "
                f"Install it with: {_INSTALL[name]}"
            ) from exc
        backend = Backend(name, module)
        _log.debug("loaded %s", backend.label)
        _backends[name] = backend
        return backend


def available_backends() -> list[BackendName]:
    """Backends whose module can be imported here, in preference order."""
    found: list[BackendName] = []
    for name in BACKEND_NAMES:
        try:
            _import(name)
        except DependencyError:
            continue
        found.append(name)
    return found


def get_backend(name: str | None = None) -> Backend:
    """Return the backend to use.

    Args:
        name: ``"tensorrt"``, ``"tensorrt_rtx"`` (aliases ``"trt"``, ``"rtx"``) or ``"auto"``. ``None`` reads
            the ``TRTKIT_BACKEND`` environment variable, then falls back to ``"auto"``: full TensorRT when it
            is importable, otherwise TensorRT-RTX.

    Raises:
        DependencyError: the requested backend, or with ``"auto"`` any backend, cannot be imported.
        UnsupportedFeatureError: ``name`` is not a backend name.
    """
    if name is None:
        name = os.environ.get(ENV_VAR) or "auto"
    if name.strip().lower() != "auto":
        return _import(_normalize(name))
    errors: list[str] = []
    for candidate in BACKEND_NAMES:
        try:
            return _import(candidate)
        except DependencyError as exc:
            errors.append(exc.message)
    raise DependencyError(
        "no TensorRT backend is installed. Install one of:\n"
        f"  {_INSTALL['tensorrt']}\n  {_INSTALL['tensorrt_rtx']}\n"
        "Details:\n  " + "\n  ".join(errors)
    )
