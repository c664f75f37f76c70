"""The facade: ``Engine.from_onnx(model)`` / ``Engine.load(path)`` and ``engine(inputs)``.

Built on :mod:`trtkit.cache` (build or reuse), :mod:`trtkit.runtime` (load and run) and :mod:`trtkit.tools.bench`;
those stay usable without it. ``Engine.from_onnx(..., calibration_data=...)`` quantizes to INT8/FP8 Q/DQ
(:mod:`trtkit.tools.quantize`) and builds in one step, caching the quantized model beside the engine.
Outputs come back in the caller's array family: NumPy in, NumPy out; PyTorch or CuPy in, the same family on the
same device out (run on the caller's current stream, no copy).
"""

from __future__ import annotations

import html
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias, get_args

from trtkit import runtime
from trtkit._version import __version__
from trtkit.backend import Backend, get_backend
from trtkit.builder import BuildConfig
from trtkit.builder.build import check_build_arguments
from trtkit.builder.config import IMPLICIT_CALIBRATION, QUANTIZED_PRECISIONS
from trtkit.builder.model import ModelSource, OnnxModel, load_onnx
from trtkit.builder.progress import ProgressCallback
from trtkit.cache import EngineCache, ModelStep, run_step_and_build, step_model_path
from trtkit.errors import ConfigError, EngineIncompatibleError, InputError
from trtkit.gpu import check_device_index, set_device
from trtkit.log import get_logger
from trtkit.manifest import BuiltEngine, Manifest, write_engine_file
from trtkit.profiles import ProfilesLike, normalize_profiles
from trtkit.runtime.context import Context
from trtkit.runtime.io import ADAPTERS, adapter_of
from trtkit.runtime.loading import LoadedEngine
from trtkit.runtime.memory.streams import StreamLike
from trtkit.runtime.results import Outputs
from trtkit.runtime.tensors import TensorSpec
from trtkit.tools.bench import BenchResult, benchmark
from trtkit.tools.layers import EngineLayers, engine_layers
from trtkit.tools.placement import layers_from_build_log, placement, qdq_fed_nodes
from trtkit.tools.quantize import (
    CalibrationData,
    CalibrationSet,
    Quantizer,
    QuantizeResult,
    QuantMethod,
    QuantPrecision,
    load_calibration,
    quantize,
    resolve_quantizer,
)
from trtkit.tools.torch_export import DynamicSpec, Exporter, TorchModule, cached_export, export_onnx

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["CachedBuild", "Engine", "QuantizeOptions", "build_cached", "load_engine", "quantization_step"]

_log = get_logger("engine")
OnIncompatible = Literal["rebuild", "warn", "error"]
Progress = bool | ProgressCallback | None
CalibrationSource: TypeAlias = "CalibrationSet | str | os.PathLike[str] | CalibrationData"
"""What ``calibration_data=`` takes: see :func:`trtkit.tools.quantize.load_calibration`."""


# ---- quantize, then build --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizeOptions:
    """How ``calibration_data=`` quantizes the model before the build (see :func:`trtkit.tools.quantize.quantize`).

    The quantizer and its version, the method and the exclusions are part of the engine cache key, with the
    digest of the calibration data.
    """

    method: QuantMethod | None = None
    """``minmax``, ``entropy`` or ``percentile``; None for the quantizer's default."""
    quantizer: Quantizer = "auto"
    """``auto`` (ModelOpt when installed, else ONNX Runtime), ``onnxruntime`` or ``modelopt``."""
    exclude_ops: tuple[str, ...] = ()
    """Op types left in float."""
    exclude_nodes: tuple[str, ...] = ()
    """Node names left in float."""
    check_accuracy: bool = True
    """Compare the Q/DQ model with the FP32 one on ONNX Runtime (on the calibration inputs) and record it."""

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in get_args(QuantMethod):
            raise ConfigError(f"quantize method {self.method!r} is not one of {', '.join(get_args(QuantMethod))}")
        if self.quantizer not in get_args(Quantizer):
            raise ConfigError(f"quantizer {self.quantizer!r} is not one of {', '.join(get_args(Quantizer))}")
        for name in ("exclude_ops", "exclude_nodes"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name} must be a list of names, got {type(value).__name__} {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not isinstance(self.check_accuracy, bool):
            raise ConfigError(f"check_accuracy must be True or False, got {self.check_accuracy!r}")

    @classmethod
    def of(cls, value: object) -> QuantizeOptions:
        """None (the defaults), a QuantizeOptions, or a mapping of its fields."""
        if value is None:
            return cls()
        if isinstance(value, QuantizeOptions):
            return value
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ConfigError(f"unknown quantize options {', '.join(map(str, unknown))}; known: "
                                  f"{', '.join(sorted(known))}")
            return cls(**dict(value))
        raise ConfigError(f"quantize_options must be a trtkit.engine.QuantizeOptions, a mapping or None, got "
                          f"{type(value).__name__}")


def _refuse_calibration_cache(source: object) -> None:
    """A TensorRT INT8 calibration cache (trtexec ``--calib``) given as calibration data: name the Q/DQ path."""
    if not isinstance(source, str | os.PathLike) or not Path(source).is_file():
        return
    try:
        with open(source, "rb") as f:
            head = f.read(64)
    except OSError:
        return  # load_calibration reports an unreadable file
    if head.startswith(b"TRT-") and b"Calibrat" in head.split(b"\n", 1)[0]:
        first = head.split(b"\n", 1)[0].decode("ascii", "replace")
        raise ConfigError(f"{str(source)!r} is a TensorRT INT8 calibration cache ({first}), not calibration data: "
                          f"{IMPLICIT_CALIBRATION}. Calibration data is an .npz file, a folder of NAME.npy files or "
                          "a data-loader script")


def _placement_record(messages: Sequence[str]) -> dict[str, object]:
    layers = layers_from_build_log(messages)
    # TensorRT-RTX without detailed verbosity shows one opaque Myelin layer: nothing to say about INT8 there
    if layers is None or all((layer.type or "myelin").lower() == "myelin" for layer in layers):
        return {}
    return {"placement": placement(layers, "build log").to_dict()}


def quantization_step(model: OnnxModel, calibration_data: CalibrationSource, *, precision: QuantPrecision,
                      options: QuantizeOptions | Mapping[str, object] | None = None, shapes: ProfilesLike = None,
                      on_quantized: Callable[[QuantizeResult], None] | None = None) -> ModelStep:
    """The cache step that quantizes ``model`` (:func:`trtkit.tools.quantize.quantize`) before the build.

    Reads and checks the calibration data against the model and ``shapes`` now, before any work, and
    resolves the quantizer: both enter the cache key. On a cache miss the step quantizes, calls
    ``on_quantized`` with the result, and records ``QuantizeResult.manifest_record()``, the compute nodes fed
    by Q/DQ, and (when the build log shows it) where INT8 took hold, as ``manifest.extra["quantization"]``.

    Raises:
        ConfigError: a TensorRT calibration cache given as data, or bad options.
        InputError: data that does not fit the model (one line naming the input).
        DependencyError, UnsupportedFeatureError: the quantizer asked for is missing or cannot do ``precision``.
    """
    opts = QuantizeOptions.of(options)
    _refuse_calibration_cache(calibration_data)
    data = load_calibration(calibration_data, model, profiles=shapes)
    tool, version = resolve_quantizer(opts.quantizer, precision)
    chosen: Quantizer = "modelopt" if tool == "modelopt" else "onnxruntime"
    identity: dict[str, object] = {
        "precision": precision, "quantizer": tool, "quantizer_version": version, "method": opts.method,
        "exclude_ops": sorted(opts.exclude_ops), "exclude_nodes": sorted(opts.exclude_nodes),
        "data_digest": data.digest, "trtkit": __version__,  # trtkit decides where the Q/DQ nodes go
    }

    def run(source: OnnxModel) -> tuple[OnnxModel, Mapping[str, object]]:
        result = quantize(source, data, precision=precision, method=opts.method, quantizer=chosen,
                          exclude_ops=opts.exclude_ops, exclude_nodes=opts.exclude_nodes,
                          check_accuracy=opts.check_accuracy, profiles=shapes)
        if on_quantized is not None:
            on_quantized(result)
        fed, left = qdq_fed_nodes(result.model.proto)
        record = {**result.manifest_record(), "qdq_compute_nodes": {"quantized": fed, "float": left}}
        return result.model, record

    return ModelStep("quantization", identity, run, suffix="qdq", describe_build=_placement_record)


def _step_for(model: OnnxModel, config: BuildConfig, shapes: ProfilesLike, calibration_data: object,
              options: object, on_quantized: Callable[[QuantizeResult], None] | None = None) -> ModelStep | None:
    if calibration_data is None:
        if options is not None:
            raise ConfigError("quantize_options= applies with calibration_data=; pass the calibration data too")
        return None
    if config.precision not in QUANTIZED_PRECISIONS:
        raise ConfigError(f"calibration_data= quantizes the model to INT8 or FP8 before the build, but "
                          f"config.precision is {config.precision!r}; use config=BuildConfig(precision=\"int8\") "
                          "(or \"fp8\")")
    precision: QuantPrecision = "fp8" if config.precision == "fp8" else "int8"
    return quantization_step(model, calibration_data, precision=precision,  # type: ignore[arg-type]
                             options=options, shapes=shapes, on_quantized=on_quantized)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CachedBuild:
    """What :func:`build_cached` returns."""

    engine: BuiltEngine
    hit: bool
    """True when the cache had the engine: nothing was quantized or built."""
    model_path: Path | None = None
    """The quantized model kept beside the cached engine (``calibration_data=``), when the cache holds it."""


def build_cached(
    model: ModelSource | OnnxModel,
    *,
    shapes: ProfilesLike = None,
    config: BuildConfig | None = None,
    cache: EngineCache | str | os.PathLike[str] | bool = True,
    backend: str | Backend | None = None,
    progress: Progress = None,
    calibration_data: CalibrationSource | None = None,
    quantize_options: QuantizeOptions | Mapping[str, object] | None = None,
    on_quantized: Callable[[QuantizeResult], None] | None = None,
) -> CachedBuild:
    """Build an engine, or reuse the cached one, without loading it (no GPU needed).

    What :meth:`Engine.from_onnx` does before loading, and what ``trtkit build --calib`` runs. With
    ``calibration_data`` (and ``config.precision`` int8 or fp8) the model is quantized first
    (:func:`quantization_step`); a cache hit neither quantizes nor builds.
    """
    config = check_build_arguments(config, progress)
    be = get_backend(backend)
    onnx_model = load_onnx(model)
    step = _step_for(onnx_model, config, shapes, calibration_data, quantize_options, on_quantized)
    if cache is False:
        return CachedBuild(run_step_and_build(onnx_model, step, shapes=shapes, config=config, backend=be,
                                              progress=progress)[0], False)
    store = cache if isinstance(cache, EngineCache) else EngineCache(None if cache is True else cache)
    built, hit = store.get_or_build(onnx_model, shapes=shapes, config=config, backend=be, progress=progress,
                                    step=step)
    kept = None
    if step is not None:
        key = store.key(onnx_model, normalize_profiles(shapes), config, be, step=step)
        path = step_model_path(store.path_for(key), step.suffix)
        kept = path if path.is_file() else None
    return CachedBuild(built, hit, kept)


class Engine:
    """A TensorRT engine ready to run on one GPU.

    Create with :meth:`from_onnx` (build or reuse a cached engine) or :meth:`load`; call it with inputs.
    """

    def __init__(self, loaded: LoadedEngine) -> None:
        self._loaded = loaded

    # ---- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_onnx(
        cls,
        model: ModelSource | OnnxModel,
        *,
        shapes: ProfilesLike = None,
        config: BuildConfig | None = None,
        cache: EngineCache | str | os.PathLike[str] | bool = True,
        backend: str | Backend | None = None,
        device: int = 0,
        on_incompatible: OnIncompatible = "rebuild",
        progress: Progress = None,
        allow_host_code: bool = False,
        calibration_data: CalibrationSource | None = None,
        quantize_options: QuantizeOptions | Mapping[str, object] | None = None,
    ) -> Engine:
        """Build an engine from an ONNX model, or reuse the cached one, and load it on ``device``.

        ``allow_host_code``: let a version-compatible engine (``config.version_compatible``) run the lean
        runtime it carries; see :func:`trtkit.runtime.load_engine`.

        ``calibration_data`` (with ``config=BuildConfig(precision="int8")`` or ``"fp8"``): quantize the model to
        Q/DQ first (:func:`trtkit.tools.quantize.quantize`, options in ``quantize_options``), then build. The data
        is checked against the model before any work; the quantized model is cached beside the engine, and the
        cache key includes the data's digest, the quantizer and its version, the method and the exclusions. The
        manifest records them as ``manifest.extra["quantization"]``. A model that already carries Q/DQ builds
        with ``precision="int8"`` and no data.

        ``cache``: True for the default :class:`~trtkit.cache.EngineCache`, a directory or an EngineCache,
        False to always build. A cached engine that no longer fits this GPU or TensorRT is rebuilt
        (``on_incompatible="rebuild"``), rebuilt with a warning (``"warn"``) or reported (``"error"``).
        """
        if on_incompatible not in ("rebuild", "warn", "error"):
            raise ConfigError(f"on_incompatible must be 'rebuild', 'warn' or 'error', got {on_incompatible!r}")
        config = check_build_arguments(config, progress)
        check_device_index(device)
        be = get_backend(backend)
        if not be.features.compute_capability_targets:
            set_device(device)  # full TensorRT builds for the current GPU: make it the one the engine runs on
        onnx_model = load_onnx(model)
        step = _step_for(onnx_model, config, shapes, calibration_data, quantize_options)
        if cache is False:
            built = run_step_and_build(onnx_model, step, shapes=shapes, config=config, backend=be,
                                       progress=progress)[0]
            return cls(runtime.load_engine(built, device=device, backend=be, allow_host_code=allow_host_code))
        store = cache if isinstance(cache, EngineCache) else EngineCache(None if cache is True else cache)
        built, hit = store.get_or_build(onnx_model, shapes=shapes, config=config, backend=be, progress=progress,
                                        step=step)
        try:
            return cls(runtime.load_engine(built, device=device, backend=be, allow_host_code=allow_host_code))
        except EngineIncompatibleError as exc:
            if not hit or on_incompatible == "error":
                raise
            msg = f"cached engine does not fit here ({exc.message}); rebuilding"
            if on_incompatible == "warn":
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
            else:
                _log.info(msg)
            key = store.key(onnx_model, normalize_profiles(shapes), config, be, step=step)
            with store.lock(key):
                store.remove(key)
            built, _ = store.get_or_build(onnx_model, shapes=shapes, config=config, backend=be, progress=progress,
                                          step=step)
            return cls(runtime.load_engine(built, device=device, backend=be, allow_host_code=allow_host_code))

    @classmethod
    def from_torch(
        cls,
        module: TorchModule,
        example_inputs: object,
        *,
        dynamic_shapes: DynamicSpec | None = None,
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
        shapes: ProfilesLike = None,
        config: BuildConfig | None = None,
        cache: EngineCache | str | os.PathLike[str] | bool = True,
        backend: str | Backend | None = None,
        device: int = 0,
        opset: int | None = None,
        exporter: Exporter = "auto",
        on_incompatible: OnIncompatible = "rebuild",
        progress: Progress = None,
    ) -> Engine:
        """Export a PyTorch module to ONNX (``torch.onnx.export``), then build or reuse its engine.

        ``example_inputs``: a tensor or a tuple of tensors for ``module(*example_inputs)``. Dynamic dims:
        ``dynamic_shapes={"x": {0: "batch"}}`` (or ``{"x": [0]}``), else every dim that varies in ``shapes``
        (the build profiles, as for :meth:`from_onnx`). The exported model is cached with the engine (keyed by
        the module's weights and code, the inputs' shapes and dtypes and the export options), so a second call
        with the same module exports nothing. Needs PyTorch (``pip install torch``); see
        :mod:`trtkit.tools.torch_export` for the exporters used.
        """
        if cache is False:
            with tempfile.TemporaryDirectory(prefix="trtkit-torch-") as tmp:
                path = export_onnx(module, example_inputs, Path(tmp) / "model.onnx", dynamic_shapes=dynamic_shapes,
                                   input_names=input_names, output_names=output_names, shapes=shapes, opset=opset,
                                   exporter=exporter)
                return cls.from_onnx(path, shapes=shapes, config=config, cache=False, backend=backend,
                                     device=device, on_incompatible=on_incompatible, progress=progress)
        store = cache if isinstance(cache, EngineCache) else EngineCache(None if cache is True else cache)
        path, _ = cached_export(module, example_inputs, store.directory, dynamic_shapes=dynamic_shapes,
                                input_names=input_names, output_names=output_names, shapes=shapes, opset=opset,
                                exporter=exporter)
        return cls.from_onnx(path, shapes=shapes, config=config, cache=store, backend=backend, device=device,
                             on_incompatible=on_incompatible, progress=progress)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | bytes | BuiltEngine, *, device: int = 0,
             backend: str | Backend | None = None, plugins: Sequence[str | os.PathLike[str]] | None = None,
             allow_host_code: bool = False, lean_runtime: str | os.PathLike[str] | None = None) -> Engine:
        """Load an engine file (with or without trtkit's manifest), plan bytes or a BuiltEngine.

        ``plugins``, ``allow_host_code`` and ``lean_runtime`` are those of :func:`trtkit.runtime.load_engine`.
        """
        return cls(runtime.load_engine(path, device=device, backend=backend, plugins=plugins,
                                       allow_host_code=allow_host_code, lean_runtime=lean_runtime))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan (and the manifest, when there is one) to ``path``, as one unit: a crash leaves the old
        pair or the new one. Without a manifest, a stale manifest beside ``path`` is removed first."""
        return write_engine_file(Path(path), self._loaded.plan, self._loaded.manifest)

    # ---- description ---------------------------------------------------------------------------------------

    @property
    def runtime(self) -> LoadedEngine:
        """The lower-level :class:`~trtkit.runtime.LoadedEngine`."""
        return self._loaded

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._loaded.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._loaded.outputs

    @property
    def manifest(self) -> Manifest | None:
        return self._loaded.manifest

    @property
    def device(self) -> int:
        return self._loaded.device_index

    def layers(self, *, shapes: Mapping[str, Sequence[int]] | None = None) -> EngineLayers:
        """The engine's layers after fusion (names, types, precisions, tactics) from TensorRT's engine inspector.

        Types, precisions and tactics need an engine built with ``BuildConfig(profiling_verbosity="detailed")``;
        otherwise only names come back (``result.verbosity`` says which). Dynamic dims are resolved at
        ``shapes`` (default: the opt shapes of profile 0). See :func:`trtkit.tools.layers.engine_layers`.
        """
        return engine_layers(self._loaded, shapes=shapes)

    def _rows(self) -> list[tuple[str, str, str, str]]:
        rows: list[tuple[str, str, str, str]] = []
        for t in (*self.inputs, *self.outputs):
            ranges = "; ".join(f"p{i}: {r}" for i, r in enumerate(t.profiles))
            rows.append((t.mode, t.name, f"{t.dtype.name}[{', '.join(str(d) for d in t.shape)}]", ranges))
        return rows

    def __repr__(self) -> str:
        le = self._loaded
        lines = [f"Engine({le.source!r}, {le.backend.label}, cuda:{le.device_index} {le.device_info.name})"]
        lines += [f"  {m:<6} {n}: {s}" + (f"  ({r})" if r else "") for m, n, s, r in self._rows()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        le = self._loaded
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self._rows()
        )
        return (f"<b>trtkit Engine</b> {html.escape(le.source)} &mdash; {html.escape(le.backend.label)}, "
                f"cuda:{le.device_index} {html.escape(le.device_info.name)}"
                "<table><tr><th>mode</th><th>name</th><th>dtype[shape]</th><th>profiles</th></tr>"
                f"{body}</table>")

    # ---- running -------------------------------------------------------------------------------------------

    def __call__(self, inputs: object = None, /, **named: object) -> Outputs:
        """Run once. ``inputs``: a dict by name, a sequence in input order, or one array for a one-input model
        (or pass inputs as keywords). Returns outputs by name in the caller's array family."""
        if inputs is None:
            inputs = named
        elif named:
            raise InputError("pass inputs either positionally or as keywords, not both")
        return self.infer(inputs)

    def infer(self, inputs: object, *, outputs: Mapping[str, object] | None = None,
              stream: StreamLike | None = None) -> Outputs:
        """Like calling the engine; also takes output buffers and a stream (see :meth:`Context.infer`)."""
        first: object
        if type(inputs) is dict or isinstance(inputs, Mapping):
            first = next(iter(inputs.values()), None)
        else:
            first = inputs[0] if isinstance(inputs, list | tuple) and inputs else inputs
        family = ADAPTERS.get(type(first)) or adapter_of(first)
        return self._loaded.infer(inputs, outputs=outputs, stream=stream, family=family)

    def create_context(self, *, stream: StreamLike | None = None, cuda_graph: bool = False) -> Context:
        """A dedicated :class:`~trtkit.runtime.Context` (own stream) for concurrent or async calls."""
        return self._loaded.create_context(stream=stream, cuda_graph=cuda_graph)

    def empty_pinned(self, name: str, shape: Sequence[int] | None = None) -> NDArray[np.generic]:
        """A pinned NumPy array for tensor ``name`` (no staging copy when used as input or output)."""
        return self._loaded.empty_pinned(name, shape=shape)

    def benchmark(self, **kwargs: object) -> BenchResult | list[BenchResult]:
        """Measure as trtexec does; see :func:`trtkit.tools.bench.benchmark`."""
        return benchmark(self._loaded, **kwargs)  # type: ignore[arg-type]

    def memory_stats(self) -> dict[str, object]:
        return self._loaded.memory_stats()

    def release_memory(self) -> None:
        self._loaded.release_memory()

    def close(self) -> None:
        self._loaded.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_engine(path: str | os.PathLike[str] | bytes | BuiltEngine, *, device: int = 0,
                backend: str | Backend | None = None, plugins: Sequence[str | os.PathLike[str]] | None = None,
                allow_host_code: bool = False, lean_runtime: str | os.PathLike[str] | None = None) -> Engine:
    """Shortcut for :meth:`Engine.load`."""
    return Engine.load(path, device=device, backend=backend, plugins=plugins, allow_host_code=allow_host_code,
                       lean_runtime=lean_runtime)
