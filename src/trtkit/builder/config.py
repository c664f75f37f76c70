"""Build options: :class:`BuildConfig` and the vocabulary of every option with a fixed set of values.

Each vocabulary is a ``Literal`` defined once here. :class:`BuildConfig` checks values against it
(``typing.get_args``) and the command line derives its choices from it, so the two never disagree.
"""

from __future__ import annotations

import math
import os
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
    "IMPLICIT_CALIBRATION",
    "QUANTIZED_PRECISIONS",
    "BuildConfig",
    "Converter",
    "HardwareCompatibility",
    "MemoryPool",
    "Precision",
    "ProfilingVerbosity",
    "Sanitize",
    "TacticSource",
    "check_fp32_ops",
    "choices",
    "parse_size",
    "resolve_fp32_ops",
]

Precision: TypeAlias = Literal["fp32", "fp16", "bf16", "int8", "fp8"]
"""``BuildConfig.precision``: fp16/bf16 lower a float model; int8/fp8 build a model that carries Q/DQ nodes of
that type (``trtkit quantize`` makes one; ``Engine.from_onnx(..., calibration_data=...)`` does both steps)."""
QUANTIZED_PRECISIONS: Final[tuple[str, ...]] = ("int8", "fp8")
"""Precisions reached through the model's own Q/DQ nodes (explicit quantization), never by calibrating."""
IMPLICIT_CALIBRATION: Final = (
    "trtkit offers no implicit INT8 calibrator or calibration cache (TensorRT deprecated them in 10.1 and removed "
    "them in 11; TensorRT-RTX never had them). Quantize the model to Q/DQ instead: `trtkit quantize MODEL -o "
    "MODEL.int8.onnx --calib DATA`, or in one step `trtkit build MODEL --precision int8 --calib DATA` / "
    "Engine.from_onnx(model, config=BuildConfig(precision=\"int8\"), calibration_data=DATA)"
)
"""The error text for anyone asking for an implicit calibrator: it names the Q/DQ path."""
_CALIBRATOR_OPTIONS: Final = frozenset({
    "calibrator", "int8_calibrator", "calibration_cache", "calib_cache", "int8_calibration_cache", "calibration",
    "calibration_data", "calib", "calibration_algorithm", "calibration_profile", "quantization_flags"})
Converter: TypeAlias = Literal["auto", "modelopt", "onnxconverter-common"]
"""``BuildConfig.converter``: the tool converting the model for fp16/bf16 (``auto``: ModelOpt if installed)."""
ProfilingVerbosity: TypeAlias = Literal["layer_names_only", "detailed", "none"]
"""``BuildConfig.profiling_verbosity``; upper-cased, the ``trt.ProfilingVerbosity`` member."""
HardwareCompatibility: TypeAlias = Literal["none", "ampere_plus", "same_compute_capability"]
"""``BuildConfig.hardware_compatibility``; upper-cased, the ``trt.HardwareCompatibilityLevel`` member."""
MemoryPool: TypeAlias = Literal["workspace", "tactic_shared_memory", "tactic_dram"]
"""Keys of ``BuildConfig.memory_pool_limits``; upper-cased, the ``trt.MemoryPoolType`` member."""
Sanitize: TypeAlias = Literal["auto", "always", "never"]
"""``BuildConfig.sanitize``: when the graph preparation (:mod:`trtkit.builder.prepare`) runs."""
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

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE | re.ASCII)
_NONZERO_POOLS: Final = {"workspace": "scratch memory", "tactic_shared_memory": "shared memory for its kernels"}
_SEQUENCES: Final = ("tactic_sources", "compute_capabilities", "plugins", "fp32_ops")
_PREPARATION: Final = ("sanitize", "freeze", "upgrade_opset", "lower_dynamic_quant")
LOWEST_UPGRADE_OPSET: Final = 7
"""The lowest ``upgrade_opset``: TensorRT's parser rejects opset 6 forms."""


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
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ConfigError(f"a size must be a number of bytes (int) or a string such as '4G', got "
                          f"{type(text).__name__} {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ConfigError(f"a size must be >= 0 bytes, got {text}")
        return text
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"cannot read size {text!r}; write e.g. 4G, 512M, 64K or a number of bytes")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def _check_type(option: str, value: object, kinds: type | tuple[type, ...], expected: str) -> None:
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        raise ConfigError(f"{option} must be {expected}, got {type(value).__name__} {value!r}")


def _check_int(option: str, value: object, low: int, high: int | None = None) -> None:
    """``value`` is None or an int (not a bool) in ``[low, high]``."""
    if value is None:
        return
    span = f"between {low} and {high}" if high is not None else f">= {low}"
    _check_type(option, value, int, f"an int {span} (or None for TensorRT's default)")
    assert isinstance(value, int)
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{option} must be {span}, got {value}")


def _names_tuple(option: str, value: object) -> tuple[str, ...] | None:
    """A string or a list/tuple of strings (or paths) -> tuple of str; None stays None."""
    if value is None:
        return None
    if isinstance(value, str | os.PathLike):
        value = (value,)
    if not isinstance(value, list | tuple | set | frozenset):
        raise ConfigError(f"{option} must be a string or a list of strings, got {type(value).__name__} {value!r}")
    out = []
    for item in value:
        if not isinstance(item, str | os.PathLike):
            raise ConfigError(f"{option} entries must be strings, got {type(item).__name__} {item!r}")
        out.append(os.fspath(item))
    return tuple(out)


def _frozen_value(name: str, value: object, depth: int = 0) -> object:
    """A frozen input's value as immutable JSON-able data: a number, a bool, or nested tuples of them."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"freeze[{name!r}]: {value} is not a finite number; freeze inputs to finite values")
        return value
    if isinstance(value, list | tuple) and depth < 8:
        items = tuple(_frozen_value(name, v, depth + 1) for v in value)
        if not items:
            raise ConfigError(f"freeze[{name!r}]: an empty list has no values; give a number or a list of numbers")
        if len({len(v) if isinstance(v, tuple) else -1 for v in items}) > 1:
            raise ConfigError(f"freeze[{name!r}]: nested lists must be rectangular (every row the same length)")
        return items
    tolist = getattr(value, "tolist", None)  # a NumPy array or scalar
    if callable(tolist) and depth == 0:
        return _frozen_value(name, tolist(), depth)
    raise ConfigError(f"freeze[{name!r}] must be a number or a (nested) list of numbers, got "
                      f"{type(value).__name__} {value!r}")


def _check_freeze(value: object) -> Mapping[str, object] | None:
    """``freeze`` -> a read-only mapping of input name to immutable value (None when empty)."""
    if value is None:
        return None
    _check_type("freeze", value, Mapping, "a mapping of input name to value, e.g. {'sr': 16000}")
    assert isinstance(value, Mapping)
    out: dict[str, object] = {}
    for name, v in value.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"freeze keys must be input names (non-empty strings), got {name!r}")
        out[name] = _frozen_value(name, v)
    return MappingProxyType(out) if out else None


def _jsonable(value: object) -> object:
    return [_jsonable(v) for v in value] if isinstance(value, tuple) else value


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


def check_fp32_ops(ops: Iterable[str], model_ops: Iterable[str] = ()) -> None:
    """Refuse op type names in ``ops`` that are neither ONNX operators nor op types of the model (a typo would
    otherwise keep nothing in FP32, silently), suggesting close matches.

    Raises:
        ConfigError: naming each unknown op type.
    """
    import difflib

    from onnx import defs

    known = {schema.name for schema in defs.get_all_schemas_with_history()} | set(model_ops)
    unknown = [op for op in ops if op not in known]
    if not unknown:
        return
    lowered = {k.lower(): k for k in known}
    hints = []
    for op in unknown:
        close = [lowered[op.lower()]] if op.lower() in lowered else difflib.get_close_matches(op, sorted(known), 3)
        hints.append(f"{op!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    raise ConfigError(f"fp32_ops: unknown op type{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; op types are "
                      "ONNX operator names such as Softmax or LayerNormalization (case matters), or op types "
                      "of the model")


@dataclass(frozen=True)
class BuildConfig:
    """How to build an engine. Frozen; every field has TensorRT's default.

    A value outside an option's vocabulary raises :class:`~trtkit.errors.ConfigError` here. An option the
    active backend lacks raises :class:`~trtkit.errors.UnsupportedFeatureError` at build time naming the
    option and the reason.
    """

    precision: Precision = "fp32"
    """``fp32``, ``fp16``, ``bf16``, ``int8`` or ``fp8``. On TensorRT 10 they set the builder flags; int8/fp8 need
    a model carrying Q/DQ nodes of that type (the builder never calibrates; see ``docs/quantization.md``)."""
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
    sanitize: Sanitize = "auto"
    """Graph preparation (:mod:`trtkit.builder.prepare`): ``auto`` only when the first parse or build fails
    (then one retry, with a warning naming what changed), ``always`` before parsing, ``never``."""
    freeze: Mapping[str, object] | None = None
    """Inputs replaced by constants, e.g. ``{"sr": 16000}``; they leave the engine's inputs. Prepares the
    model before parsing whatever ``sanitize`` says (``never`` refuses it)."""
    upgrade_opset: int | None = None
    """When the model is prepared: the opset to convert it to (None: only below the parser's lowest)."""
    lower_dynamic_quant: bool = False
    """When the model is prepared: DynamicQuantizeLinear + ConvInteger/MatMulInteger become float Conv/MatMul
    (results differ from ONNX Runtime's quantized ones by the quantization error)."""

    def __new__(cls, *args: object, **kwargs: object) -> BuildConfig:
        """Refuse implicit-calibration options by name, naming the Q/DQ path (the fields are set by __init__)."""
        asked = sorted(_CALIBRATOR_OPTIONS.intersection(kwargs))
        if asked:
            raise ConfigError(f"BuildConfig has no option {', '.join(asked)}: {IMPLICIT_CALIBRATION}")
        return super().__new__(cls)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.type == "bool":
                _check_type(f.name, getattr(self, f.name), bool, "True or False")
        _check_choice("precision", self.precision, Precision)
        _check_choice("converter", self.converter, Converter)
        if self.profiling_verbosity is not None:
            _check_choice("profiling_verbosity", self.profiling_verbosity, ProfilingVerbosity)
        if self.hardware_compatibility is not None:
            _check_choice("hardware_compatibility", self.hardware_compatibility, HardwareCompatibility)
        _check_type("memory_pool_limits", self.memory_pool_limits, Mapping,
                    "a mapping of pool name to size, e.g. {'workspace': '1G'}")
        pools: dict[str, int] = {}
        for name, size in dict(self.memory_pool_limits).items():
            _check_choice("memory pool", name, MemoryPool)
            try:
                value = parse_size(size)
            except ConfigError as exc:
                raise ConfigError(f"memory pool {name}: {exc}") from None
            if value == 0 and name in _NONZERO_POOLS:
                raise ConfigError(f"memory pool {name} limit 0 leaves TensorRT no {_NONZERO_POOLS[name]}, and "
                                  "every build fails; give a size such as 256M, or leave the pool out for "
                                  "TensorRT's default")
            pools[name] = value
        object.__setattr__(self, "memory_pool_limits", MappingProxyType(pools))
        _check_int("optimization_level", self.optimization_level, 0, 5)
        _check_int("max_aux_streams", self.max_aux_streams, 0)
        _check_int("builder_threads", self.builder_threads, 1)
        if self.timing_cache is not None:
            _check_type("timing_cache", self.timing_cache, (str, os.PathLike), "a file path or None")
            object.__setattr__(self, "timing_cache", os.fspath(self.timing_cache))
        for name in _SEQUENCES:
            names = _names_tuple(name, getattr(self, name))
            if name == "plugins" and names is None:
                raise ConfigError("plugins must be a list of library paths (empty for none), got None")
            object.__setattr__(self, name, names)
        for source in self.tactic_sources or ():
            _check_choice("tactic source", source.upper(), TacticSource)
        for cc in self.compute_capabilities or ():
            parse_compute_capability(cc)
        if self.exclude_lean_runtime and not self.version_compatible:
            raise ConfigError("exclude_lean_runtime needs version_compatible=True; set both or neither")
        self._check_preparation()

    def _check_preparation(self) -> None:
        _check_choice("sanitize", self.sanitize, Sanitize)
        object.__setattr__(self, "freeze", _check_freeze(self.freeze))
        if self.upgrade_opset is not None:
            from onnx import defs

            _check_int("upgrade_opset", self.upgrade_opset, LOWEST_UPGRADE_OPSET, int(defs.onnx_opset_version()))
        if self.sanitize == "never":
            asked = [name for name in _PREPARATION[1:] if getattr(self, name) not in (None, False)]
            if asked:
                raise ConfigError(f"{', '.join(asked)} prepare{'s' if len(asked) == 1 else ''} the graph, which "
                                  "sanitize='never' forbids; leave sanitize at 'auto' (or 'always')")

    def to_dict(self) -> dict[str, object]:
        """Every option as JSON-ready values (stored in the manifest)."""
        d: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["memory_pool_limits"] = dict(self.memory_pool_limits)
        d["freeze"] = None if self.freeze is None else {k: _jsonable(v) for k, v in self.freeze.items()}
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
        if self.sanitize == "never":  # no preparation can run: the key stays what it was before these options
            for name in _PREPARATION:
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
        calibration = sorted(_CALIBRATOR_OPTIONS.intersection(unknown))
        if calibration:
            raise ConfigError(f"BuildConfig has no option {', '.join(calibration)}: {IMPLICIT_CALIBRATION}")
        if unknown:
            raise ConfigError(f"unknown BuildConfig options: {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**dict(data))  # type: ignore[arg-type]


def _file_digest(path: str) -> str:
    p = Path(path)
    return f"{p.name}:{sha256_bytes(p.read_bytes())}" if p.is_file() else p.name
