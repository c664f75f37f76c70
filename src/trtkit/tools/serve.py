"""``trtkit.serve(engine)``: an engine behind Triton Inference Server's HTTP and gRPC endpoints, via PyTriton.

PyTriton (``pip install nvidia-pytriton``) runs a real ``tritonserver`` whose Python-backend proxy hands each
batch to a Python callable in this process. trtkit binds ``context.infer(inputs)`` as that callable, one
execution context per model instance, with Triton's dynamic batching when every tensor has a leading batch
dim (dynamic, min 1 in every profile). Readiness (``/v2/health/ready``), health, statistics and Prometheus
metrics come from Triton. Every endpoint binds to ``127.0.0.1`` unless another address is asked for.

:func:`serve_config` (what Triton is told about the model) needs no GPU; :func:`start_serving` serves any
callables for a :class:`ServeConfig` (the tests serve NumPy stand-ins on machines without a GPU).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, Final

import numpy as np

from trtkit.deps import require
from trtkit.errors import ConfigError, DependencyError, UnsupportedFeatureError
from trtkit.log import get_logger
from trtkit.runtime.loading import LoadedEngine, load_engine
from trtkit.runtime.tensors import TensorSpec
from trtkit.tools.triton_server import INSTALL_HINT, LOOPBACK, free_port, stub_environment

__all__ = ["ServeConfig", "ServeTensor", "Serving", "serve", "serve_config", "start_serving"]

_log = get_logger("serve")
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
InferFunction = Callable[..., Any]


@dataclass(frozen=True)
class ServeTensor:
    """One model input or output as Triton sees it: ``shape`` excludes the batch dim when batching; -1 is
    a variable-size dim."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ServeConfig:
    """What trtkit tells Triton about a served engine."""

    name: str
    inputs: tuple[ServeTensor, ...]
    outputs: tuple[ServeTensor, ...]
    max_batch_size: int
    """0: Triton does not batch (shapes are full shapes)."""
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    instances: int = 1
    notes: tuple[str, ...] = ()


def _blocker(tensors: Sequence[TensorSpec]) -> str | None:
    inputs = [t for t in tensors if t.is_input]
    if not inputs:
        return "the engine has no inputs"
    for t in tensors:
        if t.is_shape_tensor:
            return f"{t.mode} {t.name!r} is a shape tensor"
        if not t.shape or t.shape[0] != -1:
            return f"{t.mode} {t.name!r} has no dynamic leading dim (shape {list(t.shape)})"
    for t in inputs:
        for index, rng in enumerate(t.profiles):
            if rng.min[0] != 1:
                return f"profile {index} gives input {t.name!r} a min batch of {rng.min[0]} (Triton may send 1)"
    return None


def _tensor(t: TensorSpec, batching: bool) -> ServeTensor:
    if t.dtype.numpy_name is None:
        raise UnsupportedFeatureError(
            f"{t.mode} {t.name!r} has dtype {t.dtype.name}, which NumPy (and so PyTriton) cannot carry; keep the "
            "engine's I/O in a NumPy type (cast inside the model)"
        )
    return ServeTensor(t.name, t.dtype.to_numpy(), tuple(t.shape[1:] if batching else t.shape))


def serve_config(tensors: Sequence[TensorSpec], *, name: str, max_batch_size: int | None = None,
                 instances: int = 1, max_queue_delay_us: int = 0) -> ServeConfig:
    """The model Triton serves for an engine with I/O ``tensors`` (no GPU needed).

    Args:
        tensors: the engine's tensors (``LoadedEngine.tensors``).
        name: the model name clients call (letters, digits, ``_``, ``-``, ``.``).
        max_batch_size: None: the largest batch every profile accepts when the engine batches, else 0;
            0 turns batching off; a positive value caps it.
        instances: model instances, each with its own execution context.
        max_queue_delay_us: how long Triton's dynamic batcher may wait to fill a batch.

    Raises:
        ConfigError: a bad name or option, or batching asked of an engine that cannot batch.
        UnsupportedFeatureError: a tensor dtype NumPy cannot carry.
    """
    if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS or name in (".", ".."):
        raise ConfigError(f"model name {name!r} is not valid: use letters, digits, '_', '-' and '.' "
                          "(it is part of the URL clients call, /v2/models/NAME/infer)")
    for label, value, lo in (("instances", instances, 1), ("max_queue_delay_us", max_queue_delay_us, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ConfigError(f"{label} must be an integer >= {lo}, got {value!r}")
    blocker = _blocker(tensors)
    inputs = [t for t in tensors if t.is_input]
    limit = 0 if blocker else min((r.max[0] for t in inputs for r in t.profiles), default=0)
    notes: list[str] = []
    if max_batch_size is None:
        mbs = limit
        if blocker:
            notes.append(f"batching is off: {blocker}")
    elif isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 0:
        raise ConfigError(f"max_batch_size must be an integer >= 0, got {max_batch_size!r}")
    elif max_batch_size and blocker:
        raise ConfigError(f"max_batch_size={max_batch_size}, but the engine cannot batch: {blocker}; use 0")
    elif max_batch_size > limit:
        raise ConfigError(f"max_batch_size={max_batch_size} exceeds the largest batch every optimization "
                          f"profile accepts ({limit}); use at most {limit}")
    else:
        mbs = max_batch_size
    preferred = sorted({r.opt[0] for t in inputs for r in t.profiles if 1 < r.opt[0] <= mbs}) if mbs else []
    return ServeConfig(
        name=name,
        inputs=tuple(_tensor(t, mbs > 0) for t in inputs),
        outputs=tuple(_tensor(t, mbs > 0) for t in tensors if not t.is_input),
        max_batch_size=mbs,
        preferred_batch_sizes=tuple(preferred),
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
        notes=tuple(notes),
    )


def _pytriton() -> tuple[ModuleType, ModuleType, ModuleType]:
    require("pytriton", purpose="serving with Triton", install=INSTALL_HINT)
    pytriton_version = importlib.metadata.version("nvidia-pytriton")
    if int(np.__version__.split(".")[0]) >= 2 and _release(pytriton_version) < (0, 8):
        raise DependencyError(
            f"nvidia-pytriton {pytriton_version} needs numpy<2 (its Triton Python-backend stub passes empty tensors "
            f"with NumPy 2; NumPy {np.__version__} is installed). Install it with: pip install 'numpy<2'"
        )
    import pytriton.decorators as decorators  # type: ignore[import-untyped]
    import pytriton.model_config as model_config  # type: ignore[import-untyped]
    import pytriton.triton as triton  # type: ignore[import-untyped]

    return triton, model_config, decorators


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


class Serving:
    """A running Triton server with one model bound; stop it with :meth:`stop` (or use ``with``)."""

    def __init__(self, triton: Any, config: ServeConfig, address: str, ports: tuple[int, int, int],
                 on_stop: Callable[[], None] | None = None) -> None:
        self.triton = triton
        self.config = config
        self.address = address
        self.http_port, self.grpc_port, self.metrics_port = ports
        self._on_stop = on_stop
        self._stopped = False

    @property
    def http_url(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.address}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{self.metrics_port}/metrics"

    def wait(self) -> None:
        """Serve until SIGINT or SIGTERM (or the server dies), then stop. Call from the main thread."""
        try:
            with _sigterm_interrupts():
                self.triton.serve()  # returns on KeyboardInterrupt or when Triton dies, after stopping
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop Triton (in-flight requests finish first) and release the engine's contexts."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.triton.stop()
        finally:
            if self._on_stop is not None:
                self._on_stop()

    def __enter__(self) -> Serving:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_serving(config: ServeConfig, infer_functions: Sequence[InferFunction], *, address: str = LOOPBACK,
                  http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002,
                  on_stop: Callable[[], None] | None = None) -> Serving:
    """Start Triton with ``infer_functions`` (one per instance) bound as model ``config.name``; returns when
    the model is ready.

    Each function takes the inputs as NumPy arrays by keyword (with the batch dim when batching) and returns
    a mapping of output names to arrays. Ports 0 pick free ones.

    Raises:
        DependencyError: PyTriton is not installed.
        ConfigError: no function, or a function count that is not ``config.instances``.
    """
    if not infer_functions or len(infer_functions) != config.instances:
        raise ConfigError(f"{config.instances} instance(s) need as many inference functions, got "
                          f"{len(infer_functions)}")
    triton_mod, mc, decorators = _pytriton()

    ports = tuple(p or free_port(address if address != "0.0.0.0" else LOOPBACK)
                  for p in (http_port, grpc_port, metrics_port))
    wrapped = [_wrap(f, config, decorators) for f in infer_functions]
    # Statistics stay readable (batch sizes formed); repository control, shared memory, trace and logging
    # need the token PyTriton generates.
    security = triton_mod.TritonSecurityConfig(
        restricted_endpoints=["model-repository", "shared-memory", "trace", "logging"])
    tconfig = triton_mod.TritonConfig(
        http_address=address, http_port=ports[0], grpc_address=address, grpc_port=ports[1],
        metrics_address=address, metrics_port=ports[2], exit_timeout_secs=10, allow_sagemaker=False,
        allow_vertex_ai=False)
    triton = triton_mod.Triton(config=tconfig, security_config=security)
    batcher = mc.DynamicBatcher(max_queue_delay_microseconds=config.max_queue_delay_us,
                                preferred_batch_size=list(config.preferred_batch_sizes) or None)
    model_config = mc.ModelConfig(batching=config.max_batch_size > 0, max_batch_size=config.max_batch_size,
                                  batcher=batcher)
    try:
        triton.bind(
            model_name=config.name,
            infer_func=wrapped if len(wrapped) > 1 else wrapped[0],
            inputs=[mc.Tensor(name=t.name, dtype=t.dtype, shape=t.shape) for t in config.inputs],
            outputs=[mc.Tensor(name=t.name, dtype=t.dtype, shape=t.shape) for t in config.outputs],
            config=model_config,
            strict=True,
        )
        saved = os.environ.get("LD_LIBRARY_PATH")
        os.environ["LD_LIBRARY_PATH"] = stub_environment(dict(os.environ)).get("LD_LIBRARY_PATH", "")
        try:
            triton.run()  # PyTriton starts tritonserver with a copy of this environment
        finally:
            if saved is None:
                os.environ.pop("LD_LIBRARY_PATH", None)
            else:
                os.environ["LD_LIBRARY_PATH"] = saved
    except BaseException:
        with contextlib.suppress(Exception):
            triton.stop()
        if on_stop is not None:
            on_stop()
        raise
    return Serving(triton, config, address, (ports[0], ports[1], ports[2]), on_stop)


def _wrap(function: InferFunction, config: ServeConfig, decorators: ModuleType) -> InferFunction:
    names = [t.name for t in config.outputs]

    def run(inputs: Mapping[str, Any]) -> dict[str, Any]:
        out = function(**inputs)
        return {n: np.ascontiguousarray(out[n]) for n in names}

    if config.max_batch_size > 0:
        @decorators.batch  # type: ignore[untyped-decorator]
        def batched(**inputs: Any) -> dict[str, Any]:
            return run(inputs)

        return batched  # type: ignore[no-any-return]

    def unbatched(requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [run(dict(r)) for r in requests]

    return unbatched


def serve(engine: str | os.PathLike[str] | LoadedEngine | Any, *, name: str | None = None,
          address: str = LOOPBACK, http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002,
          max_batch_size: int | None = None, instances: int = 1, max_queue_delay_us: int = 0, device: int = 0,
          block: bool = True, ready: Callable[[Serving], None] | None = None) -> Serving:
    """Serve ``engine`` with Triton Inference Server (PyTriton) until SIGINT or SIGTERM.

    Args:
        engine: an engine file, a :class:`~trtkit.runtime.LoadedEngine` or a :class:`trtkit.Engine`. For an
            ONNX model pass ``trtkit.Engine.from_onnx(...)`` (the CLI does).
        name: the model name (default: the engine file's stem, else ``model``).
        address: where every endpoint binds; loopback by default. ``0.0.0.0`` exposes it to the network.
        http_port: the HTTP port; 0 picks a free one.
        grpc_port: the gRPC port; 0 picks a free one.
        metrics_port: the Prometheus metrics port; 0 picks a free one.
        max_batch_size: see :func:`serve_config`.
        instances: model instances, each with its own execution context.
        max_queue_delay_us: how long Triton's dynamic batcher may wait to fill a batch.
        device: the GPU, when ``engine`` is a path.
        block: serve until a signal and return the stopped :class:`Serving`; False returns it running.
        ready: called with the running :class:`Serving` before blocking (e.g. to print the URLs).

    Raises:
        DependencyError: PyTriton is not installed (``pip install nvidia-pytriton``).
        ConfigError, UnsupportedFeatureError: see :func:`serve_config`.
    """
    facade = getattr(engine, "runtime", None)  # a trtkit.Engine
    owned = not isinstance(engine, LoadedEngine) and not isinstance(facade, LoadedEngine)
    if isinstance(engine, LoadedEngine):
        loaded = engine
    elif isinstance(facade, LoadedEngine):
        loaded = facade
    elif isinstance(engine, str | os.PathLike):
        _pytriton()  # say what to install before loading anything
        loaded = load_engine(engine, device=device)
    else:
        raise ConfigError(f"engine must be an engine file path, a LoadedEngine or a trtkit.Engine, got "
                          f"{type(engine).__name__}")
    if name is None:
        name = Path(engine).stem if isinstance(engine, str | os.PathLike) else "model"
    contexts: list[Any] = []
    try:
        config = serve_config(loaded.tensors, name=name, max_batch_size=max_batch_size, instances=instances,
                              max_queue_delay_us=max_queue_delay_us)
        for note in config.notes:
            _log.info("%s", note)
        contexts = [loaded.create_context() for _ in range(instances)]
    except BaseException:
        if owned:
            loaded.close()
        raise

    def close() -> None:
        for ctx in contexts:
            with contextlib.suppress(Exception):
                ctx.close()
        if owned:
            loaded.close()

    functions = [_context_function(loaded, ctx) for ctx in contexts]
    with _sigterm_interrupts(block):  # a SIGTERM while starting stops what has started, too
        serving = start_serving(config, functions, address=address, http_port=http_port, grpc_port=grpc_port,
                                metrics_port=metrics_port, on_stop=close)
        try:
            if ready is not None:
                ready(serving)
            if block:
                serving.wait()
        except BaseException:
            serving.stop()
            raise
    return serving


@contextlib.contextmanager
def _sigterm_interrupts(enabled: bool = True) -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (as SIGINT does) in the main thread."""
    def _term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = None
    if enabled and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _term)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _context_function(loaded: LoadedEngine, ctx: Any) -> InferFunction:
    def infer(**inputs: Any) -> Any:
        loaded.ensure_current()  # PyTriton calls from its own threads
        return ctx.infer(inputs)

    return infer
