"""``trtkit debug reduce MODEL -o reduced.onnx --fails-when parse|build|compare``: shrink a failing model."""

from __future__ import annotations

from pathlib import Path

import click

from trtkit.builder.model import load_onnx, save_onnx
from trtkit.cli._options import build_options, echo_json, make_config
from trtkit.text import safe_lines
from trtkit.tools.reduce import FailsWhen, reduce_model


@click.group("debug")
def debug_command() -> None:
    """Find where a model goes wrong."""


@debug_command.command("reduce")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the reduced model (never the input).")
@click.option("--fails-when", "fails_when", type=click.Choice(["parse", "build", "compare"]), required=True,
              help="The failure to keep: the parser rejects it, the build fails, or the engine's outputs disagree "
                   "with ONNX Runtime (needs a GPU the backend runs on).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@build_options
def reduce_command(model: Path, output: Path, fails_when: FailsWhen, as_json: bool, *, shapes: tuple[str, ...],
                   min_shapes: tuple[str, ...], opt_shapes: tuple[str, ...], max_shapes: tuple[str, ...],
                   backend: str | None, progress: bool | None, **opts: object) -> int:
    """Bisect MODEL down to a small subgraph that fails the same way, and write it to OUTPUT."""
    if min_shapes or opt_shapes or max_shapes or len(shapes) > 1:
        raise click.UsageError("debug reduce takes fixed shapes only: one --shapes x:1x3x224x224[,y:...]")
    onnx_model = load_onnx(model)
    onnx_model.refuse_onnx_overwrite(output, what="the reduced model")
    report = reduce_model(onnx_model, fails_when=fails_when, shapes=shapes[0] if shapes else None,
                          config=make_config(opts), backend=backend)
    save_onnx(report.proto, output)
    if as_json:
        echo_json({**report.to_dict(), "output": str(output)})
    else:
        click.echo(safe_lines(report.format()))
        click.echo(safe_lines(f"wrote {output}"))
    return 0
