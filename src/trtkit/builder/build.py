"""The builder: ONNX model + profiles + :class:`BuildConfig` -> serialized TensorRT engine with a manifest.

Use :func:`build_engine`; it returns a :class:`BuiltEngine` (plan bytes and manifest) that
:meth:`BuiltEngine.save` writes as ``model.engine`` plus ``model.engine.manifest.json``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from trtkit import dtypes
from trtkit._version import __version__
from trtkit.backend import Backend, BuilderConfig, Network, get_backend
from trtkit.builder.diagnostics import build_failure_message, parse_into
from trtkit.builder.model import ModelSource, OnnxModel, load_onnx
from trtkit.builder.progress import ProgressCallback, TqdmProgress, make_monitor
from trtkit.builder.timing_cache import TimingCacheFile
from trtkit.errors import (
    BuildCancelledError,
    BuildError,
    ModelError,
    TrtkitError,
    UnsupportedFeatureError,
)
from trtkit.files import sha256_bytes
from trtkit.log import get_logger
from trtkit.manifest import BuiltEngine, Manifest, TensorInfo
from trtkit.profiles import InputInfo, Profile, normalize_profiles, resolve_profiles

__all__ = ["BuildConfig", "BuiltEngine", "build_engine", "parse_size"]

_log = get_logger("builder")

Precision = Literal["fp32", "fp16", "bf16"]
_PRECISIONS: Final = ("fp32", "fp16", "bf16")
_POOLS: Final = {
    "workspace": "WORKSPACE",
    "tactic_shared_memory": "TACTIC_SHARED_MEMORY",
    "tactic_dram": "TACTIC_DRAM",
}
_VERBOSITY: Final = {"layer_names_only": "LAYER_NAMES_ONLY", "detailed": "DETAILED", "none": "NONE"}
_HW_COMPAT: Final = {
    "none": "NONE",
    "ampere_plus": "AMPERE_PLUS",
    "same_compute_capability": "SAME_COMPUTE_CAPABILITY",
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """``"4G"``, ``"512M"``, ``"1024"`` (bytes) -> bytes. Suffixes are powers of 1024."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"cannot read size {text!r}; write e.g. 4G, 512M, 64K or a number of bytes")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def _cc_name(value: str) -> str:
    """``"8.6"``, ``"86"``, ``"sm86"``, ``"SM_86"``, ``"current"`` -> ``trt.ComputeCapability`` member name."""
    v = value.strip().upper().replace("_", "").replace("SM", "")
    if v == "CURRENT":
        return "CURRENT"
    v = v.replace(".", "")
    if not v.isdigit():
        raise UnsupportedFeatureError(
            f"cannot read compute capability {value!r}; write e.g. 8.6, 89, sm120 or current"
        )
    return f"SM{v}"


@dataclass(frozen=True)
class BuildConfig:
    """How to build an engine. Frozen; every field has TensorRT's default.

    An option the active backend lacks raises :class:`~trtkit.errors.UnsupportedFeatureError` at build time
    naming the option and the reason.
    """

    precision: Precision = "fp32"
    """``fp32``, ``fp16`` or ``bf16``. On TensorRT 10 fp16/bf16 set the builder flags."""
    tf32: bool = True
    """Allow TF32 for FP32 matrix math (TensorRT's default)."""
    strongly_typed: bool = False
    """Build a strongly typed network (TensorRT 10). TensorRT 11 and RTX are always strongly typed."""
    memory_pool_limits: Mapping[str, int] = field(default_factory=dict)
    """Bytes per pool: ``workspace``, ``tactic_shared_memory``, ``tactic_dram``."""
    optimization_level: int | None = None
    """Builder optimization level 0-5 (TensorRT's default is 3)."""
    timing_cache: str | None = None
    """Timing cache file: loaded before the build, merged and saved after it (full TensorRT only)."""
    profiling_verbosity: Literal["layer_names_only", "detailed", "none"] | None = None
    """``detailed`` keeps per-layer information for ``trtkit inspect --layers``."""
    hardware_compatibility: Literal["none", "ampere_plus", "same_compute_capability"] | None = None
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
    """When fp16/bf16 converts the model: op types kept in FP32; None = ``trtkit.precision.DEFAULT_FP32_OPS``."""
    converter: Literal["auto", "modelopt", "onnxconverter-common"] = "auto"
    """When fp16/bf16 converts the model: ModelOpt AutoCast if installed (auto), or the one named."""

    def __post_init__(self) -> None:
        if self.precision not in _PRECISIONS:
            raise UnsupportedFeatureError(
                f"precision {self.precision!r} is not one of {', '.join(_PRECISIONS)}"
            )
        pools = {}
        for name, size in dict(self.memory_pool_limits).items():
            if name not in _POOLS:
                raise UnsupportedFeatureError(
                    f"unknown memory pool {name!r}; expected one of {', '.join(_POOLS)}"
                )
            value = parse_size(size)
            if value < 0:
                raise UnsupportedFeatureError(f"memory pool {name} limit must be >= 0, got {size!r}")
            pools[name] = value
        object.__setattr__(self, "memory_pool_limits", MappingProxyType(pools))
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise UnsupportedFeatureError(
                f"optimization_level must be between 0 and 5, got {self.optimization_level}"
            )
        for name in ("tactic_sources", "compute_capabilities", "plugins", "fp32_ops"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            elif value is not None:
                object.__setattr__(self, name, tuple(str(v) for v in value))
        if self.profiling_verbosity is not None and self.profiling_verbosity not in _VERBOSITY:
            raise UnsupportedFeatureError(
                f"profiling_verbosity must be one of {', '.join(_VERBOSITY)}, got {self.profiling_verbosity!r}"
            )
        if self.hardware_compatibility is not None and self.hardware_compatibility not in _HW_COMPAT:
            raise UnsupportedFeatureError(
                f"hardware_compatibility must be one of {', '.join(_HW_COMPAT)}, "
                f"got {self.hardware_compatibility!r}"
            )
        if self.exclude_lean_runtime and not self.version_compatible:
            raise UnsupportedFeatureError("exclude_lean_runtime needs version_compatible=True")
        if self.converter not in ("auto", "modelopt", "onnxconverter-common"):
            raise UnsupportedFeatureError(
                f"converter must be auto, modelopt or onnxconverter-common, got {self.converter!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Every option as JSON-ready values (stored in the manifest)."""
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["memory_pool_limits"] = dict(self.memory_pool_limits)
        for name in ("tactic_sources", "compute_capabilities", "plugins", "fp32_ops"):
            if d[name] is not None:
                d[name] = list(d[name])
        return d

    def cache_dict(self) -> dict[str, Any]:
        """The options that change the engine produced (part of the engine cache key)."""
        d = self.to_dict()
        d.pop("timing_cache")
        d.pop("builder_threads")
        d["plugins"] = [_file_digest(p) for p in self.plugins]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuildConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UnsupportedFeatureError(f"unknown BuildConfig options: {', '.join(sorted(unknown))}")
        return cls(**dict(data))


def _file_digest(path: str) -> str:
    p = Path(path)
    return f"{p.name}:{sha256_bytes(p.read_bytes())}" if p.is_file() else p.name


# ---- steps ------------------------------------------------------------------------------------------------


def _check_options(backend: Backend, config: BuildConfig) -> None:
    f = backend.features
    if config.precision in ("fp16", "bf16") and f.precision_flags and not config.strongly_typed:
        # TensorRT 10's builder flags; otherwise trtkit.precision converts the model before parsing.
        backend.enum("BuilderFlag", config.precision.upper(), option="precision")
    if config.strongly_typed and not f.always_strongly_typed:
        backend.enum("NetworkDefinitionCreationFlag", "STRONGLY_TYPED", option="strongly_typed")
    if config.timing_cache is not None:
        backend.require(f.timing_cache, "timing_cache", "TensorRT-RTX has no timing cache (its calls are no-ops)")
    if config.tactic_sources is not None:
        backend.require(f.tactic_sources, "tactic_sources", "tactic sources are a full-TensorRT option")
    if config.compute_capabilities is not None:
        backend.require(
            f.compute_capability_targets,
            "compute_capabilities",
            "full TensorRT builds for the GPU it runs on; use hardware_compatibility for other GPUs",
        )
    if config.refit:
        backend.require(f.refit, "refit", "BuilderFlag.REFIT does not exist")
    if config.strip_weights:
        backend.require(f.strip_plan, "strip_weights", "BuilderFlag.STRIP_PLAN does not exist")
    if config.weight_streaming:
        backend.require(f.weight_streaming, "weight_streaming", "BuilderFlag.WEIGHT_STREAMING does not exist")
    if config.version_compatible:
        backend.require(f.version_compatible, "version_compatible", "BuilderFlag.VERSION_COMPATIBLE is missing")
    if config.hardware_compatibility is not None:
        backend.require(f.hardware_compatibility, "hardware_compatibility", "HardwareCompatibilityLevel is missing")


def _load_plugins(backend: Backend, builder: Any, paths: Sequence[str]) -> None:
    if paths:
        backend.load_plugin_libraries(builder.get_plugin_registry(), paths, missing=ModelError, refused=BuildError)


def _network_tensors(network: Network, model: OnnxModel) -> tuple[list[InputInfo], list[TensorInfo]]:
    onnx_inputs = {i.name: i for i in model.inputs()}
    inputs: list[InputInfo] = []
    tensors: list[TensorInfo] = []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = tuple(int(d) for d in t.shape)
        dtype = dtypes.from_trt(t.dtype).name
        shape_tensor = bool(t.is_shape_tensor)
        names = onnx_inputs[t.name].dim_names if t.name in onnx_inputs else ()
        inputs.append(InputInfo(t.name, shape, dtype, names, shape_tensor))
        tensors.append(TensorInfo(t.name, "input", dtype, shape, "host" if shape_tensor else "device",
                                  shape_tensor))
    for i in range(network.num_outputs):
        t = network.get_output(i)
        shape_tensor = bool(t.is_shape_tensor)
        tensors.append(
            TensorInfo(t.name, "output", dtypes.from_trt(t.dtype).name, tuple(int(d) for d in t.shape),
                       "host" if shape_tensor else "device", shape_tensor)
        )
    return inputs, tensors


def _apply_config(backend: Backend, builder: Any, cfg: BuilderConfig, config: BuildConfig) -> None:
    enum = backend.enum
    if config.precision == "fp16":
        cfg.set_flag(enum("BuilderFlag", "FP16", option="precision"))
    elif config.precision == "bf16":
        cfg.set_flag(enum("BuilderFlag", "BF16", option="precision"))
    if not config.tf32:
        cfg.clear_flag(enum("BuilderFlag", "TF32", option="tf32"))
    for pool, size in config.memory_pool_limits.items():
        cfg.set_memory_pool_limit(enum("MemoryPoolType", _POOLS[pool], option="memory_pool_limits"), size)
    if config.optimization_level is not None:
        cfg.builder_optimization_level = config.optimization_level
    if config.profiling_verbosity is not None:
        cfg.profiling_verbosity = enum("ProfilingVerbosity", _VERBOSITY[config.profiling_verbosity])
    if config.hardware_compatibility is not None:
        cfg.hardware_compatibility_level = enum(
            "HardwareCompatibilityLevel", _HW_COMPAT[config.hardware_compatibility]
        )
    for option, flag in (
        ("version_compatible", "VERSION_COMPATIBLE"),
        ("exclude_lean_runtime", "EXCLUDE_LEAN_RUNTIME"),
        ("refit", "REFIT"),
        ("strip_weights", "STRIP_PLAN"),
        ("weight_streaming", "WEIGHT_STREAMING"),
    ):
        if getattr(config, option):
            cfg.set_flag(enum("BuilderFlag", flag, option=option))
    if config.max_aux_streams is not None:
        cfg.max_aux_streams = config.max_aux_streams
    if config.tactic_sources is not None:
        mask = 0
        for name in config.tactic_sources:
            mask |= 1 << int(enum("TacticSource", name.upper(), option="tactic_sources"))
        if not cfg.set_tactic_sources(mask):
            raise UnsupportedFeatureError(f"TensorRT rejected tactic_sources {list(config.tactic_sources)}")
    if config.compute_capabilities is not None:
        ccs = [enum("ComputeCapability", _cc_name(c), option="compute_capabilities")
               for c in config.compute_capabilities]
        cfg.num_compute_capabilities = len(ccs)
        for index, cc in enumerate(ccs):
            with backend.capture() as cap:
                ok = cfg.set_compute_capability(cc, index)
            if not ok:
                raise UnsupportedFeatureError(
                    f"{backend.label} rejected compute capability {config.compute_capabilities[index]!r} "
                    "(CURRENT must be the only target, and needs a GPU)",
                    tensorrt_log=cap.lines,
                )
    if config.builder_threads is not None:
        builder.max_threads = config.builder_threads


def _add_profiles(backend: Backend, builder: Any, cfg: BuilderConfig, profiles: Sequence[Profile],
                  inputs: Sequence[InputInfo]) -> None:
    shape_tensors = {i.name for i in inputs if i.is_shape_tensor}
    for index, profile in enumerate(profiles):
        p = builder.create_optimization_profile()
        if p is None:
            raise BuildError(f"{backend.label} could not create optimization profile {index}")
        for name, rng in profile.ranges.items():
            if name in shape_tensors:
                p.set_shape_input(name, rng.min, rng.opt, rng.max)
            else:
                p.set_shape(name, rng.min, rng.opt, rng.max)
        with backend.capture() as cap:
            result = cfg.add_optimization_profile(p)
        if result < 0:
            raise BuildError(f"TensorRT rejected optimization profile {index} ({profile})",
                             tensorrt_log=cap.lines)


def _target(backend: Backend, cfg: BuilderConfig) -> dict[str, Any]:
    if backend.features.compute_capability_targets:
        n = cfg.num_compute_capabilities
        names = [getattr(cfg.get_compute_capability(i), "name", "?") for i in range(n)]
        return {"compute_capabilities": names or ["default"]}
    from trtkit.gpu import current_device, device_info

    try:
        info = device_info(current_device())
    except TrtkitError as exc:
        _log.warning("could not query the GPU the engine was built for: %s", exc)
        return {"gpu": None, "compute_capability": None}
    return {"gpu": info.name, "compute_capability": info.cc_string}


def _resolve_progress(progress: bool | ProgressCallback | None) -> tuple[ProgressCallback | None, Any]:
    if progress is None:
        import sys

        progress = sys.stderr.isatty()
    if progress is True:
        bar = TqdmProgress()
        return bar, bar
    if progress is False:
        return None, None
    return progress, None


def build_engine(
    model: ModelSource | OnnxModel,
    *,
    shapes: Any = None,
    config: BuildConfig | None = None,
    backend: str | Backend | None = None,
    progress: bool | ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    save_converted_model: str | os.PathLike[str] | None = None,
) -> BuiltEngine:
    """Build a TensorRT engine from an ONNX model.

    Steps, in order: load the model; check that the backend has every requested option; load plugin
    libraries; parse; check the profiles against the parsed inputs; configure; build with progress; save the
    timing cache; describe the result in a manifest. Nothing touches a GPU before the build step.

    Args:
        model: path to an ``.onnx`` file (external weight files beside it are found), its bytes, or an
            ``onnx.ModelProto``.
        shapes: optimization profiles; see :func:`trtkit.profiles.normalize_profiles` for accepted forms.
            May be omitted when the model has no dynamic dims.
        config: build options; defaults to ``BuildConfig()``.
        backend: ``"tensorrt"``, ``"tensorrt_rtx"``, a :class:`~trtkit.backend.Backend`, or None for the
            default (see :func:`trtkit.backend.get_backend`).
        progress: True for a progress bar on stderr, False for none, a callable receiving
            :class:`~trtkit.progress.ProgressEvent` (return False to cancel), or None for a bar only when
            stderr is a terminal.
        cancel: set this event from another thread to cancel the build.
        save_converted_model: where to write the model converted for precision fp16/bf16 (TensorRT 11,
            TensorRT-RTX, or ``strongly_typed``); see :mod:`trtkit.precision`.

    Raises:
        ModelError: the model is missing, unreadable or has inputs TensorRT cannot take.
        OnnxParseError: TensorRT's parser rejected nodes; every parser error is listed.
        ShapeError: the profiles do not fit the model's inputs.
        UnsupportedFeatureError: the backend or target GPU lacks a requested option.
        BuildError: TensorRT failed to build; carries TensorRT's log.
        BuildCancelledError: the progress callback or ``cancel`` stopped the build.
    """
    config = config or BuildConfig()
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    onnx_model = model if isinstance(model, OnnxModel) else load_onnx(model)
    profiles = normalize_profiles(shapes)
    _check_options(be, config)
    from trtkit.builder.precision import prepare_model

    prepared = prepare_model(be, config, onnx_model, save_converted_model)
    parsed_model = prepared.model
    flags_config = replace(config, precision="fp32") if prepared.method == "convert" else config

    trt = be.trt
    be.init_plugins()
    builder = be.create_builder()
    _load_plugins(be, builder, config.plugins)
    flags = 0
    if config.strongly_typed and not be.features.always_strongly_typed:
        flags = 1 << int(be.enum("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"))
    with be.capture() as cap:
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, be.logger) if network is not None else None
    if network is None or parser is None:
        raise BuildError(f"{be.label} could not create a network definition and ONNX parser",
                         tensorrt_log=cap.lines)
    parse_into(be, parser, parsed_model)
    inputs, tensors = _network_tensors(network, parsed_model)
    resolved = resolve_profiles(profiles, inputs)

    cfg = builder.create_builder_config()
    if cfg is None:
        raise BuildError(f"{be.label} could not create a builder config")
    _apply_config(be, builder, cfg, flags_config)
    _add_profiles(be, builder, cfg, resolved, inputs)
    timing = TimingCacheFile(config.timing_cache) if config.timing_cache else None
    if timing is not None:
        timing.attach(cfg)

    callback, bar = _resolve_progress(progress)
    monitor, state = make_monitor(trt, callback, cancel)
    cfg.progress_monitor = monitor
    _log.info("building %s with %s (%d profile(s))", onnx_model.name, be.label, len(resolved))
    started = _dt.datetime.now(_dt.UTC)
    try:
        with be.capture() as cap:
            serialized = builder.build_serialized_network(network, cfg)
    finally:
        if bar is not None:
            bar.close()
    if serialized is None:
        if state.reason is not None:
            raise BuildCancelledError(f"the build of {onnx_model.name} was cancelled: {state.reason}")
        raise BuildError(build_failure_message(be, onnx_model.name, parsed_model, cap.errors, resolved),
                         tensorrt_log=cap.lines)
    plan = bytes(memoryview(serialized))  # type: ignore[arg-type]
    if timing is not None:
        timing.save(cfg)
    seconds = (_dt.datetime.now(_dt.UTC) - started).total_seconds()
    _log.info("built %s in %.1f s (%d bytes)", onnx_model.name, seconds, len(plan))
    if cap.records and _log.isEnabledFor(logging.DEBUG):
        _log.debug("TensorRT warnings during build: %s", cap.lines)

    manifest = Manifest(
        backend=be.name,
        backend_version=be.version,
        target=_target(be, cfg),
        compatibility={
            "hardware_compatibility": config.hardware_compatibility or "none",
            "version_compatible": config.version_compatible,
        },
        onnx={
            "name": onnx_model.name,
            "sha256": onnx_model.sha256,
            "renamed_dims": [
                {"tensor": t, "axis": a, "from": old, "to": new}
                for (t, a), (old, new) in onnx_model.renamed_dims.items()
            ],
        },
        config=config.to_dict(),
        profiles=tuple(resolved),
        tensors=tuple(tensors),
        plan_sha256=sha256_bytes(plan),
        plan_size=len(plan),
        trtkit_version=__version__,
        created=started.isoformat(timespec="seconds"),
        extra={"build_seconds": round(seconds, 3), "precision": prepared.record},
    )
    return BuiltEngine(plan=plan, manifest=manifest)
