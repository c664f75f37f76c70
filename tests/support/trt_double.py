"""A test double of the TensorRT runtime API, used where no TensorRT engine can run.

It is module-like: ``Backend.from_module("tensorrt", trt_double)`` gives trtkit a backend whose runtime reads
the double's own plans (:func:`make_plan`), and whose ``execute_async_v3`` does the plan's op on the real
device memory bound with ``set_tensor_address``, on the given stream (CuPy, ``ExternalStream`` +
``UnownedMemory``). Everything else (enums, shapes, profiles, preconditions) is plain Python and runs without
a GPU. :func:`make_module` builds variants (TensorRT-RTX flavour, allocator argument order, version).

Each behaviour follows NVIDIA's documentation; the comment or docstring beside it names the API doc.
References:
  [PY]  TensorRT Python API, https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/
        (infer/Core/Runtime.html, infer/Core/Engine.html, infer/Core/ExecutionContext.html,
        infer/Core/GpuAllocator.html, infer/Core/OutputAllocator.html)
  [CPP] TensorRT C++ API, nvinfer1::IExecutionContext / ICudaEngine / IRuntime,
        https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/c-api/
  [DG]  TensorRT developer guide, "Working with Dynamic Shapes" and "Working with CUDA Graphs",
        https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/
  [RTX] TensorRT-RTX API, IRuntime::getEngineValidity and IExecutionContext::isStreamCapturable,
        https://docs.nvidia.com/deeplearning/tensorrt-rtx/latest/
  [HDR] NvInferRuntime.h (TensorRT 10.x-11.1), IExecutionContext::setTensorAddress ("The pointer must have at
        least 256-byte alignment") and updateDeviceMemorySizeForShapes ("Must specify all input shapes and the
        optimization profile to use before calling this function, otherwise the partition will be invalidated")
  [BIND] the real Python bindings (tensorrt-cu12-bindings 10.1-11.4, tensorrt_rtx 1.7), read over a stub core:
        pybind docstrings and the C++->Python trampolines (../shared/notes/tensorrt-facts.md, "Real TensorRT
        bindings without a GPU"); tests/conformance checks that the double has nothing they lack.
  [PG]  Polygraphy backend/trt/loader.py (init_libnvinfer_plugins before deserializing)

Strict where TensorRT is strict: it is never more lenient than the real bindings and NVIDIA's docs.
"""

from __future__ import annotations

import ctypes
import enum
import json
import math
import threading
import types
from collections.abc import Sequence
from typing import Any

MAGIC = b"ftrtDOUBLE1\n"
"""Real TensorRT plans start with the tag ``ftrt`` (trtkit.runtime.plans); the double's do too."""
PLUGIN_MAGIC = b"TRTDOUBLEPLUGIN1\n"
__version__ = "10.16.1.11"
BACKEND_NAME = "tensorrt"
BUNDLED_PLUGINS = frozenset({"BatchedNMS_TRT", "EfficientNMS_TRT"})
"""Creators ``init_libnvinfer_plugins`` registers (libnvinfer_plugin's; a subset for the double)."""


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8
    BF16 = 7


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class TensorLocation(enum.Enum):
    DEVICE = 0
    HOST = 1


class ExecutionContextAllocationStrategy(enum.Enum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


class TensorFormat(enum.Enum):
    """[PY] TensorFormat (a subset of the real members)."""

    LINEAR = 0
    CHW2 = 1
    HWC8 = 2
    CHW4 = 3
    CHW16 = 4
    CHW32 = 5


class DynamicShapesKernelSpecializationStrategy(enum.Enum):
    """[RTX] IRuntimeConfig::setDynamicShapesKernelSpecializationStrategy: LAZY (default) compiles shape-
    specialized kernels in the background and runs fallback kernels meanwhile; EAGER compiles them in enqueue."""

    LAZY = 0
    EAGER = 1
    NONE = 2


class EngineValidity(enum.Enum):
    VALID = 0
    SUBOPTIMAL = 1
    INVALID = 2


class EngineInvalidityDiagnostics(enum.IntFlag):
    """[RTX] EngineInvalidityDiagnostic bits, with TensorRT-RTX 1.7's values."""

    VERSION_MISMATCH = 1
    UNSUPPORTED_CC = 2
    OLD_CUDA_DRIVER = 4
    OLD_CUDA_RUNTIME = 8
    INSUFFICIENT_GPU_MEMORY = 16
    MALFORMED_ENGINE = 32
    CUDA_ERROR = 64


class Severity(enum.Enum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class LayerInformationFormat(enum.Enum):
    """[PY] LayerInformationFormat: how the engine inspector prints layer information."""

    ONELINE = 0
    JSON = 1


class ProfilingVerbosity(enum.Enum):
    """[PY] ProfilingVerbosity: LAYER_NAMES_ONLY is the builder's default."""

    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class ILogger:
    Severity = Severity

    def __init__(self) -> None:
        pass

    def log(self, severity: Any, msg: str) -> None:  # pragma: no cover - overridden
        pass


class IGpuAsyncAllocator:
    """[PY] GpuAllocator: ``allocate_async(size, alignment, flags, stream) -> int``,
    ``deallocate_async(memory, stream) -> bool``. Subclasses must call ``__init__``."""

    def __init__(self) -> None:
        pass


class IOutputAllocator:
    """[PY] OutputAllocator: ``reallocate_output_async(name, memory, size, alignment, stream) -> int`` and
    ``notify_shape(name, shape)``. Subclasses must call ``__init__``."""

    def __init__(self) -> None:
        pass


_NP = {
    "FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "BOOL": "bool", "UINT8": "uint8",
    "INT64": "int64", "BF16": None,
}


def make_plugin_library(path: Any, creators: Sequence[str]) -> None:
    """Write a file the double's ``IPluginRegistry.load_library`` accepts, registering ``creators``."""
    with open(path, "wb") as f:
        f.write(PLUGIN_MAGIC + json.dumps(list(creators)).encode())


def make_plan(
    *,
    op: str = "affine",
    inputs: Sequence[tuple[str, str, Sequence[int]]] = (("x", "FLOAT", (-1, 4)),),
    outputs: Sequence[tuple[str, str, Sequence[int]]] = (("y", "FLOAT", (-1, 4)),),
    profiles: Sequence[dict[str, tuple[Sequence[int], Sequence[int], Sequence[int]]]] = (
        {"x": ((1, 4), (8, 4), (64, 4))},
    ),
    params: dict[str, float] | None = None,
    compute_capabilities: Sequence[str] | None = None,
    scratch_bytes: int = 4096,
    version: str = __version__,
    profiling_verbosity: str = "LAYER_NAMES_ONLY",
    shape_tensors: Sequence[str] = (),
    formats: dict[str, str] | None = None,
    plugins: Sequence[str] = (),
    host_code: bool = False,
) -> bytes:
    """Serialize a double plan. Ops: ``affine`` (each output = input * a + b, elementwise), ``add``
    (output = in0 + in1), ``nonzero`` (ONNX NonZero: int64 [rank, N] indices, a data-dependent shape),
    ``reshape`` (output = input 0 reshaped to the values of input 1, a shape tensor).

    ``shape_tensors`` names inputs that are shape tensors (HOST location; their profile entries are value
    ranges); ``formats`` gives non-linear I/O formats; ``plugins`` the plugin creators the plan needs;
    ``host_code`` marks a version-compatible plan that embeds the lean runtime."""
    header = {
        "op": op,
        "shape_tensors": list(shape_tensors),
        "formats": dict(formats or {}),
        "plugins": list(plugins),
        "host_code": host_code,
        "inputs": [{"name": n, "dtype": d, "shape": list(s)} for n, d, s in inputs],
        "outputs": [{"name": n, "dtype": d, "shape": list(s)} for n, d, s in outputs],
        "profiles": [{k: [list(v[0]), list(v[1]), list(v[2])] for k, v in p.items()} for p in profiles],
        "params": params or {"a": 2.0, "b": 1.0},
        "compute_capabilities": list(compute_capabilities) if compute_capabilities else None,
        "scratch_bytes": scratch_bytes,
        "version": version,
        "profiling_verbosity": profiling_verbosity,
    }
    return MAGIC + json.dumps(header).encode()


class _Host:
    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def nbytes(self) -> int:
        return len(self._data)

    def __bytes__(self) -> bytes:
        return self._data

    def __buffer__(self, flags: int) -> memoryview:
        return memoryview(self._data)


def _make(flavor: str, version: str, device_cc: tuple[int, int], fail_factory: bool) -> types.SimpleNamespace:
    ns = types.SimpleNamespace()
    ns.__version__ = version
    vt = tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in version.split("."))
    rtx = flavor == "tensorrt_rtx"
    # [BIND] allocate_async's override receives (size, alignment, stream, flags) from TensorRT 10.x to 11.1 and
    # (size, alignment, flags, stream) from 11.2 and on TensorRT-RTX; flags is a plain int.
    flags_then_stream = rtx or vt[:2] >= (11, 2)
    state = types.SimpleNamespace(executions=0, violations=[], registry=set(), device_cc=device_cc,
                                  live_contexts=0, host_fns=[])
    ns._state = state
    for cls in (DataType, TensorIOMode, TensorLocation, ExecutionContextAllocationStrategy, TensorFormat,
                ILogger, IGpuAsyncAllocator, IOutputAllocator, LayerInformationFormat, ProfilingVerbosity):
        setattr(ns, cls.__name__, cls)

    class IHostMemory(_Host):
        pass

    class IPluginRegistry:
        """[PY] IPluginRegistry.load_library(plugin_path) -> handle, None when it cannot load or a plugin it
        holds is already registered. One registry per process ([PY] get_plugin_registry)."""

        def load_library(self, plugin_path: str) -> Any:
            try:
                with open(plugin_path, "rb") as f:
                    data = f.read()
            except OSError:
                return None
            if not data.startswith(PLUGIN_MAGIC):
                return None
            names = set(json.loads(data[len(PLUGIN_MAGIC):].decode()))
            if names & state.registry:
                return None
            state.registry |= names
            return object()

    registry = IPluginRegistry()

    def get_plugin_registry() -> IPluginRegistry:
        return registry

    def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
        # [PY] init_libnvinfer_plugins(logger, namespace): registers libnvinfer_plugin's creators.
        state.registry |= BUNDLED_PLUGINS
        return True

    ns.get_plugin_registry = get_plugin_registry
    ns.init_libnvinfer_plugins = init_libnvinfer_plugins
    ns.IPluginRegistry = IPluginRegistry

    class ICudaEngine:
        """[PY] ICudaEngine / [CPP] nvinfer1::ICudaEngine: I/O described by name."""

        def __init__(self, runtime: Runtime, header: dict[str, Any], plan: bytes) -> None:
            self._runtime = runtime
            self._h = header
            self._plan = plan
            self._io = [dict(t, mode="INPUT") for t in header["inputs"]] + [
                dict(t, mode="OUTPUT") for t in header["outputs"]
            ]
            self._by_name = {t["name"]: t for t in self._io}
            self._shape_tensors = frozenset(header.get("shape_tensors", ()))

        @property
        def num_layers(self) -> int:
            return 1

        @property
        def num_io_tensors(self) -> int:
            return len(self._io)

        @property
        def num_optimization_profiles(self) -> int:
            return len(self._h["profiles"])

        @property
        def device_memory_size_v2(self) -> int:
            return int(self._h["scratch_bytes"])

        def get_device_memory_size_for_profile_v2(self, profile_index: int) -> int:
            return int(self._h["scratch_bytes"])

        def get_tensor_name(self, index: int) -> str:
            return str(self._io[index]["name"])

        def _t(self, name: str) -> dict[str, Any]:
            return self._by_name[name]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            # [CPP] getTensorIOMode: kNONE for a name that is not an I/O tensor.
            t = self._by_name.get(name)
            return TensorIOMode[t["mode"]] if t else TensorIOMode.NONE

        def get_tensor_dtype(self, name: str) -> DataType:
            return DataType[self._t(name)["dtype"]]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            # [CPP] getTensorShape: -1 marks dims that are dynamic (set at run time per profile).
            return tuple(self._t(name)["shape"])

        def get_tensor_location(self, name: str) -> TensorLocation:
            # [CPP] getTensorLocation: shape tensors (isShapeInferenceIO) live on the host.
            return TensorLocation.HOST if name in self._shape_tensors else TensorLocation.DEVICE

        def get_tensor_format(self, name: str) -> TensorFormat:
            # [PY] get_tensor_format(name): LINEAR unless the build restricted I/O formats.
            return TensorFormat[self._h.get("formats", {}).get(name, "LINEAR")]

        def is_shape_inference_io(self, name: str) -> bool:
            return name in self._shape_tensors

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
            # [PY] get_tensor_profile_shape(name, profile_index) -> [min, opt, max] for input tensors.
            if name in self._shape_tensors:
                s = tuple(self._t(name)["shape"])
                return [s, s, s]
            rng = self._h["profiles"][profile_index][name]
            return [tuple(rng[0]), tuple(rng[1]), tuple(rng[2])]

        def get_tensor_profile_values(self, name: int, profile_index: str) -> list[tuple[int, ...]]:
            # [BIND] get_tensor_profile_values(name: int, profile_index: str): the keyword names are swapped in
            # the binding, so the first argument is the profile index and the second the tensor name.
            index, tensor = name, profile_index
            if tensor not in self._shape_tensors:
                raise RuntimeError(f"{tensor} is not a shape tensor")
            rng = self._h["profiles"][index][tensor]
            return [tuple(rng[0]), tuple(rng[1]), tuple(rng[2])]

        def create_execution_context(self, strategy: Any = ExecutionContextAllocationStrategy.STATIC) -> Any:
            # [CPP] createExecutionContext(strategy): STATIC allocates device memory for the largest profile
            # now (through the runtime's gpu allocator when one is set); USER_MANAGED leaves it to
            # setDeviceMemory before enqueue. [RTX] also from an IRuntimeConfig.
            config = None
            if rtx and isinstance(strategy, IRuntimeConfig):
                config, strategy = strategy, strategy._strategy
            ctx = IExecutionContext(self, strategy, config)
            if strategy is ExecutionContextAllocationStrategy.STATIC:
                ctx._own_scratch = self._runtime._alloc(self.device_memory_size_v2)
                ctx._device_memory = (ctx._own_scratch, self.device_memory_size_v2)
                ctx._partition_stale = False
            state.live_contexts += 1
            return ctx

        @property
        def profiling_verbosity(self) -> ProfilingVerbosity:
            return ProfilingVerbosity[self._h.get("profiling_verbosity", "LAYER_NAMES_ONLY")]

        def create_engine_inspector(self) -> EngineInspector:
            return EngineInspector(self)

        def serialize(self) -> IHostMemory:
            return IHostMemory(self._plan)

    class IRuntimeConfig:
        """[RTX] IRuntimeConfig: allocation strategy and dynamic-shape kernel specialization per context."""

        def __init__(self) -> None:
            self._strategy = ExecutionContextAllocationStrategy.STATIC
            self.dynamic_shapes_kernel_specialization_strategy = DynamicShapesKernelSpecializationStrategy.LAZY

        def set_execution_context_allocation_strategy(
                self, strategy: Any = ExecutionContextAllocationStrategy.STATIC) -> None:
            self._strategy = strategy

        def get_execution_context_allocation_strategy(self) -> Any:
            return self._strategy

    class IExecutionContext:
        """[PY] IExecutionContext / [CPP] nvinfer1::IExecutionContext (enqueueV3 execution)."""

        def __init__(self, engine: ICudaEngine, strategy: Any, config: Any = None) -> None:
            self._engine = engine
            self._strategy = strategy
            self._config = config
            self._profile = 0
            self._pending_profile = False
            self._shapes: dict[str, tuple[int, ...]] = {}
            self._addresses: dict[str, int] = {}
            self._out_alloc: dict[str, Any] = {}
            self._device_memory: tuple[int, int] | None = None
            self._partition_stale = True
            self._updated = False
            self._own_scratch = 0
            self._consumed_event = 0
            self._set_shape_calls = 0
            self._specialized: set[tuple[Any, ...]] = set()

        def __del__(self) -> None:
            rt = self._engine._runtime
            if self._own_scratch:
                rt._free(self._own_scratch)
                self._own_scratch = 0

        @property
        def engine(self) -> ICudaEngine:
            return self._engine

        # ---- profiles and shapes ---------------------------------------------------------------------

        @property
        def active_optimization_profile(self) -> int:
            return self._profile

        def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
            # [CPP] setOptimizationProfileAsync: false for an index outside [0, getNbOptimizationProfiles());
            # switching profile invalidates the input shapes set before and takes effect at the next enqueue.
            if not 0 <= profile_index < self._engine.num_optimization_profiles:
                self._engine._runtime._log(Severity.ERROR, f"profile index {profile_index} out of range")
                return False
            if profile_index != self._profile:
                self._shapes.clear()
                self._pending_profile = True
                self._stale()
            self._profile = profile_index
            return True

        def _stale(self) -> None:
            # [HDR] updateDeviceMemorySizeForShapes: the partition is invalidated by a shape or profile change.
            if self._strategy is ExecutionContextAllocationStrategy.USER_MANAGED:
                self._partition_stale = True
                self._updated = False

        def set_input_shape(self, name: str, shape: Sequence[int]) -> bool:
            # [CPP] setInputShape: false when name is not an input, the rank differs, or a dim lies outside
            # the active profile's [min, max].
            self._set_shape_calls += 1
            t = self._engine._by_name.get(name)
            if t is None or t["mode"] != "INPUT":
                self._engine._runtime._log(Severity.ERROR, f"{name} is not an input tensor")
                return False
            shape = tuple(int(d) for d in shape)
            if name in self._engine._shape_tensors:
                ok = shape == tuple(t["shape"])
                lo = hi = tuple(t["shape"])
            else:
                lo, _, hi = self._engine._h["profiles"][self._profile][name]
                ok = len(shape) == len(lo) and all(a <= d <= b for a, d, b in zip(lo, shape, hi, strict=True))
            if not ok:
                self._engine._runtime._log(
                    Severity.ERROR, f"setInputShape: {name} {shape} outside profile {self._profile} [{lo}, {hi}]"
                )
                return False
            if self._shapes.get(name) != shape:
                self._stale()
            self._shapes[name] = shape
            return True

        def _values(self, name: str) -> tuple[int, ...] | None:
            """A shape tensor's values, read on the host from its bound address ([BIND] infer_shapes)."""
            addr = self._addresses.get(name)
            if not addr:
                return None
            t = self._engine._by_name[name]
            n = math.prod(t["shape"])
            ctype = ctypes.c_int64 if t["dtype"] == "INT64" else ctypes.c_int32
            return tuple(int(v) for v in (ctype * n).from_address(addr))

        def _unset_inputs(self) -> list[str]:
            # [BIND] infer_shapes: an input is insufficiently specified when its dynamic dims are unset, or when
            # it is a shape tensor whose address has not been set.
            out = []
            for t in self._engine._h["inputs"]:
                name = t["name"]
                if name in self._engine._shape_tensors:
                    if not self._addresses.get(name):
                        out.append(name)
                elif name not in self._shapes:
                    out.append(name)
            return out

        def infer_shapes(self) -> list[str]:
            # [BIND] infer_shapes(): the names of input tensors still insufficiently specified (empty when all
            # output shapes can be computed); raises RuntimeError for other failures.
            missing = self._unset_inputs()
            if not missing:
                for t in self._engine._h["outputs"]:
                    self._output_shape(t["name"], strict=True)
            return missing

        @property
        def all_binding_shapes_specified(self) -> bool:
            return not self._unset_inputs()

        def _output_shape(self, name: str, strict: bool = False) -> tuple[int, ...]:
            eng = self._engine
            op = eng._h["op"]
            ins = eng._h["inputs"]
            if op == "nonzero":
                x = self._shapes.get(ins[0]["name"])
                return (len(x) if x is not None else -1, -1)  # N depends on the data
            if op == "reshape":
                sname = ins[1]["name"]
                vals = self._values(sname)
                if vals is None:
                    return tuple(-1 for _ in eng._by_name[name]["shape"])
                lo, _, hi = eng._h["profiles"][self._profile][sname]
                x = self._shapes.get(ins[0]["name"])
                bad = (len(vals) != len(lo) or any(not a <= v <= b for a, v, b in zip(lo, vals, hi, strict=True))
                       or (x is not None and math.prod(x) != math.prod(vals)))
                if bad and strict:
                    raise RuntimeError(f"shape tensor {sname} values {list(vals)} are outside profile "
                                       f"{self._profile} [{lo}, {hi}] or do not match the input's volume")
                return tuple(vals)
            idx = [t["name"] for t in eng._h["outputs"]].index(name)
            src = ins[min(idx, len(ins) - 1)]["name"]
            return self._shapes.get(src, tuple(-1 for _ in eng._by_name[name]["shape"]))

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            # [CPP] getTensorShape: inputs as set; outputs as inferred, -1 where unknown (not all input
            # shapes set, or data-dependent).
            t = self._engine._by_name[name]
            if t["mode"] == "INPUT":
                return self._shapes.get(name, tuple(t["shape"]))
            if self._unset_inputs():
                return tuple(-1 for _ in t["shape"])
            return self._output_shape(name)

        # ---- memory --------------------------------------------------------------------------------------

        def set_tensor_address(self, name: str, memory: int) -> bool:
            # [CPP] setTensorAddress: false for a name that is not an I/O tensor; [HDR] device pointers must
            # have at least 256-byte alignment (host pointers of shape tensors: the element size).
            t = self._engine._by_name.get(name)
            if t is None:
                self._engine._runtime._log(Severity.ERROR, f"setTensorAddress: no tensor {name}")
                return False
            import numpy as np

            align = np.dtype(_NP[t["dtype"]] or "uint16").itemsize if name in self._engine._shape_tensors else 256
            if int(memory) % align:
                self._engine._runtime._log(Severity.ERROR, f"setTensorAddress: {name} address {int(memory):#x} "
                                                           f"is not aligned to {align} bytes")
                return False
            self._addresses[name] = int(memory)
            return True

        def get_tensor_address(self, name: str) -> int:
            return self._addresses.get(name, 0)

        def update_device_memory_size_for_shapes(self) -> int:
            # [HDR] updateDeviceMemorySizeForShapes: device memory needed for the current input shapes; all
            # input shapes and the profile must be set first, else the partition is invalidated (0: error).
            if self._unset_inputs():
                self._engine._runtime._log(Severity.ERROR, "updateDeviceMemorySizeForShapes: input shapes unset")
                self._stale()
                return 0
            self._updated = True
            return self._need()

        def _need(self) -> int:
            need = int(self._engine._h["scratch_bytes"])
            for t in self._engine._h["inputs"]:
                s = self._shapes.get(t["name"])
                if s is not None:
                    need += math.prod(s) * 4
            return need

        def set_device_memory(self, memory: int, size: int) -> None:
            # [PY] set_device_memory(memory, size): 256-byte aligned memory of at least the required size.
            if int(memory) % 256:
                raise ValueError("setDeviceMemory: memory must be 256-byte aligned")
            self._device_memory = (int(memory), int(size))
            if self._updated:
                self._partition_stale = False

        def set_output_allocator(self, name: str, output_allocator: Any) -> bool:
            # [CPP] setOutputAllocator: false for a name that is not an output.
            t = self._engine._by_name.get(name)
            if t is None or t["mode"] != "OUTPUT":
                return False
            self._out_alloc[name] = output_allocator
            return True

        def get_output_allocator(self, name: str) -> Any:
            return self._out_alloc.get(name)

        def set_input_consumed_event(self, event: int) -> bool:
            self._consumed_event = int(event)
            return True

        # ---- execution -----------------------------------------------------------------------------------

        def execute_async_v3(self, stream_handle: int) -> bool:
            """[CPP] enqueueV3: returns false, logging an error, when an input shape is unset, when an I/O
            tensor has no address (outputs may instead have an output allocator), or when a USER_MANAGED
            context has no device memory, too little, or a partition made stale by a shape change ([HDR]).
            The op runs on ``stream_handle``. While the stream is being captured, the double also records a
            host node that checks, at each replay, that the context is still in the state it was captured in
            ([DG]: a graph is valid only for the shapes, profile and addresses it was captured with)."""
            rt = self._engine._runtime
            missing = self._unset_inputs()
            if missing:
                rt._log(Severity.ERROR, f"enqueueV3: input shapes not specified: {missing}")
                return False
            need = self._need()
            if self._device_memory is None:
                rt._log(Severity.ERROR, "enqueueV3: no device memory; call setDeviceMemory (USER_MANAGED)")
                return False
            if self._partition_stale:
                rt._log(Severity.ERROR, "enqueueV3: the device memory partition is stale after a shape or profile "
                        "change; call updateDeviceMemorySizeForShapes() then setDeviceMemory()")
                return False
            if self._strategy is ExecutionContextAllocationStrategy.USER_MANAGED and self._device_memory[1] < need:
                rt._log(Severity.ERROR, f"enqueueV3: device memory {self._device_memory[1]} < {need} required")
                return False
            for t in self._engine._io:
                name = t["name"]
                if name not in self._addresses and not (t["mode"] == "OUTPUT" and name in self._out_alloc):
                    rt._log(Severity.ERROR, f"enqueueV3: tensor {name} has no address")
                    return False
            op = self._engine._h["op"]
            capturing = _capturing(stream_handle)
            if op == "nonzero" and capturing:
                # [DG] data-dependent shapes need a synchronization inside enqueue: not capturable.
                rt._log(Severity.ERROR, "enqueueV3: data-dependent output shapes cannot be stream-captured")
                return False
            if capturing and self._pending_profile:
                state.violations.append("captured an enqueue that carries a pending profile switch")
            shape_key = (self._profile, tuple(sorted(self._shapes.items())))
            if rtx and capturing and shape_key not in self._specialized:
                # [RTX] with LAZY specialization the captured graph would hold the fallback kernels.
                state.violations.append(f"captured before the kernels for {shape_key} were specialized")
            if rtx and self._config is not None and self._config.dynamic_shapes_kernel_specialization_strategy \
                    is DynamicShapesKernelSpecializationStrategy.EAGER:
                self._specialized.add(shape_key)  # LAZY (the default) specializes in the background: never assumed
            try:
                _run_op(self, int(stream_handle))
            except Exception as exc:  # TensorRT reports failures through the logger and returns false
                rt._log(Severity.ERROR, f"enqueueV3 failed: {exc}")
                return False
            if capturing:
                _add_replay_check(self, int(stream_handle), state)
            else:
                self._pending_profile = False
            state.executions += 1
            return True

    if rtx:

        def is_stream_capturable(self: IExecutionContext, stream: int) -> bool:
            # [RTX] isStreamCapturable: false when enqueue would synchronize (data-dependent shapes) or
            # allocate at run time.
            return bool(self._engine._h["op"] != "nonzero")

        IExecutionContext.is_stream_capturable = is_stream_capturable  # type: ignore[attr-defined]

        def create_runtime_config(self: ICudaEngine) -> IRuntimeConfig:
            return IRuntimeConfig()

        ICudaEngine.create_runtime_config = create_runtime_config  # type: ignore[attr-defined]
        ns.IRuntimeConfig = IRuntimeConfig
        ns.DynamicShapesKernelSpecializationStrategy = DynamicShapesKernelSpecializationStrategy

    class Runtime:
        """[PY] Runtime(logger); ``deserialize_cuda_engine`` returns None (logging why) for a bad plan.
        [BIND] a failing factory raises ``TypeError: factory function returned nullptr``."""

        def __init__(self, logger: Any) -> None:
            self._logger = logger
            if fail_factory:
                self._log(Severity.ERROR, "CUDA initialization failure with error: 35")
                raise TypeError("pybind11::init(): factory function returned nullptr")
            self.gpu_allocator: Any = None
            self.engine_host_code_allowed = False
            self._lock = threading.Lock()
            self._stream: Any = None

        def _log(self, severity: Severity, msg: str) -> None:
            if self._logger is not None:
                self._logger.log(severity, msg)

        def get_plugin_registry(self) -> IPluginRegistry:
            return registry

        def load_runtime(self, path: str) -> Runtime | None:
            # [BIND] load_runtime(path): the lean runtime library, or None if it could not be loaded.
            try:
                with open(path, "rb") as f:
                    ok = f.read(len(MAGIC)) == MAGIC
            except OSError:
                ok = False
            if not ok:
                self._log(Severity.ERROR, f"Cannot load the lean runtime library {path}")
                return None
            lean = Runtime(self._logger)
            lean._lean = True  # type: ignore[attr-defined]
            return lean

        def _internal_stream(self) -> int:
            # TensorRT allocates on its own (nonzero) streams; the double keeps one CuPy stream.
            if self._stream is None:
                cp = _cupy()
                if cp is not None:
                    self._stream = cp.cuda.Stream(non_blocking=True)
                else:
                    from cuda.bindings import runtime as cudart

                    err, raw = cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)
                    if int(err) != 0:
                        raise RuntimeError(f"cudaStreamCreateWithFlags: {err}")
                    self._stream = types.SimpleNamespace(ptr=int(raw))
            return int(self._stream.ptr)

        def _alloc(self, size: int) -> int:
            alloc = self.gpu_allocator
            if alloc is None or size <= 0:
                return 0
            stream, flags = self._internal_stream(), 0
            args = (size, 256, flags, stream) if flags_then_stream else (size, 256, stream, flags)
            addr = alloc.allocate_async(*args)
            if not isinstance(addr, int):
                raise TypeError(f"allocate_async must return an int address, got {type(addr).__name__}")
            return addr

        def _free(self, addr: int) -> None:
            alloc = self.gpu_allocator
            if alloc is not None and addr:
                alloc.deallocate_async(addr, self._internal_stream())

        def _parse(self, plan: Any) -> dict[str, Any] | None:
            data = bytes(plan)
            if not data.startswith(MAGIC):
                self._log(Severity.ERROR, "Serialization assertion: magic tag does not match")
                return None
            try:
                header: dict[str, Any] = json.loads(data[len(MAGIC):].decode())
            except ValueError:
                self._log(Severity.ERROR, "Serialization assertion: plan is truncated or corrupt")
                return None
            if header.get("version") != ns.__version__:
                self._log(Severity.ERROR, f"The engine plan file is not compatible with this version of "
                          f"TensorRT, expecting library version {ns.__version__} got {header.get('version')}")
                return None
            return header

        def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
            header = self._parse(serialized_engine)
            if header is None:
                return None
            if not self._cc_ok(header):
                self._log(Severity.ERROR, "engine was built for another compute capability")
                return None
            if header.get("host_code") and not self.engine_host_code_allowed:
                # [PY] Runtime.engine_host_code_allowed defaults to False: a version-compatible plan that embeds
                # the lean runtime is refused.
                self._log(Severity.ERROR, "Cannot deserialize an engine with host code (the lean runtime) when "
                          "engine_host_code_allowed is false")
                return None
            for name in header.get("plugins", ()):
                if name not in state.registry:
                    # [PG] plugins must be registered (init_libnvinfer_plugins / load_library) before this call.
                    self._log(Severity.ERROR, f"getPluginCreator could not find plugin {name} version 1")
                    return None
            return ICudaEngine(self, header, bytes(serialized_engine))

        def _cc_ok(self, header: dict[str, Any]) -> bool:
            ccs = header.get("compute_capabilities")
            return not ccs or f"SM{state.device_cc[0]}{state.device_cc[1]}" in ccs

    if rtx:

        def get_engine_validity(self: Runtime, buffer: Any) -> tuple[EngineValidity, int]:
            # [RTX] getEngineValidity(blob, size, diagnostics): reads only the header and returns the validity
            # with a bit mask of EngineInvalidityDiagnostics (the Python binding returns the pair; seen on RTX
            # 1.7.1 as (EngineValidity.INVALID, 0) on a machine without a driver).
            data = bytes(buffer)
            if not data.startswith(MAGIC):
                return EngineValidity.INVALID, int(EngineInvalidityDiagnostics.MALFORMED_ENGINE)
            header = self._parse(buffer)
            if header is None:
                return EngineValidity.INVALID, int(EngineInvalidityDiagnostics.VERSION_MISMATCH)
            if not self._cc_ok(header):
                return EngineValidity.INVALID, int(EngineInvalidityDiagnostics.UNSUPPORTED_CC)
            return EngineValidity.VALID, 0

        Runtime.get_engine_validity = get_engine_validity  # type: ignore[attr-defined]
        Runtime.engine_header_size = property(lambda self: 1 << 20)  # type: ignore[attr-defined]
        ns.EngineValidity = EngineValidity
        ns.EngineInvalidityDiagnostics = EngineInvalidityDiagnostics

    ns.Runtime = Runtime
    ns.ICudaEngine = ICudaEngine
    ns.IExecutionContext = IExecutionContext
    ns.IHostMemory = IHostMemory
    return ns


_HOST_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_libcuda: Any = None


def _add_replay_check(ctx: Any, stream: int, state: Any) -> None:
    """A host node in the graph being captured (``cuLaunchHostFunc`` is capturable): at each replay it records a
    violation when the context's profile changed since capture, or a profile switch is pending (it takes effect
    at the next enqueue)."""
    global _libcuda
    if _libcuda is None:
        _libcuda = ctypes.CDLL("libcuda.so.1")
    captured = ctx._profile

    def check(_: Any) -> None:
        if ctx._pending_profile or ctx._profile != captured:
            state.violations.append(f"graph captured on profile {captured} replayed with profile {ctx._profile}"
                                    + (" and a switch pending" if ctx._pending_profile else ""))

    fn = _HOST_FN(check)
    state.host_fns.append(fn)  # the graph may replay it as long as the module lives
    err = _libcuda.cuLaunchHostFunc(ctypes.c_void_p(stream), fn, None)
    if err:
        raise RuntimeError(f"cuLaunchHostFunc failed with CUresult {err}")


def _capturing(stream: int) -> bool:
    try:
        from cuda.bindings import runtime as rt
    except ImportError:  # pragma: no cover
        return False
    err, status = rt.cudaStreamIsCapturing(stream)
    return int(err) == 0 and int(status) != int(rt.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone)


def _wrap(cp: Any, addr: int, shape: tuple[int, ...], dtype: str) -> Any:
    import numpy as np

    n = math.prod(shape) * np.dtype(dtype).itemsize
    mem = cp.cuda.UnownedMemory(addr, max(n, 1), None)
    return cp.ndarray(shape, dtype, cp.cuda.MemoryPointer(mem, 0))


_cupy_lock = threading.Lock()
_cupy_module: list[Any] = []  # [CuPy or None] once decided


def _cupy() -> Any:
    """CuPy, or None where it cannot load (CuPy 14 needs NumPy 2; PyTriton 0.7's GPU runs need NumPy 1).

    Decided once per process, under a lock: with a failed CuPy import retried on every call from several threads
    at once (two ``trtkit serve`` instances), a call could pass this check and then fail to import CuPy."""
    with _cupy_lock:
        if not _cupy_module:
            try:
                import cupy as cp
            except ImportError:
                cp = None
            _cupy_module.append(cp)
        return _cupy_module[0]


class _Cai:
    """Device memory as ``__cuda_array_interface__`` (for PyTorch where CuPy cannot load)."""

    def __init__(self, addr: int, shape: tuple[int, ...], typestr: str) -> None:
        self.__cuda_array_interface__ = {"data": (addr, False), "shape": shape, "typestr": typestr, "version": 3,
                                         "strides": None, "stream": None}


def _run_affine_torch(ctx: Any, stream: int) -> None:
    """The affine op with PyTorch: what the double does where CuPy cannot load."""
    import numpy as np
    import torch

    h = ctx._engine._h
    a, b = h["params"]["a"], h["params"]["b"]
    ins = [torch.as_tensor(_Cai(ctx._addresses[t["name"]], ctx._shapes[t["name"]],
                                np.dtype(_NP[t["dtype"]]).str), device="cuda") for t in h["inputs"]]
    with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
        for i, t in enumerate(h["outputs"]):
            x = ins[min(i, len(ins) - 1)]
            y = torch.as_tensor(_Cai(ctx._addresses[t["name"]], tuple(x.shape), np.dtype(_NP[t["dtype"]]).str),
                                device="cuda")
            torch.mul(x, a, out=y)
            y.add_(b)


def _run_op(ctx: Any, stream: int) -> None:
    """Do the plan's op with CuPy on ``stream`` on the device memory at the bound addresses."""
    cp = _cupy()
    h = ctx._engine._h
    if cp is None and h["op"] == "affine" and not ctx._engine._shape_tensors:
        _run_affine_torch(ctx, stream)
        return
    if cp is None:
        raise RuntimeError(f"the double's {h['op']!r} op needs CuPy, which cannot be imported here")
    shape_tensors = ctx._engine._shape_tensors
    with cp.cuda.ExternalStream(stream):
        ins = [_wrap(cp, ctx._addresses[t["name"]], ctx._shapes[t["name"]], _NP[t["dtype"]]) for t in h["inputs"]
               if t["name"] not in shape_tensors]
        if h["op"] == "reshape":
            t = h["outputs"][0]
            shape = ctx._values(h["inputs"][1]["name"])
            y = _wrap(cp, ctx._addresses[t["name"]], shape, _NP[t["dtype"]])
            y[...] = ins[0].reshape(shape)
        elif h["op"] == "affine":
            a, b = h["params"]["a"], h["params"]["b"]
            for i, t in enumerate(h["outputs"]):
                x = ins[min(i, len(ins) - 1)]
                y = _wrap(cp, ctx._addresses[t["name"]], x.shape, _NP[t["dtype"]])
                cp.multiply(x, a, out=y)
                cp.add(y, b, out=y)
        elif h["op"] == "add":
            t = h["outputs"][0]
            y = _wrap(cp, ctx._addresses[t["name"]], ins[0].shape, _NP[t["dtype"]])
            cp.add(ins[0], ins[1], out=y)
        elif h["op"] == "nonzero":
            t = h["outputs"][0]
            idx = cp.stack(cp.nonzero(ins[0])).astype(cp.int64)  # synchronizes: the count is data-dependent
            shape = tuple(int(d) for d in idx.shape)
            alloc = ctx._out_alloc.get(t["name"])
            nbytes = int(idx.nbytes)
            if alloc is not None:
                # [PY] OutputAllocator: reallocate_output_async(name, current, size, alignment, stream) returns
                # the address to write to; notify_shape(name, shape) reports the final shape.
                addr = int(alloc.reallocate_output_async(t["name"], ctx._addresses.get(t["name"], 0),
                                                         max(nbytes, 1), 256, stream))
                if not addr:
                    raise RuntimeError("output allocator returned null")
                ctx._addresses[t["name"]] = addr
                if nbytes:
                    _wrap(cp, addr, shape, "int64")[...] = idx
                alloc.notify_shape(t["name"], shape)
            else:
                raise RuntimeError(f"output {t['name']} has a data-dependent shape and needs an IOutputAllocator")
        else:
            raise RuntimeError(f"unknown op {h['op']}")


# The engine inspector's JSON, as documented in the TensorRT developer guide, "Engine Inspector"
# (https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/engine-tools.html) and in
# "Migrating IEngineInspector Usage from TensorRT 10.x to 11.x"
# (https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-IEngineInspector.html):
# {"Layers": [...], "Bindings": [names]} on 10.x, "I/O Tensors" (objects) instead of "Bindings" on 11.x. A layer is
# its name (a string) under LAYER_NAMES_ONLY, an object (Name, LayerType, Inputs/Outputs with Name, Location,
# Dimensions, "Format/Datatype", ParameterType, TacticValue, ...) under DETAILED; NONE prints no layers.
# Without an execution context whose input shapes are set, shape-dependent dims read -1 and formats are not
# shown ([PY] EngineInspector, [CPP] IEngineInspector::setExecutionContext).
_LAYER_TYPES = {"affine": "PointWise", "add": "PointWise", "nonzero": "NonZero"}
_FORMAT_WORDS = {"FLOAT": "FP32", "HALF": "FP16", "BF16": "BF16", "INT8": "Int8", "INT32": "Int32",
                 "INT64": "Int64", "BOOL": "Bool", "UINT8": "UInt8"}


class EngineInspector:
    """[PY] EngineInspector: ``execution_context`` (settable), ``get_layer_information(index, format)``,
    ``get_engine_information(format)``."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.execution_context: Any = None

    def _dims(self, name: str) -> list[int]:
        ctx = self.execution_context
        if ctx is not None and ctx.all_binding_shapes_specified:
            return [int(d) for d in ctx.get_tensor_shape(name)]
        return [int(d) for d in self._engine._t(name)["shape"]]

    def _tensor(self, t: dict[str, Any]) -> dict[str, Any]:
        dims = self._dims(t["name"])
        fmt = ("N/A due to dynamic shapes" if any(d < 0 for d in dims)
               else f"Row major linear {_FORMAT_WORDS[t['dtype']]} format")
        return {"Name": t["name"], "Location": "Device", "Dimensions": dims, "Format/Datatype": fmt}

    def _layer(self) -> Any:
        h = self._engine._h
        op = h["op"]
        verbosity = self._engine.profiling_verbosity
        if verbosity is ProfilingVerbosity.LAYER_NAMES_ONLY:
            return op
        return {
            "Name": op, "LayerType": _LAYER_TYPES.get(op, op), "Inputs": [self._tensor(t) for t in h["inputs"]],
            "Outputs": [self._tensor(t) for t in h["outputs"]], "ParameterType": _LAYER_TYPES.get(op, op),
            "TacticValue": "0x0000000000000000", "StreamId": 0, "Metadata": "",
        }

    def get_layer_information(self, layer_index: int, format: LayerInformationFormat) -> str:
        if self._engine.profiling_verbosity is ProfilingVerbosity.NONE or layer_index != 0:
            return ""
        layer = self._layer()
        if format is LayerInformationFormat.ONELINE:
            return layer if isinstance(layer, str) else f"{layer['Name']}"
        return json.dumps(layer)

    def get_engine_information(self, format: LayerInformationFormat) -> str:
        eng = self._engine
        layers = [] if eng.profiling_verbosity is ProfilingVerbosity.NONE else [self._layer()]
        if format is LayerInformationFormat.ONELINE:
            return "".join(f"{x if isinstance(x, str) else x['Name']}\n" for x in layers)
        doc: dict[str, Any] = {"Layers": layers}
        if int(str(eng._h["version"]).split(".")[0]) >= 11:  # the plan's version is the library's
            doc["I/O Tensors"] = [
                {"Name": t["name"], "IOMode": t["mode"].title(), "DataType": t["dtype"].title(),
                 "Dimensions": list(t["shape"]), "Location": "Device", "IsShapeInferenceIO": False}
                for t in eng._io]
        else:
            doc["Bindings"] = [t["name"] for t in eng._io]
        return json.dumps(doc)


def make_module(flavor: str = "tensorrt", *, version: str | None = None, device_cc: tuple[int, int] = (9, 0),
                fail_factory: bool = False) -> Any:
    """A fresh double module. ``flavor`` "tensorrt_rtx" adds what TensorRT-RTX has (``get_engine_validity``,
    ``is_stream_capturable``, runtime configs). ``version`` decides the allocator's argument order.
    ``fail_factory`` makes ``Runtime(logger)`` raise as the real one does when CUDA cannot initialise.
    Test-only state (execution count, violations, plugin registry) is under ``module._state``."""
    v = version or (__version__ if flavor == "tensorrt" else "1.7.1.116")
    return _make(flavor, v, device_cc, fail_factory)


_default = _make("tensorrt", __version__, (9, 0), False)
Runtime = _default.Runtime
ICudaEngine = _default.ICudaEngine
IExecutionContext = _default.IExecutionContext
IHostMemory = _default.IHostMemory
