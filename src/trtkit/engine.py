"""The facade: ``Engine.from_onnx(model)`` / ``Engine.load(path)`` and ``engine(inputs)``.

Built on :mod:`trtkit.cache` (build or reuse), :mod:`trtkit.runtime` (load and run) and :mod:`trtkit.tools.bench`;
those stay usable without it. Outputs come back in the caller's array family: NumPy in, NumPy out; PyTorch or
CuPy in, the same family on the same device out (run on the caller's current stream, no copy).
"""

from __future__ import annotations

import html
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from trtkit import runtime
from trtkit.backend import Backend, get_backend
from trtkit.builder import BuildConfig, build_engine
from trtkit.builder.build import check_build_arguments
from trtkit.builder.model import ModelSource, OnnxModel, load_onnx
from trtkit.builder.progress import ProgressCallback
from trtkit.cache import EngineCache
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
from trtkit.tools.torch_export import DynamicSpec, Exporter, TorchModule, cached_export, export_onnx

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["Engine", "load_engine"]

_log = get_logger("engine")
OnIncompatible = Literal["rebuild", "warn", "error"]
Progress = bool | ProgressCallback | None


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
    ) -> Engine:
        """Build an engine from an ONNX model, or reuse the cached one, and load it on ``device``.

        ``allow_host_code``: let a version-compatible engine (``config.version_compatible``) run the lean
        runtime it carries; see :func:`trtkit.runtime.load_engine`.

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
        if cache is False:
            built = build_engine(model, shapes=shapes, config=config, backend=be, progress=progress)
            return cls(runtime.load_engine(built, device=device, backend=be, allow_host_code=allow_host_code))
        store = cache if isinstance(cache, EngineCache) else EngineCache(None if cache is True else cache)
        onnx_model = load_onnx(model)
        built, hit = store.get_or_build(onnx_model, shapes=shapes, config=config, backend=be, progress=progress)
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
            key = store.key(onnx_model, normalize_profiles(shapes), config or BuildConfig(), be)
            with store.lock(key):
                store.remove(key)
            built, _ = store.get_or_build(onnx_model, shapes=shapes, config=config, backend=be, progress=progress)
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
