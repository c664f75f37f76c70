"""``trtkit inspect FILE``: an engine's tensors, profiles and manifest (``--layers``: its layers after fusion and,
for a quantized engine, which run in INT8/FP8 and which TensorRT kept in float), or an ONNX model's inputs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypedDict

import click

from trtkit.backend import Backend, get_backend
from trtkit.builder.model import load_onnx
from trtkit.cli._options import echo_json
from trtkit.cli.build import quantization_line
from trtkit.cli.run import backend_options
from trtkit.errors import ConfigError, DependencyError
from trtkit.manifest import Manifest, read_engine_file
from trtkit.profiles import InputInfo, format_shape
from trtkit.runtime import compat
from trtkit.runtime.loading import load_engine
from trtkit.runtime.plans import check_plan, plan_tag
from trtkit.runtime.tensors import TensorSpec
from trtkit.text import safe_lines
from trtkit.tools.capability import check_capability
from trtkit.tools.layers import EngineLayers, engine_layers
from trtkit.tools.placement import Placement, PlacementKind, placement, placement_kind

_RUNS: dict[PlacementKind, str] = {"quantized": "", "float": "float", "conversion": "convert", "other": "-"}


def _echo(message: object = "", err: bool = False) -> None:
    """click.echo with names from files escaped (no terminal escape sequences reach the terminal)."""
    click.echo(safe_lines(message), err=err)


class _TensorRow(TypedDict):
    name: str
    dtype: str
    shape: list[int | str]


class _OnnxSummary(TypedDict):
    kind: str
    path: str
    sha256: str
    opsets: dict[str, int]
    inputs: list[_TensorRow]
    outputs: list[_TensorRow]
    nodes: int
    ops: dict[str, int]


def _onnx_summary(path: Path) -> _OnnxSummary:
    model = load_onnx(path)
    ops = Counter(n.op_type for n in model.proto.graph.node)

    def tensor(info: InputInfo) -> _TensorRow:
        names = info.dim_names or (None,) * len(info.shape)
        dims: list[int | str] = [n if d < 0 and n else d for d, n in zip(info.shape, names, strict=False)]
        return {"name": info.name, "dtype": info.dtype, "shape": dims}

    return {
        "kind": "onnx",
        "path": str(path),
        "sha256": model.sha256,
        "opsets": model.opsets(),
        "inputs": [tensor(i) for i in model.inputs()],
        "outputs": [tensor(o) for o in model.outputs()],
        "nodes": len(model.proto.graph.node),
        "ops": dict(ops.most_common()),
    }


def _print_onnx(s: _OnnxSummary) -> None:
    _echo(f"ONNX model {s['path']}")
    _echo(f"  opsets: {', '.join(f'{k} {v}' for k, v in s['opsets'].items())}; {s['nodes']} nodes")
    for label, rows in (("inputs", s["inputs"]), ("outputs", s["outputs"])):
        _echo(f"  {label}:")
        for t in rows:
            _echo(f"    {t['name']:<24} {t['dtype']:<9} [{', '.join(str(d) for d in t['shape'])}]")
    _echo("  ops: " + ", ".join(f"{op} x{n}" for op, n in s["ops"].items()))


def _print_engine(path: Path, m: Manifest) -> None:
    _echo(f"engine {path} ({m.plan_size / 1e6:.2f} MB)")
    _echo(f"  backend:  {m.backend} {m.backend_version}   trtkit {m.trtkit_version}   built {m.created}")
    target = m.target
    if "compute_capabilities" in target:
        _echo(f"  targets:  compute capabilities {', '.join(target['compute_capabilities'])}")
    else:
        _echo(f"  target:   {target.get('gpu')} (compute capability {target.get('compute_capability')})")
    compat = m.compatibility
    _echo(f"  compat:   hardware {compat.get('hardware_compatibility')}, "
               f"version compatible {compat.get('version_compatible')}")
    _echo(f"  onnx:     {m.onnx.get('name')} sha256 {str(m.onnx.get('sha256'))[:16]}...")
    _echo(f"  precision {m.config.get('precision')}" + ("" if m.config.get("tf32", True) else " (no TF32)"))
    quantization = m.extra.get("quantization")
    if isinstance(quantization, Mapping):
        _echo(f"  {quantization_line(quantization)}")
        where = quantization.get("placement")
        if isinstance(where, Mapping) and where.get("summary"):
            _echo(f"  placement: {where['summary']}")
    _echo("  tensors:")
    for t in m.tensors:
        extra = " (shape tensor)" if t.is_shape_tensor else ""
        _echo(f"    {t.mode:<6} {t.name:<24} {t.dtype:<9} {format_shape(t.shape)}{extra}")
    for i, p in enumerate(m.profiles):
        _echo(f"  profile {i}:")
        for name, rng in p.ranges.items():
            _echo(f"    {name:<24} min {format_shape(rng.min)}  opt {format_shape(rng.opt)}  "
                       f"max {format_shape(rng.max)}")


def _layers_backend(manifest: Manifest | None, backend: str | None,
                    device: int) -> tuple[Backend | None, str | None]:
    """The backend to load the engine with, or None and why the engine cannot be loaded here."""
    try:
        be = get_backend(backend if backend is not None else (manifest.backend if manifest else None))
    except (DependencyError, ConfigError) as exc:
        return None, exc.message
    reason = compat.run_blocker(be, device)
    return (be, None) if reason is None else (None, reason)


def _rebuild_hint(path: Path, manifest: Manifest | None) -> str:
    model = (manifest.onnx.get("name") if manifest else None) or "MODEL.onnx"
    return (f"rebuild it with `trtkit build {model} ... --profilingVerbosity detailed` (Python: "
            "BuildConfig(profiling_verbosity=\"detailed\")) to see layer types, precisions and tactics")


def _print_layers(path: Path, info: EngineLayers, manifest: Manifest | None) -> None:
    _echo(f"  layers after fusion: {len(info)} (profiling verbosity {info.verbosity})")
    if info.verbosity == "none":
        _echo(f"  TensorRT kept no layer information in this engine; {_rebuild_hint(path, manifest)}.")
        return
    if not info.detailed:
        for i, layer in enumerate(info):
            _echo(f"    {i:>4}  {layer.name}")
        _echo(f"  only layer names: the engine was built without detailed profiling verbosity; "
                   f"{_rebuild_hint(path, manifest)}.")
        return
    found = _quantized_placement(info, manifest)
    if found is not None:
        label = "/".join(p.upper() for p in found.precisions) or "INT8"
        rows: list[tuple[str, ...]] = [
                (str(i), layer.type or "?", layer.precision or "?", _RUNS[placement_kind(layer)] or label,
                 layer.tactic or "-", layer.name) for i, layer in enumerate(info)]
        heads: tuple[str, ...] = ("#", "type", "precision", "runs in", "tactic", "name")
    else:
        rows = [(str(i), layer.type or "?", layer.precision or "?", layer.tactic or "-", layer.name)
                for i, layer in enumerate(info)]
        heads = ("#", "type", "precision", "tactic", "name")
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(heads[:-1])]
    widths = [min(w, 48) for w in widths]

    def line(cells: tuple[str, ...]) -> str:
        return "    " + "  ".join(f"{c:<{w}}" for c, w in zip(cells[:-1], widths, strict=True)) + "  " + cells[-1]

    _echo(line(heads))
    for r in rows:
        _echo(line(r))
    if found is not None:
        _echo(f"  {found.summary()}")


def _quantized_placement(info: EngineLayers, manifest: Manifest | None) -> Placement | None:
    """Where quantization took hold, for an engine with detailed layers that is quantized (by its manifest's
    precision, or by layers that compute in INT8/FP8)."""
    if not info.detailed:
        return None
    found = placement(info)
    quantized_build = manifest is not None and manifest.config.get("precision") in ("int8", "fp8")
    return found if found.quantized or quantized_build else None


def _print_plan_tensors(path: Path, plan_size: int, inputs: Sequence[TensorSpec],
                        outputs: Sequence[TensorSpec]) -> None:
    _echo(f"engine {path} ({plan_size / 1e6:.2f} MB, bare plan: no trtkit manifest)")
    _echo("  tensors:")
    for t in (*inputs, *outputs):
        _echo(f"    {t.mode:<6} {t.name:<24} {t.dtype.name:<9} {format_shape(t.shape)}")


@click.command("inspect")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--layers", "show_layers", is_flag=True,
              help="Also list the engine's layers after fusion (types, precisions, tactics) from TensorRT's "
                   "engine inspector; loads the engine, so it needs a GPU the backend runs on.")
@click.option("--capability", "capability", is_flag=True,
              help="For an ONNX model: the nodes TensorRT's parser supports and the unsupported ones, grouped "
                   "into subgraphs with the reason (no GPU needed).")
@backend_options
def inspect_command(path: Path, as_json: bool, show_layers: bool, capability: bool, device: int,
                    backend: str | None) -> int:
    """Show an engine's I/O tensors, profiles and manifest, or an ONNX model's inputs and ops."""
    if capability:
        if path.suffix.lower() != ".onnx" or show_layers:
            raise click.UsageError("--capability checks an ONNX model (.onnx) against TensorRT's parser; "
                                   "it does not take an engine or --layers")
        report = check_capability(path, backend=backend)
        if as_json:
            echo_json(report.to_dict())
        else:
            _echo(report.format())
        return 0
    if path.suffix.lower() == ".onnx":
        if show_layers:
            raise click.UsageError("--layers lists an engine's layers; for an ONNX model the ops are shown "
                                   "without it")
        summary = _onnx_summary(path)
        if as_json:
            echo_json(summary)
        else:
            _print_onnx(summary)
        return 0
    plan, manifest = read_engine_file(path)
    if show_layers:
        return _inspect_layers(path, plan, manifest, as_json, device, backend)
    if manifest is None:
        check_plan(plan, repr(str(path)))
        flavour = plan_tag(plan)
        info = {"kind": "plan", "path": str(path), "size": len(plan), "manifest": None, "tensorrt": flavour}
        if as_json:
            echo_json(info)
        elif flavour is None:
            _echo(
                f"{path}: {len(plan)} bytes with no trtkit manifest beside it, and no TensorRT plan header (plans "
                f"start with 'ftrt', TensorRT-RTX plans with 'vtrt'; this starts with {plan[:4].hex(' ')}): probably "
                "not a TensorRT plan. Only loading it can tell (--layers does)."
            )
        else:
            _echo(
                f"{path}: a bare {flavour} plan of {len(plan)} bytes with no trtkit manifest beside it; its "
                "tensors can only be read by loading it with TensorRT on a GPU it supports (--layers does)."
            )
        return 0
    if as_json:
        echo_json({"kind": "engine", "path": str(path), "manifest": manifest.to_dict()})
    else:
        _print_engine(path, manifest)
    return 0


def _inspect_layers(path: Path, plan: bytes, manifest: Manifest | None, as_json: bool, device: int,
                    backend: str | None) -> int:
    be, reason = _layers_backend(manifest, backend, device)
    if be is None:
        _echo(f"trtkit: error: cannot list the layers of {path} on this machine: TensorRT's engine "
                   f"inspector needs the engine loaded, and {reason}", err=True)
        return 1
    with load_engine(path, device=device, backend=be) as le:
        info = engine_layers(le)
        tensors = (le.inputs, le.outputs)
    if as_json:
        out: dict[str, object] = {"kind": "engine" if manifest else "plan", "path": str(path),
                               "manifest": manifest.to_dict() if manifest else None, "size": len(plan),
                               "backend": be.label, **info.to_dict()}
        if not info.detailed:
            out["hint"] = _rebuild_hint(path, manifest)
        found = _quantized_placement(info, manifest)
        if found is not None:
            out["placement"] = found.to_dict()
        echo_json(out)
        return 0
    if manifest is not None:
        _print_engine(path, manifest)
    else:
        _print_plan_tensors(path, len(plan), *tensors)
    _print_layers(path, info, manifest)
    return 0
