"""PyTorch module -> ONNX file, cached: what :meth:`trtkit.Engine.from_torch` builds from.

The export uses ``torch.onnx.export``: the torch.export-based exporter (``dynamo=True``, PyTorch 2.6+, needs
``onnxscript``) when it can, else the TorchScript exporter (``dynamo=False``, with ``dynamic_axes``); with
``exporter="auto"`` a failed dynamo export falls back to TorchScript and logs why. Exported files are kept under
the engine cache directory, keyed by the module's weights and code, the example inputs' shapes and dtypes and
the export options, so the same module exports once (and then its engine comes from the engine cache too).
PyTorch is imported only here, on first use.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Literal, Protocol, TypeAlias

from filelock import FileLock

from trtkit import deps
from trtkit.errors import ConfigError, DependencyError, ModelError, ShapeError
from trtkit.log import get_logger
from trtkit.profiles import ProfilesLike, normalize_profiles

__all__ = ["DynamicSpec", "Exporter", "TorchModule", "cached_export", "dynamic_axes_from_shapes", "export_key",
           "export_onnx"]

_log = get_logger("torch_export")

Exporter = Literal["auto", "dynamo", "torchscript"]
DynamicSpec: TypeAlias = Mapping[str, Mapping[int, object] | Sequence[int] | None]
"""``{input_name: {axis: dim_name} | [axis, ...]}``; a ``torch.export.Dim`` may stand for a dim name."""


class TorchModule(Protocol):
    """The part of ``torch.nn.Module`` the export uses."""

    @property
    def training(self) -> bool: ...
    @property
    def forward(self) -> Callable[..., object]: ...
    def eval(self) -> object: ...
    def train(self, mode: bool = ...) -> object: ...
    def state_dict(self) -> Mapping[str, object]: ...
    def modules(self) -> Iterable[object]: ...

_SUBDIR = "torch"


def _torch() -> ModuleType:
    return deps.require("torch", purpose="Engine.from_torch", install="pip install torch")


def _as_tuple(example_inputs: object) -> tuple[object, ...]:
    return tuple(example_inputs) if isinstance(example_inputs, list | tuple) else (example_inputs,)


def _input_names(module: TorchModule, n: int, given: Sequence[str] | None) -> list[str]:
    if given is not None:
        names = [str(x) for x in given]
        if len(names) != n:
            raise ShapeError(f"input_names has {len(names)} names for {n} example inputs")
        return names
    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return params[:n] if len(params) >= n else [f"input_{i}" for i in range(n)]


def _label(value: object, name: str, axis: int) -> str:
    if isinstance(value, str):
        return value
    label = getattr(value, "__name__", None)  # torch.export.Dim
    return str(label) if label else f"{name}_dim{axis}"


def _normalize_dynamic(spec: DynamicSpec | None, names: Sequence[str]) -> dict[str, dict[int, str]]:
    """``{input: {axis: label}}`` from the accepted forms, checked against the input names."""
    out: dict[str, dict[int, str]] = {}
    for name, axes in (spec or {}).items():
        if name not in names:
            raise ShapeError(f"dynamic_shapes names input {name!r}; the inputs are {', '.join(names)}")
        if axes is None:
            continue
        if isinstance(axes, Mapping):
            out[name] = {int(a): _label(v, name, int(a)) for a, v in axes.items()}
        else:
            out[name] = {int(a): f"{name}_dim{int(a)}" for a in axes}
    return out


def dynamic_axes_from_shapes(shapes: ProfilesLike, names: Sequence[str]) -> dict[str, dict[int, str]]:
    """Dynamic axes implied by trtkit build shapes: every dim whose min and max differ in some profile."""
    dyn: dict[str, dict[int, str]] = {}
    for profile in normalize_profiles(shapes):
        for name, rng in profile.ranges.items():
            if name not in names:
                raise ShapeError(f"shapes names input {name!r}; the exported model's inputs are {', '.join(names)}")
            for axis, (lo, hi) in enumerate(zip(rng.min, rng.max, strict=True)):
                if lo != hi:
                    dyn.setdefault(name, {})[axis] = f"{name}_dim{axis}"
    return dyn


def _identifier(label: str) -> str:
    ident = re.sub(r"\W", "_", label)
    return ident if ident and not ident[0].isdigit() else f"d_{ident}"


def _module_digest(module: TorchModule, torch: ModuleType) -> str:
    """Hash of the module's weights and buffers (names, dtypes, shapes, bytes) and of its classes' source."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        if not isinstance(t, torch.Tensor):
            h.update(f"{name}={t!r};".encode())
            continue
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        data = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    for tp in sorted({type(m) for m in module.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        h.update(f"{tp.__module__}.{tp.__qualname__}".encode())
        with contextlib.suppress(OSError, TypeError):  # classes defined in a REPL have no source
            h.update(inspect.getsource(tp).encode())
    return h.hexdigest()


def export_key(module: TorchModule, example_inputs: object, options: Mapping[str, object]) -> str:
    """The cache key of an export: weights, code, example input shapes and dtypes, export options, PyTorch."""
    torch = _torch()
    inputs = [(tuple(x.shape), str(x.dtype)) if isinstance(x, torch.Tensor) else repr(x)
              for x in _as_tuple(example_inputs)]
    material = {"module": _module_digest(module, torch), "inputs": inputs, "options": dict(options),
                "torch": torch.__version__}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _have_onnxscript() -> bool:
    return deps.available("onnxscript")


def _export_dynamo(torch: ModuleType, module: TorchModule, args: tuple[object, ...], path: Path, names: list[str],
                   output_names: Sequence[str] | None, dyn: dict[str, dict[int, str]], opset: int | None) -> None:
    dims: dict[str, object] = {}

    def dim(label: str) -> object:
        if label not in dims:
            dims[label] = torch.export.Dim(_identifier(label))
        return dims[label]

    dynamic_shapes = tuple({a: dim(lbl) for a, lbl in dyn[n].items()} if n in dyn else None for n in names)
    torch.onnx.export(module, args, str(path), dynamo=True, input_names=names,
                      output_names=list(output_names) if output_names else None, opset_version=opset,
                      dynamic_shapes=dynamic_shapes if dyn else None, external_data=True)


def _export_torchscript(torch: ModuleType, module: TorchModule, args: tuple[object, ...], path: Path, names: list[str],
                        output_names: Sequence[str] | None, dyn: dict[str, dict[int, str]],
                        opset: int | None) -> None:
    kwargs: dict[str, object] = {}
    if opset is not None:
        kwargs["opset_version"] = opset
    torch.onnx.export(module, args, str(path), dynamo=False, input_names=names,
                      output_names=list(output_names) if output_names else None,
                      dynamic_axes=dyn or None, do_constant_folding=True, **kwargs)


def export_onnx(module: TorchModule, example_inputs: object, path: str | os.PathLike[str], *,
                dynamic_shapes: DynamicSpec | None = None, input_names: Sequence[str] | None = None,
                output_names: Sequence[str] | None = None, shapes: ProfilesLike = None, opset: int | None = None,
                exporter: Exporter = "auto") -> Path:
    """Export ``module`` (run in eval mode, restored after) with ``example_inputs`` to the ONNX file ``path``.

    Dynamic dims: ``dynamic_shapes`` (``{input: {axis: name}}`` or ``{input: [axis, ...]}``), else every dim that
    varies in the trtkit build ``shapes``. Input names default to ``forward``'s parameter names.

    Raises:
        DependencyError: PyTorch is missing, or ``exporter="dynamo"`` without onnxscript.
        ModelError: the exporters failed (the message carries each exporter's error).
    """
    torch = _torch()
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ConfigError(f"exporter must be 'auto', 'dynamo' or 'torchscript', got {exporter!r}")
    args = _as_tuple(example_inputs)
    names = _input_names(module, len(args), input_names)
    dyn = _normalize_dynamic(dynamic_shapes, names) if dynamic_shapes is not None else \
        dynamic_axes_from_shapes(shapes, names) if shapes is not None else {}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if exporter == "dynamo" and not _have_onnxscript():
        raise DependencyError("the dynamo ONNX exporter needs onnxscript: pip install onnxscript")
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    if exporter == "auto" and not _have_onnxscript():
        _log.info("onnxscript is not installed; exporting with the TorchScript exporter")
        order = ["torchscript"]
    failures: list[str] = []
    was_training = bool(getattr(module, "training", False))
    module.eval()
    try:
        for which in order:
            run = _export_dynamo if which == "dynamo" else _export_torchscript
            try:
                with torch.no_grad():
                    run(torch, module, args, out, names, output_names, dyn, opset)
            except Exception as exc:  # the exporters raise many types; report them all together
                failures.append(f"{which} exporter: {type(exc).__name__}: {exc}")
                if len(order) > 1 and which == "dynamo":
                    _log.warning("torch.onnx.export(dynamo=True) failed (%s: %s); trying the TorchScript exporter",
                                 type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                continue
            if out.is_file():
                _log.info("exported %s with the %s exporter to %s", type(module).__name__, which, out)
                return out
            failures.append(f"{which} exporter: wrote no file at {out}")
    finally:
        module.train(was_training)
    raise ModelError(f"could not export {type(module).__name__} to ONNX:\n  " + "\n  ".join(failures))


def cached_export(module: TorchModule, example_inputs: object, cache_dir: str | os.PathLike[str], *,
                  dynamic_shapes: DynamicSpec | None = None, input_names: Sequence[str] | None = None,
                  output_names: Sequence[str] | None = None, shapes: ProfilesLike = None, opset: int | None = None,
                  exporter: Exporter = "auto") -> tuple[Path, bool]:
    """Export into ``cache_dir/torch/<key>/model.onnx`` unless that export exists; returns ``(path, reused)``.

    The key is :func:`export_key`; concurrent processes export once (file lock per key); a finished export is
    moved into place atomically.
    """
    args = _as_tuple(example_inputs)
    names = _input_names(module, len(args), input_names)
    options = {"dynamic_shapes": _normalize_dynamic(dynamic_shapes, names) if dynamic_shapes is not None else None,
               "shapes_dynamic": dynamic_axes_from_shapes(shapes, names) if dynamic_shapes is None and shapes
               is not None else None, "input_names": names, "output_names": list(output_names or []),
               "opset": opset, "exporter": exporter}
    key = export_key(module, args, options)
    root = Path(cache_dir) / _SUBDIR
    final = root / key / "model.onnx"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{key}.lock")):
        if final.is_file():
            _log.info("reusing exported ONNX %s", final)
            return final, True
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        try:
            export_onnx(module, args, staging / "model.onnx", dynamic_shapes=dynamic_shapes, input_names=names,
                        output_names=output_names, shapes=shapes, opset=opset, exporter=exporter)
            shutil.rmtree(final.parent, ignore_errors=True)  # a half-written entry from a crashed run
            os.replace(staging, final.parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final, False
