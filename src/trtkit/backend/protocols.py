"""Protocol types for the TensorRT surface trtkit calls (``tensorrt`` and ``tensorrt_rtx`` alike).

Each Protocol's docstring names the TensorRT class it mirrors; ``tests/conformance`` checks every member against
the real bindings. Enum values are typed :data:`EnumValue` (pybind11 enum members: they convert with ``int()``
and carry a ``name``) or ``object`` where trtkit only passes them on; enum namespaces are ``object``: their
members differ between TensorRT 10, 11 and RTX, and trtkit looks them up by name through ``Backend.enum()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, SupportsInt, TypeAlias

__all__ = [
    "Builder",
    "BuilderConfig",
    "CudaEngine",
    "Dims",
    "EngineInspector",
    "EnumValue",
    "ExecutionContext",
    "HostMemory",
    "Network",
    "OnnxParser",
    "OptimizationProfile",
    "ParserErrorRecord",
    "PluginRegistry",
    "RtxCudaEngine",
    "RtxExecutionContext",
    "RtxRuntime",
    "Runtime",
    "RuntimeConfig",
    "Tensor",
    "TimingCache",
    "TrtLogger",
    "TrtModule",
]

EnumValue: TypeAlias = SupportsInt
"""A member of a TensorRT enum (``trt.BuilderFlag.FP16``, ...): ``int(value)`` gives its number."""
Dims: TypeAlias = Sequence[int]
"""``trt.Dims``: iterable and indexable like a tuple of ints."""
TrtLogger: TypeAlias = object
"""A ``trt.ILogger`` instance (the bridge :meth:`Backend.logger` makes); only passed back to TensorRT."""


class HostMemory(Protocol):
    """``trt.IHostMemory``: a serialized blob; supports the buffer protocol."""

    @property
    def nbytes(self) -> int: ...


class Tensor(Protocol):
    """``trt.ITensor`` as seen on network inputs and outputs."""

    name: str
    shape: Dims

    @property
    def dtype(self) -> object: ...
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

    def code(self) -> object: ...
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
    profiling_verbosity: EnumValue
    hardware_compatibility_level: EnumValue
    max_aux_streams: int
    progress_monitor: object

    @property
    def num_optimization_profiles(self) -> int: ...
    @property
    def num_compute_capabilities(self) -> int: ...  # (TensorRT-RTX only)
    @num_compute_capabilities.setter
    def num_compute_capabilities(self, value: int) -> None: ...
    def set_flag(self, flag: object) -> None: ...
    def clear_flag(self, flag: object) -> None: ...
    def get_flag(self, flag: object) -> bool: ...
    def set_memory_pool_limit(self, pool: object, pool_size: int) -> None: ...
    def add_optimization_profile(self, profile: OptimizationProfile) -> int: ...
    def create_timing_cache(self, serialized_timing_cache: bytes) -> TimingCache | None: ...
    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool: ...
    def get_timing_cache(self) -> TimingCache | None: ...
    def set_tactic_sources(self, tactic_sources: int) -> bool: ...
    def set_compute_capability(self, compute_capability: EnumValue, index: int) -> bool: ...  # (TensorRT-RTX only)
    def get_compute_capability(self, index: int) -> object: ...  # (TensorRT-RTX only)


class PluginRegistry(Protocol):
    """``trt.IPluginRegistry``."""

    def load_library(self, plugin_path: str) -> object: ...


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

    execution_context: object

    def get_engine_information(self, format: EnumValue) -> str: ...


class ExecutionContext(Protocol):
    """``trt.IExecutionContext``."""

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool: ...
    def set_input_shape(self, name: str, shape: Sequence[int]) -> bool: ...
    def set_tensor_address(self, name: str, memory: int) -> bool: ...
    def get_tensor_shape(self, name: str) -> Dims: ...
    def infer_shapes(self) -> list[str]: ...
    def execute_async_v3(self, stream_handle: int) -> bool: ...
    def update_device_memory_size_for_shapes(self) -> int: ...
    def set_device_memory(self, memory: int, size: int) -> None: ...
    def set_output_allocator(self, name: str, output_allocator: object) -> bool: ...
    def set_input_consumed_event(self, event: int) -> bool: ...


class RtxExecutionContext(ExecutionContext, Protocol):
    """``trt.IExecutionContext`` (TensorRT-RTX only): what TensorRT-RTX adds."""

    def is_stream_capturable(self, stream: int) -> bool: ...


class RuntimeConfig(Protocol):
    """``trt.IRuntimeConfig`` (TensorRT-RTX only): per-context runtime options."""

    dynamic_shapes_kernel_specialization_strategy: EnumValue

    def set_execution_context_allocation_strategy(self, strategy: EnumValue) -> None: ...


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
    def get_tensor_mode(self, name: str) -> object: ...
    def get_tensor_dtype(self, name: str) -> object: ...
    def get_tensor_shape(self, name: str) -> Dims: ...
    def get_tensor_location(self, name: str) -> object: ...
    def get_tensor_format(self, name: str) -> object: ...
    def is_shape_inference_io(self, name: str) -> bool: ...
    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]: ...
    def get_tensor_profile_values(self, profile_index: int, name: str) -> list[Dims]: ...
    def get_device_memory_size_for_profile_v2(self, profile_index: int) -> int: ...
    def create_execution_context(self, strategy: object = ...) -> ExecutionContext | None: ...
    def create_engine_inspector(self) -> EngineInspector | None: ...
    def serialize(self) -> HostMemory: ...


class RtxCudaEngine(CudaEngine, Protocol):
    """``trt.ICudaEngine`` (TensorRT-RTX only): contexts made from a runtime config."""

    def create_runtime_config(self) -> RuntimeConfig: ...


class Runtime(Protocol):
    """``trt.Runtime``."""

    gpu_allocator: object
    engine_host_code_allowed: bool

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> CudaEngine | None: ...
    def load_runtime(self, path: str) -> Runtime | None: ...
    def get_plugin_registry(self) -> PluginRegistry: ...


class RtxRuntime(Runtime, Protocol):
    """``trt.Runtime`` (TensorRT-RTX only): a cheap validity check of a plan before deserializing."""

    @property
    def engine_header_size(self) -> int: ...
    def get_engine_validity(self, buffer: bytes) -> tuple[object, int]: ...


class TrtModule(Protocol):
    """The ``tensorrt`` / ``tensorrt_rtx`` module, as far as trtkit uses it."""

    __version__: str
    ILogger: type
    IProgressMonitor: type
    IGpuAsyncAllocator: type
    IOutputAllocator: type
    BuilderFlag: object
    MemoryPoolType: object
    NetworkDefinitionCreationFlag: object
    ProfilingVerbosity: object
    DataType: object
    TensorIOMode: object
    TensorLocation: object
    ExecutionContextAllocationStrategy: object
    LayerInformationFormat: object
    TensorFormat: object

    def Builder(self, logger: TrtLogger) -> Builder: ...
    def Runtime(self, logger: TrtLogger) -> Runtime: ...
    def OnnxParser(self, network: Network, logger: TrtLogger) -> OnnxParser: ...
    def get_plugin_registry(self) -> PluginRegistry: ...
    def init_libnvinfer_plugins(self, logger: TrtLogger, namespace: str) -> bool: ...
