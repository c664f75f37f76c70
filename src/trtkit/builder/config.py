"""Build options: :class:`BuildConfig` and the vocabulary of every option with a fixed set of values.

Each vocabulary is a ``Literal`` defined once here. :class:`BuildConfig` checks values against it
(``typing.get_args``) and the command line derives its choices from it, so the two never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, TypeAlias, get_args

from trtkit.errors import ConfigError
from trtkit.files import sha256_bytes
from trtkit.gpu import parse_compute_capability

__all__ = [
    "DEFAULT_FP32_OPS",
    "BuildConfig",
    "Converter",
    "HardwareCompatibility",
    "MemoryPool",
    "Precision",
    "ProfilingVerbosity",
    "TacticSource",
    "choices",
    "parse_size",
    "resolve_fp32_ops",
]

Precision: TypeAlias = Literal["fp32", "fp16", "bf16"]
"""``BuildConfig.precision``."""
Converter: TypeAlias = Literal["auto", "modelopt", "onnxconverter-common"]
"""``BuildConfig.converter``: the tool converting the model for fp16/bf16 (``auto``: ModelOpt if installed)."""
ProfilingVerbosity: TypeAlias = Literal["layer_names_only", "detailed", "none"]
"""``BuildConfig.profiling_verbosity``; upper-cased, the ``trt.ProfilingVerbosity`` member."""
HardwareCompatibility: TypeAlias = Literal["none", "ampere_plus", "same_compute_capability"]
"""``BuildConfig.hardware_compatibility``; upper-cased, the ``trt.HardwareCompatibilityLevel`` member."""
MemoryPool: TypeAlias = Literal["workspace", "tactic_shared_memory", "tactic_dram"]
"""Keys of ``BuildConfig.memory_pool_limits``; upper-cased, the ``trt.MemoryPoolType`` member."""
TacticSource: TypeAlias = Literal["CUBLAS", "CUBLAS_LT", "CUDNN", "EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"]
"""``BuildConfig.tactic_sources`` entries (any case): ``trt.TacticSource`` members."""

DEFAULT_FP32_OPS: Final[tuple[str, ...]] = (
    # exponentials, logs and powers leave FP16's range (max 65504) first
    "Exp", "Log", "Pow", "Reciprocal", "Softplus",
    # softmax and normalizations: sums of many exponentials or squares
    "Softmax", "LogSoftmax", "LayerNormalization", "GroupNormalization", "LpNormalization",
    # accumulating reductions
    "ReduceSum", "ReduceSumSquare", "ReduceMean", "ReduceProd", "ReduceLogSum", "ReduceLogSumExp",
    "ReduceL1", "ReduceL2", "CumSum",
    # coordinate and index arithmetic (also blocked by onnxconverter-common's own default list)
    "Range", "Resize", "TopK", "NonMaxSuppression", "RoiAlign",
)
"""Op types kept in FP32 by default when converting to FP16/BF16; reasons in ``docs/precision.md``."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_SEQUENCES: Final = ("tactic_sources", "compute_capabilities", "plugins", "fp32_ops")


def choices(vocabulary: object) -> tuple[str, ...]:
    """The values of a vocabulary ``Literal`` defined here, e.g. ``choices(Precision)``."""
    return tuple(str(v) for v in get_args(vocabulary))


def _check_choice(option: str, value: object, vocabulary: object) -> None:
    allowed = choices(vocabulary)
    if value not in allowed:
        raise ConfigError(f"{option} {value!r} is not one of {', '.join(allowed)}; pick one of those")


def parse_size(text: str | int) -> int:
    """``"4G"``, ``"512M"``, ``"1024"`` (bytes) -> bytes. Suffixes are powers of 1024.

    Raises:
        ConfigError: ``text`` is not a size.
    """
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"cannot read size {text!r}; write e.g. 4G, 512M, 64K or a number of bytes")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def resolve_fp32_ops(spec: Iterable[str] | None) -> tuple[str, ...]:
    """The op types to keep in FP32.

    ``None`` gives :data:`DEFAULT_FP32_OPS`. Entries ``+Op`` add to the default list and ``-Op`` remove from
    it; plain names replace the list; ``none`` alone keeps nothing in FP32.

    Raises:
        ConfigError: plain names mixed with ``+Op``/``-Op`` entries.
    """
    if spec is None:
        return DEFAULT_FP32_OPS
    items = [s.strip() for s in spec if s.strip()]
    if [i.lower() for i in items] == ["none"]:
        return ()
    if items and all(i[0] in "+-" for i in items):
        ops = list(DEFAULT_FP32_OPS)
        for item in items:
            name = item[1:].strip()
            if item[0] == "+" and name not in ops:
                ops.append(name)
            elif item[0] == "-" and name in ops:
                ops.remove(name)
        return tuple(ops)
    if any(i[0] in "+-" for i in items):
        raise ConfigError(
            f"fp32_ops {items}: either list op types to replace the default list, or give only +Op/-Op "
            "entries to change it, not both"
        )
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class BuildConfig:
    """How to build an engine. Frozen; every field has TensorRT's default.

    A value outside an option's vocabulary raises :class:`~trtkit.errors.ConfigError` here. An option the
    active backend lacks raises :class:`~trtkit.errors.UnsupportedFeatureError` at build time naming the
    option and the reason.
    """

    precision: Precision = "fp32"
    """``fp32``, ``fp16`` or ``bf16``. On TensorRT 10 fp16/bf16 set the builder flags."""
    tf32: bool = True
    """Allow TF32 for FP32 matrix math (TensorRT's default)."""
    strongly_typed: bool = False
    """Build a strongly typed network (TensorRT 10). TensorRT 11 and RTX are always strongly typed."""
    memory_pool_limits: Mapping[str, int] = field(default_factory=dict)
    """Bytes per pool (or sizes such as ``"1G"``): ``workspace``, ``tactic_shared_memory``, ``tactic_dram``."""
    optimization_level: int | None = None
    """Builder optimization level 0-5 (TensorRT's default is 3)."""
    timing_cache: str | None = None
    """Timing cache file: loaded before the build, merged and saved after it (full TensorRT only)."""
    profiling_verbosity: ProfilingVerbosity | None = None
    """``detailed`` keeps per-layer information for ``trtkit inspect --layers``."""
    hardware_compatibility: HardwareCompatibility | None = None
    version_compatible: bool = False
    exclude_lean_runtime: bool = False
    refit: bool = False
    strip_weights: bool = False
    weight_streaming: bool = False
    max_aux_streams: int | None = None
    tactic_sources: tuple[str, ...] | None = None
    """Full TensorRT only: e.g. ``("CUBLAS", "EDGE_MASK_CONVOLUTIONS")``; names of ``trt.TacticSource``."""
    compute_capabilities: tuple[str, ...] | None = None
    """TensorRT-RTX only: target GPUs, e.g. ``("8.6", "8.9")`` or ``("current",)``."""
    builder_threads: int | None = None
    plugins: tuple[str, ...] = ()
    """Plugin shared libraries loaded into the plugin registry before parsing."""
    keep_io_types: bool = True
    """When fp16/bf16 converts the model: graph inputs and outputs keep their types (FP32)."""
    fp32_ops: tuple[str, ...] | None = None
    """When fp16/bf16 converts the model: op types kept in FP32; None = :data:`DEFAULT_FP32_OPS`."""
    converter: Converter = "auto"
    """When fp16/bf16 converts the model: ModelOpt AutoCast if installed (auto), or the one named."""

    def __post_init__(self) -> None:
        _check_choice("precision", self.precision, Precision)
        _check_choice("converter", self.converter, Converter)
        if self.profiling_verbosity is not None:
            _check_choice("profiling_verbosity", self.profiling_verbosity, ProfilingVerbosity)
        if self.hardware_compatibility is not None:
            _check_choice("hardware_compatibility", self.hardware_compatibility, HardwareCompatibility)
        pools: dict[str, int] = {}
        for name, size in dict(self.memory_pool_limits).items():
            _check_choice("memory pool", name, MemoryPool)
            value = parse_size(size)
            if value < 0:
                raise ConfigError(f"memory pool {name} limit must be >= 0, got {size!r}")
            pools[name] = value
        object.__setattr__(self, "memory_pool_limits", MappingProxyType(pools))
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise ConfigError(f"optimization_level must be between 0 and 5, got {self.optimization_level}")
        for name in _SEQUENCES:
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            elif value is not None:
                object.__setattr__(self, name, tuple(str(v) for v in value))
        for source in self.tactic_sources or ():
            _check_choice("tactic source", source.upper(), TacticSource)
        for cc in self.compute_capabilities or ():
            parse_compute_capability(cc)
        if self.exclude_lean_runtime and not self.version_compatible:
            raise ConfigError("exclude_lean_runtime needs version_compatible=True; set both or neither")

    def to_dict(self) -> dict[str, object]:
        """Every option as JSON-ready values (stored in the manifest)."""
        d: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["memory_pool_limits"] = dict(self.memory_pool_limits)
        for name in _SEQUENCES:
            value = getattr(self, name)
            if value is not None:
                d[name] = list(value)
        return d

    def cache_dict(self) -> dict[str, object]:
        """The options that change the engine produced (part of the engine cache key). The compute capabilities
        are left to the key's target (:func:`trtkit.builder.target.build_target`), which reads every spelling."""
        d = self.to_dict()
        for name in ("timing_cache", "builder_threads", "compute_capabilities"):
            d.pop(name)
        d["plugins"] = [_file_digest(p) for p in self.plugins]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> BuildConfig:
        """The inverse of :meth:`to_dict`.

        Raises:
            ConfigError: an unknown option name or a bad value.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown BuildConfig options: {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**dict(data))  # type: ignore[arg-type]


def _file_digest(path: str) -> str:
    p = Path(path)
    return f"{p.name}:{sha256_bytes(p.read_bytes())}" if p.is_file() else p.name
