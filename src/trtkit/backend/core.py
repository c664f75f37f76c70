"""A TensorRT flavour trtkit runs on: :class:`Backend` (module, version, :class:`Features`, log bridge).

trtkit runs on two backends:

* ``"tensorrt"``: full NVIDIA TensorRT 10.x or 11.x (``import tensorrt``);
* ``"tensorrt_rtx"``: TensorRT for RTX (``import tensorrt_rtx``), which builds on machines without a GPU.

Code above this package asks :class:`Features` what the backend can do; it never imports TensorRT and never
compares version strings. TensorRT signals failure with ``None``, ``False`` or ``-1`` and writes the reason
only to its logger: :meth:`Backend.capture` collects what TensorRT logs during a call so the exception raised
can carry it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final, Literal, TypeVar, cast

from trtkit.backend.logs import LogCapture, LogSink, make_trt_logger
from trtkit.backend.protocols import Builder, EnumValue, PluginRegistry, Runtime, TrtLogger, TrtModule
from trtkit.errors import BuildError, DependencyError, ExecutionError, TrtkitError, UnsupportedFeatureError
from trtkit.log import get_logger

__all__ = [
    "BACKEND_NAMES",
    "DISPLAY_NAMES",
    "MIN_TENSORRT",
    "MODULE_NAMES",
    "Backend",
    "BackendName",
    "Features",
    "install_hint",
    "version_tuple",
]

BackendName = Literal["tensorrt", "tensorrt_rtx"]
BACKEND_NAMES: Final[tuple[BackendName, ...]] = ("tensorrt", "tensorrt_rtx")

MODULE_NAMES: Final[dict[BackendName, str]] = {"tensorrt": "tensorrt", "tensorrt_rtx": "tensorrt_rtx"}
"""The Python module each backend imports."""
DISPLAY_NAMES: Final[dict[BackendName, str]] = {"tensorrt": "TensorRT", "tensorrt_rtx": "TensorRT-RTX"}
_INSTALL: Final[dict[BackendName, str]] = {
    "tensorrt": "pip install 'tensorrt>=10.1'  (full TensorRT; or, from a trtkit clone: pip install '.[tensorrt]')",
    "tensorrt_rtx": "pip install tensorrt-rtx-cu12  (TensorRT-RTX, builds engines even without a GPU; or, from a "
                    "trtkit clone: pip install '.[rtx]')",
}

_log = get_logger("backend")

_T = TypeVar("_T")


def install_hint(name: BackendName) -> str:
    """The pip command that installs backend ``name``."""
    return _INSTALL[name]


MIN_TENSORRT: Final = (10, 1)
"""The oldest full TensorRT trtkit supports: 10.0 lacks ``IExecutionContext.set_device_memory``,
``ICudaEngine.device_memory_size_v2`` and ``get_device_memory_size_for_profile_v2`` (added in 10.1)."""

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

    def __init__(self, name: BackendName, module: ModuleType | object) -> None:
        self.name: BackendName = name
        self.trt: TrtModule = cast(TrtModule, module)
        self.version: str = str(getattr(module, "__version__", "unknown"))
        self.display_name = DISPLAY_NAMES[name]
        if name == "tensorrt" and version_tuple(self.version)[:2] < MIN_TENSORRT:
            raise DependencyError(
                f"TensorRT {self.version} is too old: trtkit needs TensorRT >= 10.1 (10.0 lacks "
                "set_device_memory and device_memory_size_v2). Upgrade it: pip install -U 'tensorrt>=10.1'")
        self._sink = LogSink()
        self._logger: TrtLogger | None = None
        self._plugins_ready = False
        self._plugin_libs: set[str] = set()
        self._lock = threading.Lock()
        self.features = self._detect_features(module)

    @classmethod
    def from_module(cls, name: BackendName, module: ModuleType | object) -> Backend:
        """Wrap an already imported TensorRT-like module (used by tests with a TensorRT test double)."""
        return cls(name, module)

    def __repr__(self) -> str:
        return f"<Backend {self.display_name} {self.version}>"

    @property
    def label(self) -> str:
        """``"TensorRT 10.13.0"`` or ``"TensorRT-RTX 1.7.1.116"``."""
        return f"{self.display_name} {self.version}"

    def _detect_features(self, m: ModuleType | object) -> Features:
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
    def logger(self) -> TrtLogger:
        """The ``trt.ILogger`` shared by every builder and runtime trtkit creates for this backend."""
        with self._lock:
            if self._logger is None:
                self._logger = make_trt_logger(self.trt, self._sink)
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
        return self._create(self.trt.Runtime, "Runtime", ExecutionError)

    def create_builder(self) -> Builder:
        """A new ``trt.Builder`` with trtkit's logger.

        Raises:
            BuildError: TensorRT could not create it; the message carries TensorRT's log.
        """
        return self._create(self.trt.Builder, "Builder", BuildError)

    def _create(self, factory: Callable[[TrtLogger], _T | None], what: str,
                error: type[ExecutionError] | type[BuildError]) -> _T:
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

    def capture(self, min_level: int = logging.WARNING, *,
                on_interrupt: threading.Event | None = None) -> contextlib.AbstractContextManager[LogCapture]:
        """Collect TensorRT's messages of ``min_level`` and above logged while the block runs.

        A Ctrl-C that TensorRT's log callback received during the block sets ``on_interrupt``, or without one
        raises ``KeyboardInterrupt`` when the block ends (TensorRT itself would drop it)."""
        return self._sink.capture(min_level, on_interrupt)

    # ---- enums -------------------------------------------------------------------------------------------

    def enum(self, enum_name: str, member: str, *, option: str | None = None) -> EnumValue:
        """Return ``trt.<enum_name>.<member>``, or raise UnsupportedFeatureError naming what exists."""
        namespace: object | None = getattr(self.trt, enum_name, None)
        value: EnumValue | None = getattr(namespace, member, None) if namespace is not None else None
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
