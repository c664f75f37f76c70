"""``trtkit inspect FILE``: an engine's tensors, profiles and manifest, or an ONNX model's inputs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import click

from ..manifest import Manifest, read_engine_file
from ..onnx_model import load_onnx
from ..profiles import format_shape
from ._options import echo_json


def _onnx_summary(path: Path) -> dict[str, Any]:
    model = load_onnx(path)
    ops = Counter(n.op_type for n in model.proto.graph.node)

    def tensor(info: Any) -> dict[str, Any]:
        dims = [n if d < 0 and n else d for d, n in zip(info.shape, info.dim_names or [None] * len(info.shape),
                                                          strict=False)]
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


def _print_onnx(s: dict[str, Any]) -> None:
    click.echo(f"ONNX model {s['path']}")
    click.echo(f"  opsets: {', '.join(f'{k} {v}' for k, v in s['opsets'].items())}; {s['nodes']} nodes")
    for label in ("inputs", "outputs"):
        click.echo(f"  {label}:")
        for t in s[label]:
            click.echo(f"    {t['name']:<24} {t['dtype']:<9} [{', '.join(str(d) for d in t['shape'])}]")
    click.echo("  ops: " + ", ".join(f"{op} x{n}" for op, n in s["ops"].items()))


def _print_engine(path: Path, m: Manifest) -> None:
    click.echo(f"engine {path} ({m.plan_size / 1e6:.2f} MB)")
    click.echo(f"  backend:  {m.backend} {m.backend_version}   trtkit {m.trtkit_version}   built {m.created}")
    target = m.target
    if "compute_capabilities" in target:
        click.echo(f"  targets:  compute capabilities {', '.join(target['compute_capabilities'])}")
    else:
        click.echo(f"  target:   {target.get('gpu')} (compute capability {target.get('compute_capability')})")
    compat = m.compatibility
    click.echo(f"  compat:   hardware {compat.get('hardware_compatibility')}, "
               f"version compatible {compat.get('version_compatible')}")
    click.echo(f"  onnx:     {m.onnx.get('name')} sha256 {str(m.onnx.get('sha256'))[:16]}...")
    click.echo(f"  precision {m.config.get('precision')}" + ("" if m.config.get("tf32", True) else " (no TF32)"))
    click.echo("  tensors:")
    for t in m.tensors:
        extra = " (shape tensor)" if t.is_shape_tensor else ""
        click.echo(f"    {t.mode:<6} {t.name:<24} {t.dtype:<9} {format_shape(t.shape)}{extra}")
    for i, p in enumerate(m.profiles):
        click.echo(f"  profile {i}:")
        for name, rng in p.ranges.items():
            click.echo(f"    {name:<24} min {format_shape(rng.min)}  opt {format_shape(rng.opt)}  "
                       f"max {format_shape(rng.max)}")


@click.command("inspect")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def inspect_command(path: Path, as_json: bool) -> int:
    """Show an engine's I/O tensors, profiles and manifest, or an ONNX model's inputs and ops."""
    if path.suffix.lower() == ".onnx":
        summary = _onnx_summary(path)
        if as_json:
            echo_json(summary)
        else:
            _print_onnx(summary)
        return 0
    plan, manifest = read_engine_file(path)
    if manifest is None:
        info = {"kind": "plan", "path": str(path), "size": len(plan), "manifest": None}
        if as_json:
            echo_json(info)
        else:
            click.echo(
                f"{path}: a bare TensorRT plan of {len(plan)} bytes with no trtkit manifest beside it; its "
                "tensors can only be read by loading it with TensorRT on a GPU it supports."
            )
        return 0
    if as_json:
        echo_json({"kind": "engine", "path": str(path), "manifest": manifest.to_dict()})
    else:
        _print_engine(path, manifest)
    return 0
