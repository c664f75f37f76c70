"""The builder: ONNX model + profiles + :class:`BuildConfig` -> serialized TensorRT engine with a manifest.

Use :func:`build_engine`; it returns a :class:`BuiltEngine` (plan bytes and manifest) that
:meth:`BuiltEngine.save` writes as ``model.engine`` plus ``model.engine.manifest.json``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from trtkit import dtypes
from trtkit._version import __version__
from trtkit.backend import Backend, Builder, BuilderConfig, Network, get_backend
from trtkit.builder.config import BuildConfig, check_fp32_ops
from trtkit.builder.conversion import prepare_model
from trtkit.builder.diagnostics import (
    build_failure_message,
    known_build_failure,
    parse_into,
    without_no_gpu_noise,
)
from trtkit.builder.model import ModelSource, OnnxModel, iter_graphs, load_onnx
from trtkit.builder.precision import PrecisionPlan, model_precisions, plan_precision
from trtkit.builder.preparation import (
    check_freeze,
    failure_reason,
    notice,
    prepare_after_failure,
    prepare_options,
    retry_failed,
)
from trtkit.builder.prepare import prepare
from trtkit.builder.progress import ProgressCallback, SigintCancels, TqdmProgress, make_monitor, run_interruptibly
from trtkit.builder.target import BuildTarget, build_target
from trtkit.builder.timing_cache import TimingCacheFile
from trtkit.errors import (
    BuildCancelledError,
    BuildError,
    ConfigError,
    ModelError,
    OnnxParseError,
    TrtkitError,
    UnsupportedFeatureError,
)
from trtkit.files import sha256_bytes
from trtkit.gpu import current_device, set_device, sm_name
from trtkit.log import get_logger
from trtkit.manifest import BuiltEngine, Manifest, TensorInfo
from trtkit.profiles import InputInfo, Profile, ProfilesLike, normalize_profiles, resolve_profiles

__all__ = ["build_engine", "check_build_arguments"]

_log = get_logger("builder")
_T = TypeVar("_T")

# ---- steps ------------------------------------------------------------------------------------------------


def _check_options(backend: Backend, config: BuildConfig) -> None:
    f = backend.features
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


def _load_plugins(backend: Backend, builder: Builder, paths: Sequence[str]) -> None:
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


def _apply_config(backend: Backend, builder: Builder, cfg: BuilderConfig, config: BuildConfig,
                  plan: PrecisionPlan, target: BuildTarget) -> None:
    enum = backend.enum
    for flag in plan.builder_flags:
        cfg.set_flag(enum("BuilderFlag", flag, option="precision"))
    if not config.tf32:
        cfg.clear_flag(enum("BuilderFlag", "TF32", option="tf32"))
    for pool, size in config.memory_pool_limits.items():
        cfg.set_memory_pool_limit(enum("MemoryPoolType", pool.upper(), option="memory_pool_limits"), size)
    if config.optimization_level is not None:
        cfg.builder_optimization_level = config.optimization_level
    if config.profiling_verbosity is not None:
        cfg.profiling_verbosity = enum("ProfilingVerbosity", config.profiling_verbosity.upper())
    if config.hardware_compatibility is not None:
        cfg.hardware_compatibility_level = enum("HardwareCompatibilityLevel", config.hardware_compatibility.upper())
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
    if config.compute_capabilities is not None and target.compute_capabilities is not None:
        ccs = [enum("ComputeCapability", sm_name(cc), option="compute_capabilities")
               for cc in target.compute_capabilities]
        cfg.num_compute_capabilities = len(ccs)
        for index, cc in enumerate(ccs):
            with backend.capture() as cap:
                ok = cfg.set_compute_capability(cc, index)
            if not ok:
                error = UnsupportedFeatureError(
                    f"{backend.label} rejected compute capability {config.compute_capabilities[index]!r}: "
                    "'current' must be the only target, and needs a GPU on this machine; list the GPUs "
                    "instead, e.g. --computeCapabilities 8.6,8.9")
                error.tensorrt_log = tuple(cap.lines)
                raise error
    if config.builder_threads is not None:
        builder.max_threads = config.builder_threads


def _add_profiles(backend: Backend, builder: Builder, cfg: BuilderConfig, profiles: Sequence[Profile],
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


@dataclass
class _Defined:
    """A parsed network with its builder config, ready for ``build_serialized_network``."""

    builder: Builder
    network: Network
    cfg: BuilderConfig
    profiles: list[Profile]
    tensors: list[TensorInfo]
    timing: TimingCacheFile | None


def _define_network(be: Backend, config: BuildConfig, precision: PrecisionPlan, target: BuildTarget,
                    model: OnnxModel, profiles: Sequence[Profile]) -> _Defined:
    """Create the builder, parse ``model`` and configure: every TensorRT step before the build itself."""
    be.init_plugins()
    builder = be.create_builder()
    _load_plugins(be, builder, config.plugins)
    flags = 0
    if config.strongly_typed and not be.features.always_strongly_typed:
        flags = 1 << int(be.enum("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"))
    with be.capture() as cap:
        network = builder.create_network(flags)
        parser = be.trt.OnnxParser(network, be.logger) if network is not None else None
    if network is None or parser is None:
        raise BuildError(f"{be.label} could not create a network definition and ONNX parser",
                         tensorrt_log=cap.lines)
    parse_into(be, parser, model)
    inputs, tensors = _network_tensors(network, model)
    resolved = resolve_profiles(profiles, inputs)
    cfg = builder.create_builder_config()
    if cfg is None:
        raise BuildError(f"{be.label} could not create a builder config")
    _apply_config(be, builder, cfg, config, precision, target)
    _add_profiles(be, builder, cfg, resolved, inputs)
    timing = TimingCacheFile(config.timing_cache) if config.timing_cache else None
    if timing is not None:
        timing.attach(cfg)
    return _Defined(builder, network, cfg, list(resolved), tensors, timing)


def _resolve_progress(progress: bool | ProgressCallback | None) -> tuple[ProgressCallback | None,
                                                                          TqdmProgress | None]:
    if progress is None:
        progress = sys.stderr.isatty()
    if progress is True:
        bar = TqdmProgress()
        return bar, bar
    if progress is False:
        return None, None
    return progress, None


def _on_this_device(work: Callable[[], _T]) -> Callable[[], _T]:
    """``work`` made to run on the calling thread's current CUDA device, from any thread.

    The current device is per thread, and full TensorRT builds for the current device: the build runs on a worker
    thread (see :func:`~trtkit.builder.progress.run_interruptibly`), which must use the caller's device, not 0.
    Without CUDA (TensorRT-RTX on a machine without a GPU) there is no device to carry over.
    """
    try:
        device: int | None = current_device()
    except TrtkitError:
        device = None

    def on_device() -> _T:
        if device is not None:
            set_device(device)
        return work()

    return on_device


def check_build_arguments(config: object, progress: object = None, cancel: object = None,
                          save_converted_model: object = None) -> BuildConfig:
    """The argument types of :func:`build_engine` (ConfigError naming the argument), and the config to use."""
    if config is None:
        config = BuildConfig()
    elif isinstance(config, Mapping):
        raise ConfigError(f"config must be a trtkit.builder.BuildConfig, got a {type(config).__name__}; write "
                          f"config=BuildConfig(**{dict(config)!r}) (or BuildConfig.from_dict(...))")
    elif not isinstance(config, BuildConfig):
        raise ConfigError(f"config must be a trtkit.builder.BuildConfig or None, got {type(config).__name__}")
    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        raise ConfigError(f"progress must be True, False, None or a callable taking a ProgressEvent, got "
                          f"{type(progress).__name__} {progress!r}")
    if cancel is not None and not all(callable(getattr(cancel, m, None)) for m in ("is_set", "set")):
        raise ConfigError(f"cancel must be a threading.Event (set it to cancel the build) or None, got "
                          f"{type(cancel).__name__} {cancel!r}")
    if save_converted_model is not None and not isinstance(save_converted_model, str | os.PathLike):
        raise ConfigError(f"save_converted_model must be a file path or None, got "
                          f"{type(save_converted_model).__name__} {save_converted_model!r}")
    return config


# ---- graph preparation and the build attempt ------------------------------------------------------------


@dataclass
class _Result:
    plan: bytes
    profiles: list[Profile]
    tensors: list[TensorInfo]
    precision: dict[str, object]
    started: _dt.datetime
    seconds: float


@dataclass
class _Attempt:
    """One parse and build of a (possibly prepared) model with fixed arguments."""

    be: Backend
    config: BuildConfig
    target: BuildTarget
    name: str
    profiles: Sequence[Profile]
    progress: bool | ProgressCallback | None
    cancel: threading.Event | None
    save_converted_model: str | os.PathLike[str] | None

    def run(self, model: OnnxModel) -> _Result:
        be, config, target, name = self.be, self.config, self.target, self.name
        carries = model_precisions(model)
        precision = plan_precision(be.features, config, target, carries["quantized"])
        for flag in precision.builder_flags:
            be.enum("BuilderFlag", flag, option="precision")
        if carries["qdq_nodes"] and be.features.precision_flags and not config.strongly_typed:
            _log.warning("%s carries %d Q/DQ nodes; NVIDIA recommends building explicitly quantized models "
                         "strongly typed (strongly_typed=True) on %s", name, carries["qdq_nodes"], be.label)
        converted = prepare_model(precision, model, carries, self.save_converted_model)
        parsed_model = converted.model
        callback, bar = _resolve_progress(self.progress)
        # SIGINT cancels through the monitor while TensorRT runs (its callbacks would swallow KeyboardInterrupt);
        # leaving the block raises KeyboardInterrupt when it arrived, whatever TensorRT returned.
        with SigintCancels() as sigint:
            try:
                net = _define_network(be, config, precision, target, parsed_model, self.profiles)
                if sigint.fired:  # Ctrl-C while parsing: do not start a build only to cancel it
                    raise BuildCancelledError(f"the build of {name} was interrupted (Ctrl-C)")
                monitor, state = make_monitor(be.trt, callback, self.cancel, sigint.event)
                net.cfg.progress_monitor = monitor
                _log.info("building %s with %s (%d profile(s))", name, be.label, len(net.profiles))
                started = _dt.datetime.now(_dt.UTC)
                with be.capture(on_interrupt=sigint.event) as cap:
                    serialized = run_interruptibly(_on_this_device(
                        lambda: net.builder.build_serialized_network(net.network, net.cfg)), sigint.event)
            finally:
                if bar is not None:
                    bar.close()
            if serialized is None:
                if sigint.fired:
                    raise BuildCancelledError(f"the build of {name} was interrupted (Ctrl-C)")
                if state.reason is not None:
                    raise BuildCancelledError(f"the build of {name} was cancelled: {state.reason}")
                known = known_build_failure(be, config, cap.errors)
                if known is not None:  # one line with the fix; TensorRT's text stays in .tensorrt_log
                    error = UnsupportedFeatureError(known)
                    error.tensorrt_log = tuple(cap.lines)
                    raise error
                failure = BuildError(build_failure_message(be, name, parsed_model, cap.errors, net.profiles),
                                     tensorrt_log=without_no_gpu_noise(cap.lines))
                failure.tensorrt_log = tuple(cap.lines)  # the full log, noise included
                raise failure
        plan = bytes(memoryview(serialized))  # type: ignore[arg-type]
        if net.timing is not None:
            net.timing.save(net.cfg)
        seconds = (_dt.datetime.now(_dt.UTC) - started).total_seconds()
        if cap.records and _log.isEnabledFor(logging.DEBUG):
            _log.debug("TensorRT warnings during build: %s", cap.lines)
        return _Result(plan, list(net.profiles), list(net.tensors), converted.record, started, seconds)


def build_engine(
    model: ModelSource | OnnxModel,
    *,
    shapes: ProfilesLike = None,
    config: BuildConfig | None = None,
    backend: str | Backend | None = None,
    progress: bool | ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    save_converted_model: str | os.PathLike[str] | None = None,
) -> BuiltEngine:
    """Build a TensorRT engine from an ONNX model.

    Steps, in order: load the model; check that the backend has every requested option; prepare the graph when
    ``config`` asks (``sanitize="always"`` or ``freeze``); load plugin libraries; parse; check the profiles
    against the parsed inputs; configure; build with progress; save the timing cache; describe the result in a
    manifest. With ``sanitize="auto"`` (the default), a parse or build failure prepares the graph
    (:func:`trtkit.builder.prepare.prepare`) and retries once, logging a warning naming what changed; a model
    that builds as it is is never changed. ``manifest.extra["preparation"]`` records any preparation. Nothing
    touches a GPU before the build step.

    Args:
        model: path to an ``.onnx`` file (external weight files beside it are found), its bytes, or an
            ``onnx.ModelProto``.
        shapes: optimization profiles; see :func:`trtkit.profiles.normalize_profiles` for accepted forms.
            May be omitted when the model has no dynamic dims.
        config: build options; defaults to ``BuildConfig()``.
        backend: ``"tensorrt"``, ``"tensorrt_rtx"``, a :class:`~trtkit.backend.Backend`, or None for the
            default (see :func:`trtkit.backend.get_backend`).
        progress: True for a progress bar on stderr, False for none, a callable receiving
            :class:`~trtkit.builder.progress.ProgressEvent` (return False to cancel), or None for a bar only when
            stderr is a terminal.
        cancel: set this event from another thread to cancel the build.
        save_converted_model: where to write the model converted for precision fp16/bf16 (TensorRT 11,
            TensorRT-RTX, or ``strongly_typed``); see :mod:`trtkit.builder.precision`.

    Raises:
        ModelError: the model is missing, unreadable or has inputs TensorRT cannot take.
        OnnxParseError: TensorRT's parser rejected nodes; every parser error is listed.
        ShapeError: the profiles do not fit the model's inputs.
        ConfigError: ``freeze`` names an input the model lacks, or a profile gives shapes for a frozen input.
        UnsupportedFeatureError: the backend or target GPU lacks a requested option.
        BuildError: TensorRT failed to build; carries TensorRT's log.
        BuildCancelledError: the progress callback or ``cancel`` stopped the build.
        ConfigError: an argument of the wrong type (``config`` as a dict, ``cancel=True``, ...), or
            ``save_converted_model`` would overwrite the model or its weight files.
        KeyboardInterrupt: Ctrl-C (SIGINT) during the build; TensorRT stops at its next progress report.
    """
    config = check_build_arguments(config, progress, cancel, save_converted_model)
    be = get_backend(backend)
    onnx_model = load_onnx(model)
    if save_converted_model is not None:
        onnx_model.refuse_onnx_overwrite(save_converted_model, what="save_converted_model")
    profiles = normalize_profiles(shapes)
    _check_options(be, config)
    target = build_target(be, config)
    if config.fp32_ops is not None:
        edits = [op.strip()[1:].strip() if op.strip()[:1] in "+-" else op.strip() for op in config.fp32_ops]
        check_fp32_ops([op for op in edits if op and op.lower() != "none"],
                       (n.op_type for g in iter_graphs(onnx_model.proto.graph) for n in g.node))
    check_freeze(config, onnx_model, profiles)
    attempt = _Attempt(be, config, target, onnx_model.name, profiles, progress, cancel, save_converted_model)
    preparation: dict[str, object] | None = None
    if config.sanitize == "always" or config.freeze:
        prepared = prepare(onnx_model, prepare_options(config), profiles)
        preparation = {**prepared.record, "trigger": "always" if config.sanitize == "always" else "freeze"}
        _log.info("prepared %s: %s", onnx_model.name, "; ".join(prepared.steps) or "nothing changed")
        result = attempt.run(prepared.model)
    else:
        try:
            result = attempt.run(onnx_model)
        except (OnnxParseError, BuildError) as first:
            if config.sanitize != "auto" or isinstance(first, BuildCancelledError):
                raise
            prepared = prepare_after_failure(first, onnx_model, config, profiles)
            preparation = {**prepared.record, "trigger": "retry", "first_error": failure_reason(first)}
            try:
                result = attempt.run(prepared.model)
            except (OnnxParseError, BuildError) as second:
                if isinstance(second, BuildCancelledError):
                    raise
                raise retry_failed(first, second, prepared) from second
            notice(onnx_model.name, first, prepared)

    plan, seconds = result.plan, result.seconds
    _log.info("built %s in %.1f s (%d bytes)", onnx_model.name, seconds, len(plan))
    extra: dict[str, object] = {"build_seconds": round(seconds, 3), "precision": result.precision}
    if preparation is not None:
        extra["preparation"] = preparation
    manifest = Manifest(
        backend=be.name,
        backend_version=be.version,
        target=target.to_dict(),
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
        profiles=tuple(result.profiles),
        tensors=tuple(result.tensors),
        plan_sha256=sha256_bytes(plan),
        plan_size=len(plan),
        trtkit_version=__version__,
        created=result.started.isoformat(timespec="seconds"),
        extra=extra,
    )
    return BuiltEngine(plan=plan, manifest=manifest)
